//! Arbitrary text as `sidewatch.yaml`, with a fixed environment for `${VAR}` expansion:
//! a validated config or every error at `file:line:col`, never a panic.
#![no_main]

use std::path::Path;

fn env(name: &str) -> Option<String> {
    match name {
        "SIDEWATCH_TOKEN" => Some("s3cret-token".into()),
        "HOME" => Some("/home/app".into()),
        "EMPTY" => Some(String::new()),
        "MULTI" => Some("a\nb: c".into()),
        _ => None,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match sidewatch::config::load_str(&text, Path::new("/etc/sidewatch/sidewatch.yaml"), &env) {
        Ok(config) => {
            std::hint::black_box(format!("{config:?}"));
        }
        Err(errors) => {
            std::hint::black_box(errors.to_string());
        }
    }
});
