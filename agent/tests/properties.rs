//! Property tests of every entry point that reads untrusted text: the line parsers and
//! the JSON output, the rule expression language, rule files, `sidewatch test` files,
//! the config, Alertmanager matchers and alert templates. Arbitrary input never panics,
//! and the round-trips that hold are checked (parsed records also go through the OTLP
//! encoder and must decode). The cargo-fuzz targets of `fuzz/` drive
//! the same entry points for longer (`make fuzz`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sidewatch::event::{FileMark, LogBatch, LogRecord, RecordFlags, Span};
use sidewatch::export::json::write_record;
use sidewatch::export::otlp::encode::LogEncoder;
use sidewatch::notify::matcher::{MatchOp, Matcher};
use sidewatch::parse::{Format, LineParser};
use sidewatch::rules::file::RuleSet;
use sidewatch::rules::labels::Labels;
use sidewatch::rules::parser::{parse, parse_log_query};
use sidewatch::rules::template::Template;

const FORMATS: [Format; 4] = [
    Format::Structlog,
    Format::Json,
    Format::Logfmt,
    Format::Text,
];

/// Parses each line as `file_tail` does (invalid UTF-8 kept lossily and flagged) into
/// one batch.
fn parse_batch(format: Format, lines: &[&[u8]]) -> LogBatch {
    let parser = LineParser::new(format, format.default_field_names());
    let source: Arc<str> = Arc::from("app");
    let mut batch = LogBatch::new(source.clone());
    batch
        .files
        .push(FileMark::unchecked(source, "/var/log/app.log"));
    for (i, line) in lines.iter().enumerate() {
        let start = batch.buf.len();
        let invalid_utf8 = match std::str::from_utf8(line) {
            Ok(text) => {
                batch.buf.push_str(text);
                false
            }
            Err(_) => {
                batch.buf.push_str(&String::from_utf8_lossy(line));
                true
            }
        };
        let mut record = LogRecord {
            offset: i as u64 * 100,
            observed_unix_nano: 1_700_000_000_000_000_000,
            flags: RecordFlags {
                invalid_utf8,
                ..RecordFlags::default()
            },
            ..LogRecord::default()
        };
        let span = Span::new(start, batch.buf.len());
        parser.parse(&mut batch.buf, span, &mut batch.fields, &mut record);
        batch.records.push(record);
    }
    batch
}

/// Parses each line as `file_tail` does and returns every record's JSON output line.
fn render_lines(format: Format, lines: &[&[u8]]) -> Vec<Vec<u8>> {
    let batch = parse_batch(format, lines);
    std::hint::black_box(sidewatch::export::touch_every_field(&batch));
    batch
        .records
        .iter()
        .map(|record| {
            let mut out = Vec::new();
            write_record(&mut out, &batch, record, Some("1.4.2"));
            out
        })
        .collect()
}

/// One JSON object and a newline (values nested deeper than serde_json's recursion
/// limit are copied from validated input and cannot be checked here).
fn check_json_line(out: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.last(), Some(&b'\n'));
    prop_assert!(!out[..out.len() - 1].contains(&b'\n'), "{out:?}");
    match serde_json::from_slice::<serde_json::Value>(&out[..out.len() - 1]) {
        Ok(value) => prop_assert!(value.is_object()),
        Err(e) => prop_assert!(
            e.to_string().contains("recursion limit"),
            "invalid JSON output ({e}): {}",
            String::from_utf8_lossy(out)
        ),
    }
    Ok(())
}

/// Lines that look like what the formats read, so the parsers get past their first
/// byte: JSON objects, logfmt pairs, level prefixes, access lines, tracebacks.
fn log_line() -> impl Strategy<Value = String> {
    prop_oneof![
        r#"\{("[a-z_\\"]{0,6}": ?([\[\]{}0-9.eE+\-,"a-z :\\u]{0,14}|"[^"]{0,8}"),?){0,5}\}"#,
        r#"([a-z_]{1,6}=("[^"\n]{0,8}"|[a-z0-9.:\-]{0,8}|"[\\"n]{0,3}") ?){1,5}"#,
        r#"(INFO|ERROR|WARNING|DEBUG|CRITICAL)?:? {0,5}[0-9T:.\- Z+]{0,26} [ -~]{0,30}"#,
        r#"INFO: +[0-9.]{1,15}:[0-9]{1,5} - "(GET|POST) /[a-z/?=]{0,10} HTTP/1.[01]" [0-9]{1,4} [A-Z ]{0,9}"#,
        "\\PC{0,48}",
    ]
}

fn render_all(lines: &[&[u8]]) -> Result<(), TestCaseError> {
    for format in FORMATS {
        let outputs = render_lines(format, lines);
        prop_assert_eq!(outputs.len(), lines.len());
        for out in outputs {
            check_json_line(&out)?;
        }
        check_otlp(&parse_batch(format, lines))?;
    }
    Ok(())
}

/// The hand-written OTLP encoder's request for `batch` decodes with the official
/// protobufs, holds every record, and is canonical (`prost` writes the same bytes).
fn check_otlp(batch: &LogBatch) -> Result<(), TestCaseError> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;
    let mut encoder = LogEncoder::new(&[("service.name".into(), "checkout-api".into())]);
    let mut out = bytes::BytesMut::new();
    let stats = encoder.encode(batch, 0..batch.records.len(), &mut out);
    prop_assert_eq!(stats.records as usize, batch.records.len());
    let request = ExportLogsServiceRequest::decode(&out[..])
        .map_err(|e| TestCaseError::fail(format!("undecodable OTLP: {e}")))?;
    let records: usize = request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum();
    prop_assert_eq!(records, batch.records.len());
    prop_assert!(request.encode_to_vec() == out, "not what prost would write");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parsers_take_arbitrary_bytes_and_write_valid_json(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
    ) {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
        render_all(&lines)?;
    }

    #[test]
    fn parsers_take_log_like_lines_and_write_valid_json(
        lines in proptest::collection::vec(log_line(), 1..6),
    ) {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        render_all(&lines)?;
    }

    #[test]
    fn rule_expressions_never_panic_and_what_parses_round_trips(text in "\\PC{0,48}") {
        if let Ok(expr) = parse(&text) {
            let printed = expr.to_string();
            let again = parse(&printed).map(|e| e.to_string());
            prop_assert_eq!(again.as_deref(), Ok(printed.as_str()), "printed from {:?}", text);
        }
        if let Ok(query) = parse_log_query(&text) {
            let printed = query.to_string();
            let again = parse_log_query(&printed).map(|q| q.to_string());
            prop_assert_eq!(again.as_deref(), Ok(printed.as_str()), "printed from {:?}", text);
        }
    }

    #[test]
    fn matcher_lists_never_panic_and_errors_point_into_the_text(text in "\\PC{0,40}") {
        match Matcher::parse_list(&text) {
            Ok(matchers) => {
                for m in matchers {
                    prop_assert_eq!(Matcher::parse(&m.to_string()), Ok(m));
                }
            }
            Err(e) => prop_assert!(e.offset <= text.len() && text.is_char_boundary(e.offset), "{e:?}"),
        }
    }

    #[test]
    fn a_printed_matcher_parses_back_to_itself(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,8}",
        op in proptest::sample::select(&[MatchOp::Equal, MatchOp::NotEqual, MatchOp::Regex, MatchOp::NotRegex][..]),
        value in "\\PC{0,16}|[a-z\\\\\"\n,{} ]{0,8}",
    ) {
        // A regex value must compile; the others are any text.
        if let Ok(matcher) = Matcher::new(name, op, value) {
            let printed = matcher.to_string();
            prop_assert_eq!(Matcher::parse(&printed), Ok(matcher.clone()), "{}", printed);
            prop_assert_eq!(Matcher::parse_list(&format!("{{{printed}}}")), Ok(vec![matcher]));
        }
    }

    #[test]
    fn templates_never_panic(
        text in r#"([ -~]{0,6}\{\{-? ?(\$value|\$labels\.[a-z]{1,4}|\.Labels\.[a-z]{1,4}|printf "%[0-9.]{0,3}[dfsgxe%]" \$value|"[a-z]{0,3}"|[0-9.e+]{1,5})( \| (humanize|humanizePercentage|humanizeDuration|humanize1024|title|toUpper|printf "%s"|[a-z]{1,6}))? ?-?\}\}){0,3}[ -~]{0,6}"#,
        value in proptest::sample::select(&[0.0, -0.0, 1.5, -3e9, 1e300, 5e-324, f64::NAN, f64::INFINITY, f64::NEG_INFINITY][..]),
    ) {
        if let Ok(template) = Template::parse(&text) {
            let labels = Labels::from_pairs([("path", "/api/cart"), ("logger", "")]);
            std::hint::black_box(template.render(&labels, value));
        }
    }

    #[test]
    fn templates_take_arbitrary_text(text in "\\PC{0,40}") {
        if let Ok(template) = Template::parse(&text) {
            std::hint::black_box(template.render(&Labels::new(), 1.0));
        }
    }
}

/// YAML documents with the keys of rule files, test files and configs in them, so the
/// loaders get past YAML parsing into their own validation.
fn yaml_doc() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(
        &[
            "groups",
            "name",
            "interval",
            "rules",
            "alert",
            "record",
            "expr",
            "for",
            "keep_firing_for",
            "resolve_expr",
            "labels",
            "annotations",
            "summary",
            "verifications",
            "limit",
            "rule_files",
            "evaluation_interval",
            "tests",
            "input_logs",
            "input_series",
            "series",
            "values",
            "lines",
            "line",
            "at",
            "every",
            "repeat",
            "source",
            "format",
            "alert_rule_test",
            "eval_time",
            "alertname",
            "exp_alerts",
            "promql_expr_test",
            "exp_samples",
            "value",
            "sources",
            "paths",
            "service",
            "api",
            "listen",
            "data_dir",
            "alerting",
            "receivers",
            "route",
            "matchers",
            "outputs",
            "probes",
            "url",
            "deployments",
        ][..],
    );
    let scalar = prop_oneof![
        Just("0s".to_string()),
        Just("1m".to_string()),
        Just("-1".to_string()),
        Just("999999999999999999999".to_string()),
        Just("rate({source=\"app\"}[5m]) > 0".to_string()),
        Just("\"{{ $value }}\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("${SIDEWATCH_TOKEN}".to_string()),
        "[ -~]{0,12}",
    ];
    let line =
        (0usize..4, key, proptest::bool::ANY, scalar).prop_map(|(indent, key, list, value)| {
            format!(
                "{}{}{key}: {value}",
                "  ".repeat(indent),
                if list { "- " } else { "" }
            )
        });
    proptest::collection::vec(line, 0..10).prop_map(|lines| lines.join("\n"))
}

fn no_rules(_: &[String], _: Duration) -> Result<RuleSet, Vec<sidewatch::config::ConfigError>> {
    Ok(RuleSet::default())
}

fn env(name: &str) -> Option<String> {
    (name == "SIDEWATCH_TOKEN").then(|| "t0k3n".to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rule_files_never_panic(text in prop_oneof![yaml_doc(), "\\PC{0,64}"]) {
        let _ = sidewatch::rules::file::load_str(Path::new("fuzz.rules.yaml"), &text, Duration::from_secs(60));
    }

    #[test]
    fn rule_test_files_never_panic(text in prop_oneof![yaml_doc(), "\\PC{0,64}"]) {
        let _ = sidewatch::rules::unittest::run_str(Path::new("fuzz.test.yaml"), &text, no_rules);
    }

    #[test]
    fn configs_never_panic(text in prop_oneof![yaml_doc(), "\\PC{0,64}"]) {
        let _ = sidewatch::config::load_str(&text, Path::new("sidewatch.yaml"), &env);
    }
}
