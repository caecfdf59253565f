//! Arbitrary text as an alert template: parsed, then rendered with a few labels and
//! the values that break number formatting (NaN, infinities, extremes).
#![no_main]

use sidewatch::rules::labels::Labels;
use sidewatch::rules::template::Template;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(template) = Template::parse(&text) {
        let labels = Labels::from_pairs([
            ("instance", "10.0.0.1:8000"),
            ("job", "app"),
            ("path", "/api/{id}"),
            ("empty", ""),
        ]);
        for value in [
            0.0,
            -0.0,
            1.5,
            -1234.5678,
            1e300,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            std::hint::black_box(template.render(&labels, value));
        }
        std::hint::black_box(template.label_names());
    }
});
