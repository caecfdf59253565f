//! Arbitrary text as a `sidewatch test` file, run against the default rule pack (its
//! `rule_files` are not read: the fuzzer must not open whatever path it invents).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use sidewatch::rules::file::RuleSet;

static RULE_PACK: &str = include_str!("../../rules/python-service.yaml");

fn rule_pack() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        sidewatch::rules::file::load_str(
            Path::new("rules/python-service.yaml"),
            RULE_PACK,
            Duration::from_secs(60),
        )
        .expect("the default rule pack loads")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let result = sidewatch::rules::unittest::run_str(
        Path::new("rules/tests/fuzz.test.yaml"),
        &text,
        |_files, _interval| Ok(rule_pack().clone()),
    );
    std::hint::black_box(result.ok());
});
