//! The text certificate decoder (prefix + strict base45): never panics, and whatever it accepts
//! is the canonical text of its bytes.
#![no_main]

use cyberid_engine::Certificate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Inputs that matter start with the prefix: add it unless the input brings its own "WZ".
    let body = String::from_utf8_lossy(data);
    let input = if body.starts_with("WZ") { body.into_owned() } else { format!("WZ1:{body}") };
    let input = input.as_str();
    if let Ok(certificate) = Certificate::from_text(input) {
        assert_eq!(certificate.to_text(), input);
    }
});
