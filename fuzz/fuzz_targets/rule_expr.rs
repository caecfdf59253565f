//! Arbitrary text as a rule expression and as a log query. What parses must print as
//! text that parses again to the same printing; an error must point into the text.
#![no_main]

use sidewatch::rules::parser::{parse, parse_log_query};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Ok(expr) => {
            let printed = expr.to_string();
            let again = parse(&printed).unwrap_or_else(|e| {
                panic!("{printed:?} (printed from {text:?}) does not parse: {e}")
            });
            assert_eq!(
                again.to_string(),
                printed,
                "printing of {text:?} is not stable"
            );
        }
        Err(e) => assert!(
            e.offset <= text.len() && text.is_char_boundary(e.offset),
            "error offset {} outside {text:?}",
            e.offset
        ),
    }
    match parse_log_query(&text) {
        Ok(query) => {
            let printed = query.to_string();
            let again = parse_log_query(&printed).unwrap_or_else(|e| {
                panic!("{printed:?} (printed from {text:?}) does not parse: {e}")
            });
            assert_eq!(
                again.to_string(),
                printed,
                "printing of {text:?} is not stable"
            );
        }
        Err(e) => assert!(
            e.offset <= text.len() && text.is_char_boundary(e.offset),
            "error offset {} outside {text:?}",
            e.offset
        ),
    }
});
