//! Arbitrary text as a rule file: loaded (every expression, template and verification
//! checked) or refused with errors, never a panic.
#![no_main]

use std::path::Path;
use std::time::Duration;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("rules/fuzz.yaml");
    match sidewatch::rules::file::load_str(path, &text, Duration::from_secs(60)) {
        Ok(set) => {
            std::hint::black_box(set);
        }
        Err(errors) => {
            for e in errors {
                std::hint::black_box(e.to_string());
            }
        }
    }
});
