//! The issuing side's parsers: identity numbers and dates, the enrollment, holder-request and
//! consent-request bodies, and the stored forms of enrollments, consents and vault keys. None panics; what each accepts
//! reads back to the same value (one encoding per value).
#![no_main]

use cyberid_engine::WebNumber;
use cyberid_identity::{
    ConsentRequestBody, Date, Enrollment, EnrollmentRequest, HolderRequestBody, ResidentId,
    SealedRecord, SignedConsentRequest, SignedHolderRequest, StandingConsent, WrappedKey,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = text.parse::<ResidentId>() {
            assert_eq!(id.expose(), text.to_ascii_uppercase());
            assert_eq!(id.expose().parse::<ResidentId>().unwrap(), id);
        }
        if let Ok(date) = text.parse::<Date>() {
            assert_eq!(date.to_string(), text);
        }
    }
    let _ = serde_json::from_slice::<EnrollmentRequest>(data);
    if let Ok(body) = serde_json::from_slice::<HolderRequestBody>(data)
        && let Ok(signed) = SignedHolderRequest::try_from(body)
    {
        let again = SignedHolderRequest::try_from(HolderRequestBody::from(&signed)).unwrap();
        assert_eq!(again, signed);
    }
    if let Ok(body) = serde_json::from_slice::<ConsentRequestBody>(data)
        && let Ok(signed) = SignedConsentRequest::try_from(body)
    {
        let again = SignedConsentRequest::try_from(ConsentRequestBody::from(&signed)).unwrap();
        assert_eq!(again, signed);
    }
    if let Ok(consent) = StandingConsent::decode("bank.example".parse().unwrap(), data) {
        assert_eq!(consent.encode()[..], data[..]);
    }
    let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
    if let Ok(enrollment) = Enrollment::decode(holder, data) {
        assert_eq!(enrollment.encode(), data);
    }
    if let Ok(record) = SealedRecord::from_bytes(data.to_vec()) {
        assert_eq!(record.as_bytes(), data);
    }
    if let Ok(key) = WrappedKey::from_bytes(data) {
        assert_eq!(key.to_bytes()[..], data[..]);
    }
});
