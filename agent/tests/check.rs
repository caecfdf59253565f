//! `sidewatch check` on broken and good configs, through the real binary: every problem
//! is printed at once as `file:line:col: message`, and the exit code says whether any
//! was found. Snapshots (insta) hold the exact output users see.

use std::path::Path;
use std::process::Command;

/// Runs `sidewatch check -c tests/configs/NAME` from the agent's directory and returns
/// the exit code and what it printed.
fn check(name: &str) -> (i32, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .current_dir(dir)
        .args(["check", "-c", &format!("tests/configs/{name}")])
        .env_remove("SIDEWATCH_TEST_UNSET_TOKEN")
        .env_remove("SIDEWATCH_CONFIG")
        .output()
        .expect("sidewatch runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn unknown_keys_are_all_reported_with_suggestions() {
    let (code, out) = check("unknown_keys.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn bad_values_are_all_reported_at_once() {
    let (code, out) = check("bad_values.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn broken_yaml_points_at_the_syntax_error() {
    let (code, out) = check("broken_yaml.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn a_wrong_type_is_placed() {
    let (code, out) = check("wrong_types.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn the_spec_example_passes_with_warnings_for_later_sections() {
    let (code, out) = check("good.yaml");
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn alerting_problems_are_all_placed() {
    let (code, out) = check("bad_alerting.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn a_missing_file_is_an_error_not_defaults() {
    let (code, out) = check("does-not-exist.yaml");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tests/configs/does-not-exist.yaml:1:1: cannot read config file"),
        "{out}"
    );
}

#[test]
fn rule_file_problems_are_placed_in_the_rule_file() {
    let (code, out) = check("bad_rules.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn good_rule_files_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidewatch.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: {{ files: [\"{}/*.yaml\"] }}\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../rules")
                .display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("sidewatch runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.contains("ok: 1 rule group(s), 8 rule(s) from 1 file(s)"),
        "{out}"
    );
}

#[test]
fn drop_and_redact_mistakes_are_placed() {
    let (code, out) = check("bad_transforms.yaml");
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}
