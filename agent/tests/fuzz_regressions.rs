//! Every input that crashed a fuzz target (`fuzz/`, `make fuzz`) or failed a property
//! of `properties.rs`, minimized and kept here so the bug stays fixed.

use std::path::Path;
use std::sync::Arc;

use sidewatch::event::{FileMark, LogBatch, LogRecord, Span};
use sidewatch::export::json::write_record;
use sidewatch::parse::{Format, LineParser};

/// The JSON output of one line parsed as `format`, checked to be one JSON object.
fn render(format: Format, line: &str) -> serde_json::Value {
    let parser = LineParser::new(format, format.default_field_names());
    let source: Arc<str> = Arc::from("app");
    let mut batch = LogBatch::new(source.clone());
    batch.files.push(FileMark::unchecked(source, "app.log"));
    batch.buf.push_str(line);
    let mut record = LogRecord::default();
    parser.parse(
        &mut batch.buf,
        Span::new(0, line.len()),
        &mut batch.fields,
        &mut record,
    );
    batch.records.push(record);
    let mut out = Vec::new();
    write_record(&mut out, &batch, &batch.records[0], None);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "invalid JSON output ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// properties.rs: an access line's status was copied into the output as a bare number,
/// so `000` (a leading zero) or Unicode digits (`\d` is Unicode-aware) made invalid JSON.
#[test]
fn access_line_status_is_always_a_json_number() {
    for line in [
        "INFO: .:0 - \"GET / HTTP/1\u{b}0\" 000 ",
        "INFO:     127.0.0.1:5 - \"GET / HTTP/1.1\" 042 OK",
        "INFO:     127.0.0.1:5 - \"GET / HTTP/1.1\" \u{663}\u{660}\u{660} OK",
        "10.0.0.1 - - [24/Nov/2026:02:00:00 +0000] \"GET / HTTP/1.1\" 007 12 \"-\" \"curl\"",
    ] {
        let record = render(Format::Text, line);
        assert!(
            record["attributes"].get("status").is_none(),
            "{line:?}: {record}"
        );
    }
    let record = render(
        Format::Text,
        "INFO:     127.0.0.1:5 - \"GET / HTTP/1.1\" 503 Service Unavailable",
    );
    assert_eq!(record["attributes"]["status"], 503);
}

/// Runs a `sidewatch test` file's text with no rules: every failure message.
fn run_test_file(text: &str) -> Vec<String> {
    let no_rules = |_: &[String], _| Ok(sidewatch::rules::file::RuleSet::default());
    match sidewatch::rules::unittest::run_str(Path::new("fuzz.test.yaml"), text, no_rules) {
        Ok(results) => results.into_iter().flat_map(|(_, f)| f).collect(),
        Err(errors) => errors,
    }
}

fn assert_refused(text: &str, message: &str) {
    let failures = run_test_file(text);
    assert!(
        failures.iter().any(|f| f.contains(message)),
        "{text}\nexpected a failure with {message:?}, got {failures:?}"
    );
}

/// rule_test_file (timeout, minimized): an evaluation interval of 0 looped forever;
/// the other limits keep a test file from asking for unbounded time or memory.
#[test]
fn test_files_cannot_ask_for_unbounded_work() {
    assert_refused(
        "evaluation_interval: 0s\ntests:\n- alert_rule_test: [{eval_time: 1m, alertname: A}]\n",
        "`evaluation_interval` must be more than 0",
    );
    assert_refused(
        "tests:\n- interval: 0s\n  input_series: [{series: up, values: 1 1}]\n",
        "`interval` must be more than 0",
    );
    assert_refused(
        "tests:\n- input_logs: [{source: app, lines: [{line: x, every: 1s, repeat: 10000000000}]}]\n",
        "more than 1000000 input lines",
    );
    assert_refused(
        "tests:\n- input_logs: [{source: app, lines: [{line: x, every: 60y, repeat: 3}]}]\n",
        "beyond 100 years",
    );
    assert_refused(
        "tests:\n- input_series: [{series: up, values: 1+1x10000000000}]\n",
        "expands to more than 1000000 values",
    );
    assert_refused(
        "tests:\n- input_series: [{series: up, values: _x10000000000}]\n",
        "expands to more than 1000000 values",
    );
    assert_refused(
        "tests:\n- alert_rule_test: [{eval_time: 1000y, alertname: A}]\n",
        "is too long (at most 100 years)",
    );
    assert_refused(
        "evaluation_interval: 1s\ntests:\n- alert_rule_test: [{eval_time: 30y, alertname: A}]\n",
        "evaluations every 1s",
    );
    // Within the limits, a test runs.
    assert_eq!(
        run_test_file(
            "tests:\n- input_series: [{series: up, values: 1x100}]\n  promql_expr_test: [{expr: up, eval_time: 10m, exp_samples: [{labels: up, value: 1}]}]\n"
        ),
        Vec::<String>::new()
    );
}

/// rule_expr (minimized `r++on`): `+on` was read as a series named `on`, which prints as
/// `r + on`, where `on` is the operator's keyword: the printing did not parse back.
/// Operator keywords are not series names (as in PromQL).
#[test]
fn operator_keywords_are_not_series_names() {
    use sidewatch::rules::parser::parse;
    for text in [
        "r++on",
        "r + -bool",
        "-ignoring",
        "rate(group_left[5m])",
        "x > +group_right",
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.to_string().contains("is a keyword"), "{text}: {e}");
    }
    // As operator keywords and as label names they still work.
    for text in [
        "a + on (on) b",
        "a > bool ignoring (bool) b",
        "sum by (on) (x)",
    ] {
        let printed = parse(text).expect(text).to_string();
        assert_eq!(parse(&printed).expect(&printed).to_string(), printed);
    }
}

/// parse_structlog (a hand-written seed, `{"event": "\ud800 lone surrogate"}`): the scanner
/// accepted a lone surrogate escape and the output copied it, which serde_json and other
/// strict readers reject. Such a line is now malformed JSON, kept as a text record.
#[test]
fn lone_surrogate_escapes_are_malformed_json() {
    for line in [
        r#"{"event": "\ud800 lone surrogate", "n": -0.0e+5}"#,
        r#"{"event": "x", "k": "\udc00"}"#,
        r#"{"event": "x", "k": ["\ud83d"]}"#,
        r#"{"event": "x", "\ud83d\u0041": 1}"#,
    ] {
        let record = render(Format::Structlog, line);
        assert_eq!(record["parse_error"], true, "{line}: {record}");
        assert_eq!(record["body"], line);
    }
    let record = render(
        Format::Structlog,
        r#"{"event": "\ud83d\ude00 ok", "k": ["\uD83D\uDE00"]}"#,
    );
    assert_eq!(record["parse_error"], false, "{record}");
    assert_eq!(record["body"], "\u{1F600} ok");
}

/// A rule group's `interval` of `1ns` was accepted and would have the runner evaluate
/// without pause (found reviewing the rule_file target's inputs): now at least 1s.
#[test]
fn a_rule_group_interval_below_a_second_is_refused() {
    for interval in ["1ns", "500ms", "0s"] {
        let text = format!(
            "groups:\n  - name: g\n    interval: {interval}\n    rules:\n      - record: x\n        expr: sum(count_over_time({{source=\"app\"}}[1m]))\n"
        );
        let errors = sidewatch::rules::file::load_str(
            Path::new("r.yaml"),
            &text,
            std::time::Duration::from_secs(15),
        )
        .expect_err(interval);
        let message = errors[0].to_string();
        assert!(
            message.contains("r.yaml:3:15") && message.contains("at least 1s"),
            "{interval}: {message}"
        );
    }
    let ok = "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - record: x\n        expr: sum(count_over_time({source=\"app\"}[1m]))\n";
    assert!(
        sidewatch::rules::file::load_str(
            Path::new("r.yaml"),
            ok,
            std::time::Duration::from_secs(15)
        )
        .is_ok()
    );
}

/// fuzz `parse_json` (2026-11-24, 10-minute run): `"duration_ms": 39.07e9823181` is a
/// valid JSON number but no double; it went into the output as a bare number, which
/// serde_json (and many consumers) refuse, and into OTLP as infinity. A number out of
/// a double's range is now kept as its text, a string; one in range stays a number.
#[test]
fn a_number_beyond_a_double_is_kept_as_text() {
    for format in [Format::Json, Format::Structlog] {
        let record = render(
            format,
            r#"{"event": "x", "duration_ms": 39.07e9823181, "neg": -1e400, "tiny": 1e-400, "ok": 2.5e3, "big": 1e308}"#,
        );
        let attrs = &record["attributes"];
        assert_eq!(attrs["duration_ms"], "39.07e9823181", "{record}");
        assert_eq!(attrs["neg"], "-1e400", "{record}");
        // Underflow is a double (0), as JSON parsers read it.
        assert!(attrs["tiny"].is_number(), "{record}");
        assert_eq!(attrs["ok"], 2500.0, "{record}");
        assert_eq!(attrs["big"], 1e308, "{record}");
    }
    let digits = "9".repeat(400);
    let record = render(Format::Json, &format!(r#"{{"event": "x", "n": {digits}}}"#));
    assert_eq!(record["attributes"]["n"], digits.as_str(), "{record}");
}
