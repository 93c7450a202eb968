//! Request bodies: JSON parsing and the validation of each field, with the codes
//! `docs/openapi.yaml` documents.
//!
//! No error message echoes what the request sent. serde_json's own messages do (`invalid value:
//! string "..."`, `unknown field `...``, `unknown variant `...``), so they are never passed on:
//! [`describe`] turns them into the name of a documented field or a position in the body.

use std::borrow::Cow;

use bytes::Bytes;
use cyberid_engine::{AgeBracket, Assurance, Claims, PlatformId, RevocationRecord, WebNumber};
use serde::Deserialize;
use serde_json::error::Category;

use super::ApiError;

/// Parses a JSON object body. Only an object: serde would also read a struct from an array.
/// `fields` are the names the object may have, for error messages.
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8], fields: &[&str]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request("malformed_json", describe(&error, fields)))
}

/// What is wrong with a body, naming only a documented field or a line and column.
fn describe(error: &serde_json::Error, fields: &[&str]) -> String {
    let at = format!("line {}, column {}", error.line(), error.column());
    match error.classify() {
        Category::Syntax => format!("the body is not valid JSON ({at})"),
        Category::Eof | Category::Io => format!("the body ends inside its JSON ({at})"),
        Category::Data => {
            let text = error.to_string();
            if let Some(field) = fields
                .iter()
                .find(|field| text.starts_with(&format!("missing field `{field}`")))
            {
                format!("the field {field} is required")
            } else if text.starts_with("unknown field") {
                format!(
                    "the object has a field that is not accepted ({at}); the body's fields are: {}",
                    fields.join(", ")
                )
            } else {
                format!("a value has the wrong type or is not one of the documented values ({at})")
            }
        }
    }
}

/// The certificate text of a JSON verify body: a slice of the body itself when the string
/// has no escapes (always, from a well-behaved client), a copy otherwise.
pub(super) fn verify(body: &Bytes) -> Result<Bytes, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VerifyBody<'a> {
        #[serde(borrow)]
        certificate: Cow<'a, str>,
    }
    Ok(
        match parse_json::<VerifyBody<'_>>(body, &["certificate"])?.certificate {
            Cow::Borrowed(text) => body.slice_ref(text.as_bytes()),
            Cow::Owned(text) => Bytes::from(text),
        },
    )
}

/// The fields of an issue request, each validated.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Issue {
    pub(super) web_number: WebNumber,
    pub(super) assurance: Option<Assurance>,
    pub(super) claims: Claims,
    pub(super) audience: Option<PlatformId>,
    pub(super) lifetime: Option<u16>,
}

/// Parses an issue body. Identifiers are read as strings and validated here, so a bad Web
/// Number or audience gets its own code (`web_number_length`, `web_number_character`,
/// `platform_id`) rather than `malformed_json`; a lifetime outside `1..=max_lifetime` is
/// `lifetime`.
pub(super) fn issue(body: &[u8], max_lifetime: u16) -> Result<Issue, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ClaimsBody {
        #[serde(default)]
        age: Option<AgeBracket>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct IssueBody {
        web_number: String,
        #[serde(default)]
        assurance: Option<Assurance>,
        #[serde(default)]
        claims: Option<ClaimsBody>,
        #[serde(default)]
        audience: Option<String>,
        #[serde(default)]
        lifetime: Option<u64>,
    }
    let fields = ["web_number", "assurance", "claims", "audience", "lifetime"];
    let body: IssueBody = parse_json(body, &fields)?;
    let engine_error =
        |error: cyberid_engine::Error| ApiError::bad_request(error.code(), error.to_string());
    let web_number = WebNumber::parse(&body.web_number).map_err(engine_error)?;
    let audience = body
        .audience
        .as_deref()
        .map(PlatformId::new)
        .transpose()
        .map_err(engine_error)?;
    let lifetime = match body.lifetime {
        None => None,
        Some(seconds) => Some(
            u16::try_from(seconds)
                .ok()
                .filter(|seconds| (1..=max_lifetime).contains(seconds))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "lifetime",
                        format!("lifetime must be between 1 and {max_lifetime} seconds"),
                    )
                })?,
        ),
    };
    Ok(Issue {
        web_number,
        assurance: body.assurance,
        claims: Claims {
            age: body.claims.and_then(|claims| claims.age),
            ..Claims::default()
        },
        audience,
        lifetime,
    })
}

/// The reason of an administrative action: 1 to 64 characters from `A-Z a-z 0-9`,
/// space and `- _ . : , / ( )`, not beginning or ending with a space. Short enough for an
/// audit log, and too poor a character set to carry a name or an ID number in most scripts.
pub(super) fn reason(body: &[u8]) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ReasonBody {
        reason: String,
    }
    let reason = parse_json::<ReasonBody>(body, &["reason"])?.reason;
    // The engine's rule, so the server and every store agree on it.
    RevocationRecord::validate_reason(&reason)
        .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))?;
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Zhang-San-110101199003077777";

    fn code_and_message(error: ApiError) -> (&'static str, String) {
        (error.code, error.message)
    }

    #[test]
    fn no_message_echoes_the_request() {
        let bodies = [
            format!(r#"{{"certificate":"x","{SECRET}":1}}"#),
            format!(r#"{{"certificate":["{SECRET}"]}}"#),
            format!(r#"{{"certificate":"{SECRET}"#),
            format!(r#"{{"certificate":{SECRET}}}"#),
        ];
        for body in &bodies {
            let (code, message) =
                code_and_message(verify(&Bytes::copy_from_slice(body.as_bytes())).unwrap_err());
            assert_eq!(code, "malformed_json", "{body}");
            assert!(!message.contains(SECRET), "{body}: {message}");
        }
        let bodies = [
            format!(r#"{{"web_number":"7K3MQ9XZ2P","assurance":"{SECRET}"}}"#),
            format!(r#"{{"web_number":"7K3MQ9XZ2P","claims":{{"age":"{SECRET}"}}}}"#),
            format!(r#"{{"web_number":"7K3MQ9XZ2P","claims":{{"{SECRET}":1}}}}"#),
            format!(r#"{{"web_number":"7K3MQ9XZ2P","lifetime":"{SECRET}"}}"#),
            format!(r#"{{"web_number":"{SECRET}"}}"#),
            format!(r#"{{"web_number":"7K3MQ9XZ2P","audience":"{SECRET}"}}"#),
        ];
        for body in &bodies {
            let (_, message) = code_and_message(issue(body.as_bytes(), 300).unwrap_err());
            assert!(!message.contains(SECRET), "{body}: {message}");
        }
        let body = format!(r#"{{"reason":"{SECRET}!"}}"#);
        let (code, message) = code_and_message(reason(body.as_bytes()).unwrap_err());
        assert_eq!(code, "bad_reason");
        assert!(!message.contains(SECRET), "{message}");
    }

    #[test]
    fn the_certificate_is_a_slice_of_the_body_unless_escaped() {
        let body = Bytes::from_static(br#"{"certificate": "WZ1:ABC/DEF"}"#);
        let text = verify(&body).unwrap();
        assert_eq!(text, "WZ1:ABC/DEF");
        let within = body.as_ptr_range();
        assert!(within.contains(&text.as_ptr()), "not copied");
        // JSON may escape the solidus; the text is then unescaped into a copy.
        let escaped = Bytes::from_static(br#"{"certificate": "WZ1:ABC\/DEF"}"#);
        assert_eq!(verify(&escaped).unwrap(), "WZ1:ABC/DEF");
    }

    #[test]
    fn messages_name_the_field_or_the_position() {
        let (_, message) =
            code_and_message(verify(&Bytes::from_static(br#"{"cert":"x"}"#)).unwrap_err());
        assert!(message.contains("certificate"), "{message}");
        let (_, message) = code_and_message(verify(&Bytes::from_static(b"{}")).unwrap_err());
        assert_eq!(message, "the field certificate is required");
        let (_, message) =
            code_and_message(verify(&Bytes::from_static(b"{\"certificate\": 5}")).unwrap_err());
        assert!(message.contains("line 1, column"), "{message}");
    }

    #[test]
    fn identifiers_get_their_own_codes() {
        let code = |body: &str| issue(body.as_bytes(), 300).unwrap_err().code;
        assert_eq!(code(r#"{"web_number":"7K3MQ9XZ2"}"#), "web_number_length");
        assert_eq!(
            code(r#"{"web_number":"7K3MQ9XZ2O"}"#),
            "web_number_character"
        );
        assert_eq!(code(r#"{"web_number":5}"#), "malformed_json");
        let with = |field: &str| format!(r#"{{"web_number":"7K3MQ9XZ2P",{field}}}"#);
        assert_eq!(code(&with(r#""audience":"Shop""#)), "platform_id");
        assert_eq!(code(&with(r#""audience":"""#)), "platform_id");
        for lifetime in ["0", "301", "65536", "18446744073709551615"] {
            assert_eq!(
                code(&with(&format!(r#""lifetime":{lifetime}"#))),
                "lifetime"
            );
        }
        assert_eq!(code(&with(r#""lifetime":-1"#)), "malformed_json");
        assert_eq!(code(&with(r#""assurance":"medium""#)), "malformed_json");

        let parsed = issue(
            with(r#""audience":"shop.example","lifetime":300,"claims":{}"#).as_bytes(),
            300,
        )
        .unwrap();
        assert_eq!(parsed.web_number.as_str(), "7K3MQ9XZ2P");
        assert_eq!(parsed.audience.unwrap().as_str(), "shop.example");
        assert_eq!(parsed.lifetime, Some(300));
        assert_eq!(parsed.claims, Claims::default());
        // Lower case is accepted and normalised, as protocol.md §1 says.
        let lower = issue(br#"{"web_number":"7k3mq9xz2p"}"#, 300).unwrap();
        assert_eq!(lower.web_number.as_str(), "7K3MQ9XZ2P");
    }

    #[test]
    fn reasons_are_short_printable_codes_or_sentences() {
        let check = |reason: &str| super::reason(format!(r#"{{"reason":"{reason}"}}"#).as_bytes());
        for good in [
            "lost device",
            "x",
            "ticket:4711",
            "fraud report (case 12/2026), confirmed",
            "a".repeat(64).as_str(),
        ] {
            assert_eq!(check(good).unwrap(), good);
        }
        for bad in [
            "",
            " lost",
            "lost ",
            "lost\\tdevice",
            "lost\\ndevice",
            "a;b",
            "name=张三",
            "a".repeat(65).as_str(),
        ] {
            assert_eq!(check(bad).unwrap_err().code, "bad_reason", "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_answered_without_echo(text in "[ -~]{0,80}") {
            let marker = "QQZZXX";
            let body = text.replace('Q', marker);
            let answers = [
                verify(&Bytes::copy_from_slice(body.as_bytes())).err(),
                issue(body.as_bytes(), 300).err(),
                reason(body.as_bytes()).err(),
            ];
            for error in answers.into_iter().flatten() {
                proptest::prop_assert!(!error.message.contains(marker), "{}", error.message);
            }
        }
    }
}
