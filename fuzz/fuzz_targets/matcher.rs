//! Arbitrary text as an Alertmanager matcher list. A parsed matcher prints as text that
//! parses back to the same matcher; an error points into the text.
#![no_main]

use sidewatch::notify::matcher::Matcher;
use sidewatch::rules::labels::Labels;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Matcher::parse_list(&text) {
        Ok(matchers) => {
            let labels = Labels::from_pairs([("alertname", "HighErrorRate"), ("service", "")]);
            for matcher in &matchers {
                std::hint::black_box(matcher.matches(&labels));
                let printed = matcher.to_string();
                let again = Matcher::parse(&printed).unwrap_or_else(|e| {
                    panic!("{printed:?} (printed from {text:?}) does not parse: {e}")
                });
                assert_eq!(
                    (&again.name, again.op, &again.value),
                    (&matcher.name, matcher.op, &matcher.value),
                    "{printed:?} parses to another matcher"
                );
            }
        }
        Err(e) => assert!(
            e.offset <= text.len() && text.is_char_boundary(e.offset),
            "error offset {} outside {text:?}",
            e.offset
        ),
    }
});
