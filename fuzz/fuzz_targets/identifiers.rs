//! Web Number, platform id, key id and certificate id parsers: never panic, and accepted input
//! round-trips through the canonical form.
#![no_main]

use cyberid_engine::{CertificateId, KeyId, PlatformId, WebNumber};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(number) = WebNumber::parse(text) {
        assert_eq!(number.to_string(), text.to_ascii_uppercase());
    }
    if let Ok(platform) = PlatformId::new(text) {
        assert_eq!(platform.as_str(), text);
    }
    if let Ok(key_id) = text.parse::<KeyId>() {
        assert_eq!(key_id.to_string(), text.to_ascii_lowercase());
    }
    if let Ok(id) = text.parse::<CertificateId>() {
        assert_eq!(id.to_string(), text.to_ascii_lowercase());
    }
});
