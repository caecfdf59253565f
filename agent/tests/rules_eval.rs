//! The rule evaluator against hand-computed expectations. Each YAML file under
//! `tests/rules/` is a `sidewatch test` file (promtool's format plus `input_logs`) whose
//! expectations carry their arithmetic in comments; every test in it must pass. Beside
//! them: the many-to-many errors checked on the engine itself, the runner's report of a
//! deliberately wrong file through the real binary (snapshot), and the default rule
//! pack's own tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sidewatch::rules::engine::{Engine, EngineOptions};
use sidewatch::rules::file;
use sidewatch::rules::unittest::{parse_series_notation, run_file};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

/// Runs one test file and returns each test's name and failures.
fn run(name: &str) -> Vec<(String, Vec<String>)> {
    let path = rules_dir().join(name);
    let results = run_file(&path).unwrap_or_else(|errors| {
        panic!(
            "{}: the file did not run:\n{}",
            path.display(),
            errors.join("\n")
        )
    });
    assert!(!results.is_empty(), "{name} has no tests");
    results
}

fn report(failed: &[&(String, Vec<String>)]) -> String {
    failed
        .iter()
        .map(|(name, failures)| format!("FAILED: {name}\n{}", failures.join("\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that every test of the file passed, printing the diffs of those that did not.
fn assert_all_pass(name: &str) {
    let results = run(name);
    let failed: Vec<_> = results.iter().filter(|(_, f)| !f.is_empty()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} tests failed in {name}:\n{}",
        failed.len(),
        results.len(),
        report(&failed)
    );
}

#[test]
fn log_range_functions() {
    assert_all_pass("log_range.test.yaml");
}

#[test]
fn log_filters() {
    assert_all_pass("log_filters.test.yaml");
}

#[test]
fn log_stream_labels() {
    assert_all_pass("log_labels.test.yaml");
}

#[test]
fn series_range_functions() {
    assert_all_pass("series_range.test.yaml");
}

#[test]
fn aggregations() {
    assert_all_pass("aggregations.test.yaml");
}

#[test]
fn binary_operators() {
    assert_all_pass("binary_ops.test.yaml");
}

#[test]
fn recorded_series_and_staleness() {
    assert_all_pass("recording.test.yaml");
}

#[test]
fn alert_states() {
    assert_all_pass("alerts.test.yaml");
}

#[test]
fn evaluation_grid() {
    assert_all_pass("grid.test.yaml");
}

#[test]
fn alert_templates() {
    assert_all_pass("templates.test.yaml");
}

/// A test that expects ±Inf where the result is 2 must fail: an infinite expectation
/// is not a wildcard.
#[test]
fn an_infinite_expectation_is_not_a_wildcard() {
    let results = run("infinite-expectation.wrong.yaml");
    let passed: Vec<&str> = results
        .iter()
        .filter(|(_, f)| f.is_empty())
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        passed.is_empty(),
        "these tests expect ±Inf where the result is 2, yet passed: {passed:?}"
    );
}

/// PromQL's one-to-one matching: duplicate match groups on the right are a
/// many-to-many error, on the left a many-to-one error (group_left is not supported).
/// The failing rule records nothing and its health says why; the group goes on.
#[test]
fn many_to_many_matching_fails_the_rule() {
    const RULES: &str = r#"
groups:
  - name: matching
    rules:
      - record: m2m:right
        expr: a / on (job) c
      - record: m2m:left
        expr: c / on (job) a
      - record: m2m:set
        expr: c and on (job) a
      - record: m2m:ok
        expr: a * 2
"#;
    let rules = file::load_str(Path::new("matching.yaml"), RULES, Duration::from_secs(15))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let mut engine = Engine::new(rules, EngineOptions::default());
    engine.start(0);
    // a{job="x"} 10; c{job="x", k="1"} 1 and c{job="x", k="2"} 2 share job="x".
    for (series, value) in [
        (r#"a{job="x"}"#, 10.0),
        (r#"c{job="x", k="1"}"#, 1.0),
        (r#"c{job="x", k="2"}"#, 2.0),
    ] {
        let labels = parse_series_notation(series).expect("series notation");
        engine.push_sample(&labels, 0, Some(value));
    }
    engine.advance(0);

    let recorded = |name: &str| -> Vec<(String, Option<f64>)> {
        let mut out: Vec<(String, Option<f64>)> = engine
            .series
            .select(name, |_| true)
            .filter_map(|(labels, points)| {
                let p = points.iter().find(|p| p.t == 0)?;
                Some((labels.without_name().to_string(), p.v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let health = &engine.health[0];

    // a / on (job) c: two c series in the group {job="x"} on the right.
    let error = health[0].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("many-to-many"),
        "a / on (job) c: expected a many-to-many error, got {:?}",
        health[0].last_error
    );
    assert_eq!(health[0].failures, 1);
    assert!(recorded("m2m:right").is_empty());

    // c / on (job) a: two c series on the left match the one a.
    let error = health[1].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("many-to-one") || error.contains("multiple matches"),
        "c / on (job) a: expected a many-to-one error, got {:?}",
        health[1].last_error
    );
    assert!(recorded("m2m:left").is_empty());

    // Set operators never fail on duplicates: both c series have a match.
    assert_eq!(health[2].last_error, None);
    assert_eq!(
        recorded("m2m:set"),
        vec![
            (r#"{job="x", k="1"}"#.to_string(), Some(1.0)),
            (r#"{job="x", k="2"}"#.to_string(), Some(2.0)),
        ]
    );

    // The rule after the failing ones still ran: 10 × 2.
    assert_eq!(health[3].last_error, None);
    assert_eq!(
        recorded("m2m:ok"),
        vec![(r#"{job="x"}"#.to_string(), Some(20.0))]
    );
}

/// `sidewatch test` on a file with deliberately wrong expectations: exit code 1 and a
/// readable diff, `- ` for what was expected and `+ ` for what came out.
#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let output = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .current_dir(rules_dir())
        .args(["test", "deliberately-wrong.yaml"])
        .output()
        .expect("sidewatch runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().map(str::trim_start).collect();
    assert!(
        lines.contains(&r#"- {i="2"} 25"#) && lines.contains(&r#"+ {i="2"} 20"#),
        "the wrong value is not in the diff:\n{stdout}"
    );
    assert!(
        lines.contains(&r#"- {i="3"} 30"#),
        "the missing series is not in the diff:\n{stdout}"
    );
    assert!(
        lines.contains(&r#"+ {i="4"} 40"#),
        "the unexpected series is not in the diff:\n{stdout}"
    );
    assert!(
        lines.contains(&"SUCCESS: a right expectation passes"),
        "{stdout}"
    );
    insta::assert_snapshot!(stdout);
}

/// The default rule pack's own tests (and SPEC's example) through the binary.
#[test]
fn the_default_rule_pack_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .current_dir(&root)
        .args([
            "test",
            "rules/tests/python-service.test.yaml",
            "rules/tests/spec-example.yaml",
        ])
        .output()
        .expect("sidewatch runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
}
