//! `sidewatch replay` through the real binary: a recorded structlog file with an error
//! burst, the default rule pack, and the exact events SPEC's JSON shape gives, at the
//! times computed by hand from the records' own clock.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Ten minutes of one request a second, and from 3:00 to 5:58 one error every 2s.
fn recorded_log(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    let at = |s: u32| format!("2026-01-01T00:{:02}:{:02}.000000Z", s / 60, s % 60);
    for s in 0..600 {
        let _ = writeln!(
            text,
            r#"{{"event": "request finished", "level": "info", "path": "/api/cart", "status": 200, "duration_ms": 12, "timestamp": "{}"}}"#,
            at(s)
        );
        if (180..360).contains(&s) && s % 2 == 0 {
            let _ = writeln!(
                text,
                r#"{{"event": "request finished", "level": "error", "path": "/api/cart", "status": 500, "duration_ms": 40, "timestamp": "{}"}}"#,
                at(s)
            );
        }
    }
    text.push_str("not json, no timestamp: takes the time of the record before\n");
    let path = dir.join("app.log");
    std::fs::write(&path, text).unwrap();
    path
}

fn replay(format: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = recorded_log(dir.path());
    let config = dir.path().join("sidewatch.yaml");
    // No `rules:` section: the built-in default pack.
    std::fs::write(
        &config,
        format!(
            "service: {{ name: checkout-api, environment: staging }}\nlogs:\n  - name: app\n    paths: [\"{}/*.log\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .args(["replay", "-c"])
        .arg(&config)
        .arg("--from")
        .arg(&log)
        .args(["--format", format])
        .output()
        .expect("sidewatch runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn replay_prints_what_would_have_fired_and_when() {
    let (code, out, err) = replay("json");
    assert_eq!(code, 0, "{out}{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    // Ticks every 15s from the first record (00:00:00). HighErrorRatio ([1m], > 5%):
    // at 3:15 the window (2:15, 3:15] holds 60 ok and 8 errors (11.8%): pending; `for:
    // 2m` fires it at 5:15, when (4:15, 5:15] holds 60 ok and 30 errors (1/3). The last
    // error is at 5:58; at 7:00 the window has none, the ratio's series vanishes
    // (resolve_expr: resolved) and keep_firing_for 5m holds it until 12:00. The log
    // ends at 9:59: NoLogs (absent for [10m]) is pending from 20:00 and fires at 25:00,
    // which the replay reaches because it runs on past the last record.
    let labels = serde_json::json!({
        "alertname": "HighErrorRatio", "path": "/api/cart", "severity": "page",
        "service": "checkout-api", "environment": "staging"
    });
    let expected = vec![
        serde_json::json!({"time": "2026-01-01T00:05:15Z", "kind": "alert", "alertname": "HighErrorRatio",
            "state": "firing", "labels": labels, "value": 1.0 / 3.0}),
        serde_json::json!({"time": "2026-01-01T00:12:00Z", "kind": "alert", "alertname": "HighErrorRatio",
            "state": "resolved", "labels": labels, "value": 7.0 / 67.0}),
        serde_json::json!({"time": "2026-01-01T00:25:00Z", "kind": "alert", "alertname": "NoLogs",
            "state": "firing", "labels": {"alertname": "NoLogs", "source": "app", "severity": "warning",
            "service": "checkout-api", "environment": "staging"}, "value": 1.0}),
    ];
    assert_eq!(events, expected, "{out}");
}

#[test]
fn replay_prints_an_aligned_table_by_default() {
    let (code, out, err) = replay("table");
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("EVENT") && lines[0].contains("DETAILS"),
        "{out}"
    );
    let column = lines[0].find("STATE").unwrap();
    assert_eq!(&lines[1][column..column + 6], "firing", "{out}");
    assert_eq!(&lines[2][column..column + 8], "resolved", "{out}");
}
