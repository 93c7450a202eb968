//! The binary certificate decoder: never panics, and whatever it accepts re-encodes to the same
//! bytes (one encoding per certificate).
#![no_main]

use cyberid_engine::{Certificate, testing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = Certificate::from_bytes(data) {
        assert_eq!(&certificate.as_bytes()[..], data);
        assert_eq!(testing::signed_bytes(certificate.fields())[..], data[..63]);
        let text = certificate.to_text();
        let again = Certificate::from_text(&text).expect("own text form decodes");
        assert_eq!(again.as_bytes(), certificate.as_bytes());
    }
});
