//! End-to-end throughput benchmark: the release `sidewatch` binary tails a structlog
//! corpus from the beginning into the blackhole exporter, without rules and with rules,
//! beside a minimal `serde_json` → `Value` line loop over the same file as the reference.
//!
//! Run it with `cargo bench -p sidewatch --bench pipeline`; shrink the corpus with
//! `SIDEWATCH_BENCH_LINES=200000 cargo bench -p sidewatch --bench pipeline`; point
//! `SIDEWATCH_BENCH_AGENT` at another `sidewatch` binary to measure that one instead.
//!
//! What it does, in order:
//! 1. Generates `target/bench-corpus/app-<N>.log` (N = `SIDEWATCH_BENCH_LINES`, default
//!    2,000,000) with `../shared/bench/gen_corpus.py` if it is absent, using
//!    `$SIDEWATCH_BENCH_PYTHON`, else `<repo>/.venv/bin/python`, else `python3`.
//! 2. Copies it to `app-<N>.now.log` with the timestamps spread over the 30 s before the
//!    copy (`restamp`), lines and everything else unchanged, and syncs it. Rules evaluate
//!    on the wall clock, and the generated timestamps (hours ago) would only count as too
//!    old. Before each run with rules the copy is made again, so its records fall inside
//!    the rules' windows (the run prints `sidewatch_rule_records_too_old_total` to show
//!    it). Every run reads this copy from the page cache.
//! 3. Reference: re-executes this binary with `SIDEWATCH_BENCH_REFERENCE=<corpus>`, which
//!    reads the file line by line, parses each line into a `serde_json::Value` and
//!    prints its own wall time, CPU time and peak RSS as one JSON line.
//! 4. Agent runs: `sidewatch run -c <tmp config>` (`start_at: beginning`,
//!    `export: { blackhole: true }`), polling `GET /metrics` every 50 ms until the sink
//!    stage has passed on every line (`sidewatch_component_sent_events_total` of the
//!    sink; the rules ingest in the sink stage). Wall time runs from spawning the process
//!    to that poll, so it includes the agent's startup; CPU time (utime + stime of all
//!    threads) and peak RSS (`VmHWM`) are read from `/proc` at that moment. Nothing is
//!    subtracted; the CPU time of the busiest thread is read too (on two free cores it
//!    is the critical path). Four configurations:
//!    - no rules (`rules: { files: [] }`; without `rules:` the built-in pack runs);
//!    - the default pack `rules/python-service.yaml` plus `agent/benches/rules/extra.yaml`;
//!    - one `sum by (path)` rule over the corpus's ~130k distinct paths, at the default
//!      `max_series: 10000`, and at a limit the corpus cannot reach.
//!
//!    The first two alternate for `SIDEWATCH_BENCH_ROUNDS` rounds (default 3), and the
//!    ratio of their median wall times is the figure; the cardinality runs come once.
//!    With rules, the bench waits for the first evaluation after the last record and
//!    reads the rules' own metrics (window series, series limited, evaluations and their
//!    failures, records too old) and `VmHWM` again.
//! 5. Idle: starts an agent with the default config (so the built-in pack) on an empty
//!    directory, waits for `/readyz`, and measures its CPU and RSS over the next 10 s.
//!
//! It prints tables with the targets beside the figures. It exits 0 whether the targets
//! are met or not (it is a benchmark, not a test) and non-zero only when the corpus, the
//! reference or an agent run fails. Under `cargo test --benches` (no `--bench`
//! argument) it does nothing, so a test run never generates an 800 MB corpus.
//!
//! Linux only: it reads `/proc` and signals the agent with `kill -TERM`.

// A benchmark measures real elapsed time of other processes; the tokio clock that the
// agent itself uses (so tests can pause it) has no meaning here.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "bench measures wall time of real processes"
)]

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Lines in the default corpus, as the issue asks.
const DEFAULT_LINES: u64 = 2_000_000;
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Upper bound on one agent run over the corpus.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The agent is considered stuck when its record count does not move for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// How long the agent gets to exit after SIGTERM before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Targets from the issue, printed beside the measured figures.
const TARGET_RATIO: f64 = 1.5;
const TARGET_CPU_S_PER_MLINES: f64 = 2.5;
const TARGET_PEAK_RSS_MIB: f64 = 40.0;
const TARGET_IDLE_RSS_MIB: f64 = 15.0;
const TARGET_IDLE_CPU_PCT: f64 = 0.5;
/// Throughput with the default pack and `benches/rules/extra.yaml`, relative to none.
const TARGET_RULES_RATIO: f64 = 0.8;
/// Rounds of a run without rules followed by one with rules.
const DEFAULT_ROUNDS: usize = 3;

/// The `export:` line of the runs that measure the pipeline itself.
const BLACKHOLE: &str = "export: { blackhole: true }";
/// The OTLP runs' in-memory queue (`export.otlp.queue.memory`, the default) and the
/// issue's bound on their peak RSS: that much plus 25 MiB.
const OTLP_QUEUE_MEMORY_MIB: f64 = 16.0;
const OTLP_RSS_HEADROOM_MIB: f64 = 25.0;
/// OTLP export's throughput relative to the blackhole exporter's.
const TARGET_OTLP_RATIO: f64 = 0.5;

/// The metric whose sum says how many records the sink stage has passed on (rules ingest
/// there, so a run ends when the sink, not the tail, has seen the last line).
const SINK_SENT_METRIC: &str = "sidewatch_component_sent_events_total";
const SINK_LABEL: &str = "component_kind=\"sink\"";
/// The restamped corpus's timestamps end when the restamp starts and span this long. The
/// rules' shortest range is 1m, and after each 15 s tick its window keeps only the last
/// 45 s (the range less one bucket): 30 s keeps every record inside every window for runs
/// that end within ~40 s of the restamp. The counters printed after a run say if not.
const RESTAMP_SPAN: Duration = Duration::from_secs(30);
/// How long to wait, after the last record, for an evaluation that follows it (the
/// groups' interval is 15 s, the evaluation delay 1 s).
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(40);
/// `rules.max_series`'s default, and a limit the corpus cannot reach.
const DEFAULT_MAX_SERIES: u64 = 10_000;
const UNBOUNDED_MAX_SERIES: u64 = 100_000_000;
/// The cardinality runs' rule: one log query with one series per `path` value (the
/// corpus puts ids in paths).
const CARDINALITY_EXPR: &str =
    r#"sum by (path) (count_over_time({source="app"} | event="request finished" [5m]))"#;

fn main() -> ExitCode {
    if let Some(corpus) = std::env::var_os("SIDEWATCH_BENCH_REFERENCE") {
        return match reference_loop(Path::new(&corpus)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("reference: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("pipeline: benchmark only; run `cargo bench -p sidewatch --bench pipeline`");
        return ExitCode::SUCCESS;
    }
    match run_bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

type BenchResult<T> = Result<T, String>;

/// One measured pass over the corpus.
struct Measurement {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_kib: u64,
    /// CPU time of the agent's busiest thread (utime + stime): the pipeline's critical
    /// path when every thread has a core of its own.
    busiest_thread_s: f64,
}

struct Corpus {
    path: PathBuf,
    lines: u64,
    bytes: u64,
}

fn run_bench() -> BenchResult<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("agent crate has no parent directory")?
        .to_path_buf();
    let lines = match std::env::var("SIDEWATCH_BENCH_LINES") {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("SIDEWATCH_BENCH_LINES={text:?} is not a positive integer"))?,
        Err(_) => DEFAULT_LINES,
    };
    let rounds = match std::env::var("SIDEWATCH_BENCH_ROUNDS") {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("SIDEWATCH_BENCH_ROUNDS={text:?} is not a positive integer"))?,
        Err(_) => DEFAULT_ROUNDS,
    };
    let clk_tck = clock_ticks_per_second();

    let generated = prepare_corpus(&repo, lines)?;
    let show = |path: &Path| {
        path.strip_prefix(&repo)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    println!(
        "corpus: {}  {} lines  {:.1} MB  ({:.0} B/line)",
        show(&generated.path),
        generated.lines,
        generated.bytes as f64 / 1e6,
        generated.bytes as f64 / generated.lines.max(1) as f64,
    );
    // Every run reads a copy whose timestamps end now (see `restamp`): rules evaluate on
    // the wall clock, and records as old as the generated ones would only count as too
    // old for every window, which would make the rules look free.
    let timed_path = generated.path.with_extension("now.log");
    let (corpus, distinct_paths) = restamp(&generated, &timed_path)?;
    println!(
        "runs read {}: the same lines, timestamps spread over the {} s before each run \
         ({:.1} MB, {} distinct `path` values)",
        show(&corpus.path),
        RESTAMP_SPAN.as_secs(),
        corpus.bytes as f64 / 1e6,
        thousands(distinct_paths),
    );

    // The reference goes first, so its figures are printed even when the agent fails.
    eprintln!("reference: serde_json -> Value loop over the corpus ...");
    let reference = run_reference(&corpus)?;

    let scratch = Scratch::create()?;
    // `SIDEWATCH_BENCH_AGENT` runs another build instead, e.g. an older one to compare.
    let agent_bin = std::env::var_os("SIDEWATCH_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sidewatch")));
    let agent_bin = agent_bin.as_path();
    let quoted = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap_or_default();
    let pack = repo.join("rules/python-service.yaml");
    let extra = repo.join("agent/benches/rules/extra.yaml");
    let cardinality_rules = scratch.path.join("cardinality.rules.yaml");
    let cardinality_file = format!(
        "groups:\n  - name: cardinality\n    interval: 15s\n    rules:\n      \
         - record: http:requests:count5m_by_path\n        expr: {}\n",
        serde_json::to_string(CARDINALITY_EXPR).unwrap_or_default()
    );
    fs::write(&cardinality_rules, cardinality_file)
        .map_err(|e| format!("writing {}: {e}", cardinality_rules.display()))?;
    let no_rules = AgentRun {
        name: "no-rules",
        // A config without `rules:` runs the built-in pack: say "none" explicitly.
        rules: "rules: { files: [] }".into(),
        evaluated: false,
        export: BLACKHOLE.into(),
        receiver: None,
    };
    let with_rules = AgentRun {
        name: "rules",
        rules: format!(
            "rules: {{ files: [{}, {}] }}",
            quoted(&pack),
            quoted(&extra)
        ),
        evaluated: true,
        export: BLACKHOLE.into(),
        receiver: None,
    };
    let by_path = AgentRun {
        name: "by-path",
        rules: format!(
            "rules: {{ files: [{}], max_series: {DEFAULT_MAX_SERIES} }}",
            quoted(&cardinality_rules)
        ),
        evaluated: true,
        export: BLACKHOLE.into(),
        receiver: None,
    };
    let unbounded = AgentRun {
        name: "by-path-unbounded",
        rules: format!(
            "rules: {{ files: [{}], max_series: {UNBOUNDED_MAX_SERIES} }}",
            quoted(&cardinality_rules)
        ),
        evaluated: true,
        export: BLACKHOLE.into(),
        receiver: None,
    };
    if std::env::var("SIDEWATCH_BENCH_SUITE").as_deref() == Ok("otlp") {
        let result = run_otlp_suite(
            agent_bin,
            &scratch.path,
            &corpus,
            &no_rules,
            rounds,
            clk_tck,
        );
        if result.is_err() {
            scratch.keep();
        }
        return result;
    }
    // The runs without and with rules alternate, `rounds` times, so that a neighbour's
    // burst of work weighs on both; the cardinality runs come once at the end. Every run
    // but the first gets fresh timestamps, so that its records fall in the windows.
    let mut plan: Vec<&AgentRun> = Vec::new();
    for _ in 0..rounds {
        plan.push(&no_rules);
        plan.push(&with_rules);
    }
    plan.push(&by_path);
    plan.push(&unbounded);
    let mut results: Vec<AgentResult> = Vec::new();
    for (i, run) in plan.iter().enumerate() {
        if i > 0 {
            restamp(&generated, &timed_path)?;
        }
        eprintln!(
            "sidewatch ({}): tailing the corpus into the blackhole exporter ...",
            run.name
        );
        match run_agent(agent_bin, &scratch.path, run, &corpus, clk_tck) {
            Ok(result) => results.push(result),
            Err(err) => {
                print_table(&corpus, results.first().map(|r| &r.measurement), &reference);
                scratch.keep();
                return Err(err);
            }
        }
    }
    eprintln!("idle: empty log directory, {} s ...", IDLE_WINDOW.as_secs());
    let idle = match run_idle(agent_bin, &scratch.path, clk_tck) {
        Ok(idle) => idle,
        Err(err) => {
            print_table(&corpus, Some(&results[0].measurement), &reference);
            scratch.keep();
            return Err(err);
        }
    };

    let unbounded = results.pop().ok_or("internal: no unbounded run")?;
    let by_path = results.pop().ok_or("internal: no by-path run")?;
    let (nones, rules): (Vec<_>, Vec<_>) = results
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let nones: Vec<AgentResult> = nones.into_iter().map(|(_, r)| r).collect();
    let rules: Vec<AgentResult> = rules.into_iter().map(|(_, r)| r).collect();
    let none = median_run(&nones).ok_or("internal: no run without rules")?;
    print_table(&corpus, Some(&none.measurement), &reference);
    print_idle(&idle);
    let rule_count = |path: &Path| {
        fs::read_to_string(path)
            .map(|text| {
                text.lines()
                    .filter(|l| {
                        let l = l.trim_start();
                        l.starts_with("- record:") || l.starts_with("- alert:")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let rules_name = format!(
        "{} ({} rules) + {} ({} rules)",
        show(&pack),
        rule_count(&pack),
        show(&extra),
        rule_count(&extra)
    );
    print_rules(&corpus, &rules_name, &nones, &rules);
    print_cardinality(distinct_paths, none, &by_path, &unbounded);
    println!(
        "notes: sidewatch wall time runs from process spawn to the /metrics poll (every {} ms) \
         at which the sink stage has passed on the last record, so it includes startup; CPU \
         is utime+stime of all threads at that moment (CLK_TCK={clk_tck}); peak RSS is VmHWM; \
         nothing is subtracted",
        POLL_INTERVAL.as_millis()
    );
    Ok(())
}

/// OTLP export against the blackhole exporter: `rounds` alternations of a run without
/// rules into the blackhole and one exporting over OTLP/HTTP (no compression) to a
/// receiver in this process that decodes every request and counts its records; then one
/// run with gzip. A run ends when the receiver has counted every line.
fn run_otlp_suite(
    bin: &Path,
    dir: &Path,
    corpus: &Corpus,
    blackhole: &AgentRun,
    rounds: usize,
    clk_tck: u64,
) -> BenchResult<()> {
    let otlp_run = |name: &'static str, compression: &str| -> BenchResult<AgentRun> {
        let counter = otlp_receiver::Counter::start()?;
        Ok(AgentRun {
            name,
            rules: "rules: { files: [] }".into(),
            evaluated: false,
            export: format!(
                "export: {{ otlp: {{ endpoint: \"http://127.0.0.1:{}\", compression: {compression}, \
                 signals: [logs], queue: {{ memory: {}MiB }} }} }}",
                counter.port, OTLP_QUEUE_MEMORY_MIB as u64
            ),
            receiver: Some(counter),
        })
    };
    // Every run starts from an empty data_dir, so none resumes from another's checkpoints.
    let fresh = |run: &AgentRun| {
        let _ = fs::remove_dir_all(dir.join(format!("{}-data", run.name)));
    };
    let mut blackholes = Vec::new();
    let mut plains = Vec::new();
    for _ in 0..rounds {
        eprintln!("sidewatch: tailing the corpus into the blackhole exporter ...");
        fresh(blackhole);
        blackholes.push(run_agent(bin, dir, blackhole, corpus, clk_tck)?);
        let run = otlp_run("otlp", "none")?;
        fresh(&run);
        eprintln!("sidewatch: exporting the corpus over OTLP/HTTP (no compression) ...");
        plains.push(run_agent(bin, dir, &run, corpus, clk_tck)?);
        let received = run.receiver.as_ref().map(|r| r.stats()).unwrap_or_default();
        let receiver_cpu_s =
            run.receiver.as_ref().map_or(0, |r| r.cpu_ticks()) as f64 / clk_tck as f64;
        let wall_s = plains.last().map_or(0.0, |r| r.measurement.wall_s);
        eprintln!(
            "  receiver: {} requests, {:.1} MB of protobuf, {} records; {} requests decoded fully too, same count; \
             {receiver_cpu_s:.2} CPU-s ({:.2} cores beside the agent)",
            received.0,
            received.1 as f64 / 1e6,
            received.2,
            received.3,
            receiver_cpu_s / wall_s.max(1e-9)
        );
    }
    let gzip = otlp_run("otlp-gzip", "gzip")?;
    fresh(&gzip);
    eprintln!("sidewatch: exporting the corpus over OTLP/HTTP with gzip ...");
    let gzipped = run_agent(bin, dir, &gzip, corpus, clk_tck)?;
    let gzip_stats = gzip
        .receiver
        .as_ref()
        .map(|r| r.stats())
        .unwrap_or_default();

    let blackhole = median_run(&blackholes).ok_or("internal: no blackhole run")?;
    let plain = median_run(&plains).ok_or("internal: no OTLP run")?;
    println!("{}", table_header());
    println!(
        "{}",
        table_row(corpus, "blackhole (median)", &blackhole.measurement)
    );
    println!(
        "{}",
        table_row(corpus, "OTLP/HTTP (median)", &plain.measurement)
    );
    println!(
        "{}",
        table_row(corpus, "OTLP/HTTP gzip", &gzipped.measurement)
    );
    for (name, runs) in [("blackhole", &blackholes), ("OTLP", &plains)] {
        let walls: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.2}", r.measurement.wall_s))
            .collect();
        let busiest: Vec<String> = runs
            .iter()
            .map(|r| {
                format!(
                    "{:.0}%",
                    100.0 * r.measurement.busiest_thread_s / r.measurement.wall_s
                )
            })
            .collect();
        println!(
            "{name} runs' wall s: {}; busiest thread busy {} of the wall time",
            walls.join(", "),
            busiest.join(", ")
        );
    }
    let ratio = blackhole.measurement.wall_s / plain.measurement.wall_s;
    println!(
        "OTLP throughput / blackhole: {:.1}%  (target ≥ {:.0}%)  {}",
        ratio * 100.0,
        TARGET_OTLP_RATIO * 100.0,
        mark(ratio >= TARGET_OTLP_RATIO)
    );
    let bound = OTLP_QUEUE_MEMORY_MIB + OTLP_RSS_HEADROOM_MIB;
    for (name, m) in [
        ("OTLP", &plain.measurement),
        ("OTLP gzip", &gzipped.measurement),
    ] {
        let peak = mib(m.peak_rss_kib);
        println!(
            "{name} peak RSS: {peak:.1} MiB  (target ≤ queue.memory {OTLP_QUEUE_MEMORY_MIB} MiB + \
             {OTLP_RSS_HEADROOM_MIB} MiB = {bound} MiB)  {}",
            mark(peak <= bound)
        );
    }
    println!(
        "gzip: {:.1}% of the blackhole's throughput; {:.1} MB on the wire for {} records",
        100.0 * blackhole.measurement.wall_s / gzipped.measurement.wall_s,
        gzip_stats.1 as f64 / 1e6,
        gzip_stats.2
    );
    Ok(())
}

/// A receiver that only decodes and counts: OTLP/HTTP `POST /v1/logs` on a std listener,
/// one thread per connection (keep-alive), gzip bodies inflated, answered 200 with an
/// empty `ExportLogsServiceResponse`.
///
/// Every request is decoded at the wire level (`count_records`): each length-delimited
/// field of `ExportLogsServiceRequest` → `ResourceLogs` → `ScopeLogs` is checked down to
/// the `LogRecord`s, which are counted; a malformed request counts nothing and says so.
/// It does not build `prost` structs for each record: that costs a core-second per 250 MB
/// and ran on the agent's two cores, so the figure measured the receiver as much as the
/// agent. Every 25th request is also decoded fully with opentelemetry-proto's types and
/// must give the same count (`verified` in `stats`).
mod otlp_receiver {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;

    #[derive(Default)]
    pub(crate) struct Counter {
        pub(crate) port: u16,
        requests: AtomicU64,
        /// Protobuf bytes as they arrived (compressed when gzip).
        wire_bytes: AtomicU64,
        records: AtomicU64,
        /// Requests decoded fully with `prost` as well, whose count agreed.
        verified: AtomicU64,
        /// CPU time (clock ticks) of the threads serving connections: the receiver's
        /// share of the two cores the agent also runs on.
        cpu_ticks: AtomicU64,
    }

    impl Counter {
        pub(crate) fn start() -> Result<Arc<Counter>, String> {
            let listener =
                TcpListener::bind("127.0.0.1:0").map_err(|e| format!("receiver: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let counter = Arc::new(Counter {
                port,
                ..Counter::default()
            });
            let shared = counter.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = shared.clone();
                    std::thread::spawn(move || serve(stream, &shared));
                }
            });
            Ok(counter)
        }

        pub(crate) fn records(&self) -> u64 {
            self.records.load(Ordering::Relaxed)
        }

        /// CPU ticks the receiver's connection threads have used.
        pub(crate) fn cpu_ticks(&self) -> u64 {
            self.cpu_ticks.load(Ordering::Relaxed)
        }

        /// (requests, wire bytes, records, requests also decoded fully and agreeing).
        pub(crate) fn stats(&self) -> (u64, u64, u64, u64) {
            (
                self.requests.load(Ordering::Relaxed),
                self.wire_bytes.load(Ordering::Relaxed),
                self.records(),
                self.verified.load(Ordering::Relaxed),
            )
        }
    }

    /// utime + stime of the calling thread, in clock ticks.
    fn thread_cpu_ticks() -> std::io::Result<u64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3, utime 14 and stime 15 (1-based).
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(tick(11) + tick(12))
    }

    /// A varint at `at`, and where it ends.
    fn varint(buf: &[u8], mut at: usize) -> Option<(u64, usize)> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *buf.get(at)?;
            at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some((value, at));
            }
        }
        None
    }

    /// Walks one message's fields, calling `field(number, body)` for each
    /// length-delimited one and skipping the others; `None` if the bytes are not a
    /// well-formed message.
    fn fields(buf: &[u8], mut field: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
        let mut at = 0;
        while at < buf.len() {
            let (key, next) = varint(buf, at)?;
            at = next;
            match key & 7 {
                0 => at = varint(buf, at)?.1,
                1 => at += 8,
                5 => at += 4,
                2 => {
                    let (len, next) = varint(buf, at)?;
                    let end = next.checked_add(usize::try_from(len).ok()?)?;
                    field(key >> 3, buf.get(next..end)?)?;
                    at = end;
                }
                _ => return None,
            }
        }
        (at == buf.len()).then_some(())
    }

    /// The `LogRecord`s of an `ExportLogsServiceRequest`, every level above them
    /// checked (`resource_logs` = 1, `scope_logs` = 2, `log_records` = 2).
    fn count_records(request: &[u8]) -> Option<u64> {
        let mut records = 0;
        fields(request, |number, resource_logs| {
            if number != 1 {
                return Some(());
            }
            fields(resource_logs, |number, scope_logs| {
                if number != 2 {
                    return Some(());
                }
                fields(scope_logs, |number, record| {
                    if number == 2 {
                        fields(record, |_, _| Some(()))?;
                        records += 1;
                    }
                    Some(())
                })
            })
        })?;
        Some(records)
    }

    fn serve(stream: TcpStream, counter: &Counter) {
        let _ = stream.set_nodelay(true);
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        let mut body = Vec::new();
        let mut inflated = Vec::new();
        let mut ticks = 0u64;
        loop {
            let mut length = 0usize;
            let mut gzip = false;
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                } else if lower.starts_with("content-encoding:") && lower.contains("gzip") {
                    gzip = true;
                }
            }
            // Read into the reused buffer without zero-filling it first (a megabyte-sized
            // memset per request is CPU the agent beside it would not get).
            body.clear();
            match (&mut reader).take(length as u64).read_to_end(&mut body) {
                Ok(n) if n == length => {}
                _ => return,
            }
            let payload: &[u8] = if gzip {
                inflated.clear();
                if flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut inflated)
                    .is_err()
                {
                    return;
                }
                &inflated
            } else {
                &body
            };
            let records = match count_records(payload) {
                Some(records) => records,
                None => {
                    eprintln!("receiver: malformed request ({} bytes)", payload.len());
                    0
                }
            };
            let request = counter.requests.fetch_add(1, Ordering::Relaxed);
            if request.is_multiple_of(25) {
                match ExportLogsServiceRequest::decode(payload) {
                    Ok(decoded) => {
                        let full: u64 = decoded
                            .resource_logs
                            .iter()
                            .flat_map(|rl| &rl.scope_logs)
                            .map(|sl| sl.log_records.len() as u64)
                            .sum();
                        if full == records {
                            counter.verified.fetch_add(1, Ordering::Relaxed);
                        } else {
                            eprintln!("receiver: wire count {records} != decoded count {full}");
                        }
                    }
                    Err(e) => eprintln!("receiver: undecodable request: {e}"),
                }
            }
            counter
                .wire_bytes
                .fetch_add(length as u64, Ordering::Relaxed);
            counter.records.fetch_add(records, Ordering::Relaxed);
            if let Ok(now) = thread_cpu_ticks() {
                counter
                    .cpu_ticks
                    .fetch_add(now.saturating_sub(ticks), Ordering::Relaxed);
                ticks = now;
            }
            let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    }
}

/// One agent configuration measured over the corpus.
struct AgentRun {
    name: &'static str,
    /// The config's `rules:` line.
    rules: String,
    /// Whether to wait, after the last record, for an evaluation of the rules and read
    /// the rules' metrics.
    evaluated: bool,
    /// The config's `export:` line.
    export: String,
    /// When set, the run ends when this receiver has counted every line (OTLP export),
    /// not when the sink has passed them on.
    receiver: Option<std::sync::Arc<otlp_receiver::Counter>>,
}

struct AgentResult {
    measurement: Measurement,
    /// `/metrics` after the first evaluation that followed the last record.
    rules: Option<RuleFigures>,
}

struct RuleFigures {
    /// `sidewatch_rule_evaluations_total` when the last record had been ingested.
    evaluations_during: f64,
    evaluations: f64,
    failures: f64,
    window_series: f64,
    series_limited: f64,
    too_old: f64,
    unwrap_errors: f64,
    /// `VmHWM` after that evaluation (which also saves the rules' state).
    peak_rss_kib: u64,
}

// ---------------------------------------------------------------------------------------
// Corpus

fn prepare_corpus(repo: &Path, lines: u64) -> BenchResult<Corpus> {
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo.join(dir),
        None => repo.join("target"),
    };
    let dir = target_dir.join("bench-corpus");
    let path = dir.join(format!("app-{lines}.log"));
    if !path.exists() {
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        generate_corpus(repo, lines, &path)?;
    }
    let (lines_counted, bytes, partial_tail) =
        count_lines(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if partial_tail {
        eprintln!(
            "warning: {} ends without a newline; its last partial line is not counted",
            path.display()
        );
    }
    if lines_counted == 0 {
        return Err(format!("{} holds no complete line", path.display()));
    }
    Ok(Corpus {
        path,
        lines: lines_counted,
        bytes,
    })
}

fn generate_corpus(repo: &Path, lines: u64, path: &Path) -> BenchResult<()> {
    let python = match std::env::var_os("SIDEWATCH_BENCH_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => {
            let venv = repo.join(".venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        }
    };
    let script = repo.join("../shared/bench/gen_corpus.py");
    // Write beside the final name and rename, so an interrupted run never leaves a
    // truncated corpus that a later run would reuse.
    let partial = path.with_extension("log.partial");
    eprintln!(
        "generating {} lines into {} with {} (≈25 s per million lines) ...",
        lines,
        path.display(),
        python.display()
    );
    let status = Command::new(&python)
        .arg(&script)
        .arg("--lines")
        .arg(lines.to_string())
        .arg("--out")
        .arg(&partial)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running {} {}: {e}", python.display(), script.display()))?;
    if !status.success() {
        let _ = fs::remove_file(&partial);
        return Err(format!(
            "{} {} exited with {status}\nhint: it needs structlog (`pip install structlog`); \
             point SIDEWATCH_BENCH_PYTHON at a python that has it",
            python.display(),
            script.display()
        ));
    }
    fs::rename(&partial, path)
        .map_err(|e| format!("renaming {} to {}: {e}", partial.display(), path.display()))
}

/// Newline-terminated lines, total bytes, and whether a partial line follows the last
/// newline (the agent waits for a newline before it emits a line, so that one is not
/// counted).
fn count_lines(path: &Path) -> io::Result<(u64, u64, bool)> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut bytes, mut last) = (0u64, 0u64, b'\n');
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += n as u64;
        last = buf[n - 1];
    }
    Ok((lines, bytes, last != b'\n'))
}

/// Copies the corpus to `dst` with each line's `"timestamp": "…"` value replaced, lines in
/// order: line i of n gets `now − RESTAMP_SPAN + RESTAMP_SPAN·i/n` (`now` is when the copy
/// starts), written with microseconds (`2026-11-23T10:15:30.123456Z`). The generator
/// stamps 50 requests a second whatever `--lines` is (its `--start` moves the first stamp,
/// not the rate), so 2M lines span about 7 h and at most their last 10 minutes could fall
/// in a rule's window. Also counts the distinct `path` values. Written beside `dst`,
/// synced and renamed, so that writeback does not run during a measurement.
fn restamp(src: &Corpus, dst: &Path) -> BenchResult<(Corpus, u64)> {
    let started = Instant::now();
    let err = |e: io::Error| {
        format!(
            "restamping {} into {}: {e}",
            src.path.display(),
            dst.display()
        )
    };
    let end = unix_nanos();
    let span = RESTAMP_SPAN.as_nanos() as i64;
    let partial = dst.with_extension("partial");
    let mut reader = BufReader::with_capacity(1 << 20, File::open(&src.path).map_err(err)?);
    let mut writer = io::BufWriter::with_capacity(1 << 20, File::create(&partial).map_err(err)?);
    // structlog's JSONRenderer writes `"key": "value"` and puts `timestamp` last.
    let timestamp_key = memchr::memmem::FinderRev::new(b"\"timestamp\": \"");
    let path_key = memchr::memmem::Finder::new(b"\"path\": \"");
    let mut paths: HashSet<Vec<u8>> = HashSet::new();
    let mut line = Vec::with_capacity(4096);
    let mut stamp = String::with_capacity(32);
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(err)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // A final line without a newline is not counted by `count_lines` either.
        }
        lines += 1;
        if let Some(at) = path_key.find(&line) {
            let value = &line[at + 9..];
            let value = &value[..memchr::memchr(b'"', value).unwrap_or(0)];
            if !paths.contains(value) {
                paths.insert(value.to_vec());
            }
        }
        let value = timestamp_key.rfind(&line).and_then(|at| {
            let from = at + 14;
            let len = memchr::memchr(b'"', &line[from..])?;
            Some((from, from + len))
        });
        let Some((from, to)) = value else {
            writer.write_all(&line).map_err(err)?;
            bytes += line.len() as u64;
            continue;
        };
        let offset = (i128::from(span) * i128::from(lines) / i128::from(src.lines.max(1))) as i64;
        stamp.clear();
        rfc3339_micros(end - span + offset, &mut stamp);
        writer.write_all(&line[..from]).map_err(err)?;
        writer.write_all(stamp.as_bytes()).map_err(err)?;
        writer.write_all(&line[to..]).map_err(err)?;
        bytes += (line.len() - (to - from) + stamp.len()) as u64;
    }
    let file = writer.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&partial, dst).map_err(err)?;
    eprintln!(
        "restamped {} lines in {:.1} s",
        thousands(lines),
        started.elapsed().as_secs_f64()
    );
    let corpus = Corpus {
        path: dst.to_path_buf(),
        lines,
        bytes,
    };
    Ok((corpus, paths.len() as u64))
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// `2026-11-23T10:15:30.123456Z` for nanoseconds since the Unix epoch.
fn rfc3339_micros(nanos: i64, out: &mut String) {
    use std::fmt::Write as _;
    let secs = nanos.div_euclid(1_000_000_000);
    let micros = nanos.rem_euclid(1_000_000_000) / 1_000;
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        day_secs / 3_600,
        day_secs % 3_600 / 60,
        day_secs % 60
    );
}

// ---------------------------------------------------------------------------------------
// Reference: a minimal serde_json line-parse loop, run in a child process so that its
// CPU time and peak RSS are its own.

fn run_reference(corpus: &Corpus) -> BenchResult<Measurement> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the bench binary: {e}"))?;
    let output = Command::new(&exe)
        .env("SIDEWATCH_BENCH_REFERENCE", &corpus.path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {} in reference mode: {e}", exe.display()))?;
    if !output.status.success() {
        return Err(format!("reference run exited with {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .map_err(|e| format!("reference printed {last:?}, not a JSON report: {e}"))?;
    let field = |name: &str| {
        report[name]
            .as_f64()
            .ok_or_else(|| format!("reference report {last} lacks a numeric {name:?}"))
    };
    let lines = field("lines")? as u64;
    let parse_errors = field("parse_errors")? as u64;
    if lines != corpus.lines || parse_errors != 0 {
        eprintln!(
            "warning: reference read {lines} lines with {parse_errors} parse errors; \
             the corpus has {} lines",
            corpus.lines
        );
    }
    let cpu_s = field("cpu_s")?;
    Ok(Measurement {
        wall_s: field("wall_s")?,
        cpu_s,
        peak_rss_kib: field("vm_hwm_kib")? as u64,
        busiest_thread_s: cpu_s,
    })
}

/// Reference mode: parse every line into a `Value` and report on stdout as one JSON line.
fn reference_loop(corpus: &Path) -> io::Result<()> {
    let started = Instant::now();
    let file = File::open(corpus)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::with_capacity(4096);
    let (mut lines, mut bytes, mut keys, mut parse_errors) = (0u64, 0u64, 0u64, 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            // End of file, or a final line without a newline, which the agent would not
            // emit either.
            break;
        }
        lines += 1;
        bytes += n as u64;
        match serde_json::from_slice::<serde_json::Value>(&line) {
            // Touch the result so the parse cannot be optimised away.
            Ok(value) => {
                keys += std::hint::black_box(&value)
                    .as_object()
                    .map_or(0, |o| o.len() as u64)
            }
            Err(_) => parse_errors += 1,
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    // Sample our own usage before spawning `getconf`, which does not count towards it.
    let cpu_ticks = proc_cpu_ticks("self")?;
    let vm_hwm_kib = proc_status_kib("self", "VmHWM")?;
    let clk_tck = clock_ticks_per_second();
    let report = serde_json::json!({
        "lines": lines,
        "bytes": bytes,
        "keys": keys,
        "parse_errors": parse_errors,
        "wall_s": wall_s,
        "cpu_ticks": cpu_ticks,
        "clk_tck": clk_tck,
        "cpu_s": cpu_ticks as f64 / clk_tck as f64,
        "vm_hwm_kib": vm_hwm_kib,
    });
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The agent

/// A running agent, killed on drop if it is still alive (an early return or a panic must
/// not leave it running).
struct Agent {
    child: Child,
    port: u16,
    log: PathBuf,
    started: Instant,
}

impl Agent {
    /// `rules` is the config's `rules:` line; empty, the agent runs the built-in pack.
    fn start(
        bin: &Path,
        dir: &Path,
        name: &str,
        log_glob: &Path,
        rules: &str,
        export: &str,
    ) -> BenchResult<Agent> {
        let port = free_port()?;
        let data_dir = dir.join(format!("{name}-data"));
        fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let config = dir.join(format!("{name}.yaml"));
        // JSON strings are valid YAML double-quoted scalars, which keeps any path safe.
        let quoted = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap_or_default();
        let yaml = format!(
            "data_dir: {data}\n\
             api: {{ listen: 127.0.0.1:{port} }}\n\
             logs:\n  - {{ name: app, paths: [{glob}], format: structlog, start_at: beginning }}\n\
             {export}\n\
             {rules}\n",
            data = quoted(&data_dir),
            glob = quoted(log_glob),
        );
        fs::write(&config, yaml).map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = dir.join(format!("{name}.out"));
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("duplicating {}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(bin)
            .arg("run")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(Agent {
            child,
            port,
            log,
            started,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the agent has exited, with the tail of its output.
    fn check_alive(&mut self) -> BenchResult<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.failure(&format!("agent exited early with {status}"))),
            Err(e) => Err(format!("waiting for the agent: {e}")),
        }
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{what}\n--- last lines of {} ---\n{}",
            self.log.display(),
            log_tail(&self.log, 30)
        )
    }

    /// SIGTERM, then wait for the exit under a grace period; SIGKILL after it.
    fn stop(mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => sleep(POLL_INTERVAL),
                Err(_) => break,
            }
        }
        eprintln!(
            "warning: agent did not exit within {:?} of SIGTERM; killing it",
            SHUTDOWN_GRACE
        );
        None // Drop sends SIGKILL.
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run_agent(
    bin: &Path,
    dir: &Path,
    run: &AgentRun,
    corpus: &Corpus,
    clk_tck: u64,
) -> BenchResult<AgentResult> {
    let mut agent = Agent::start(bin, dir, run.name, &corpus.path, &run.rules, &run.export)?;
    let target = corpus.lines as f64;
    let mut last_count = -1.0;
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    loop {
        agent.check_alive()?;
        let count = match &run.receiver {
            Some(receiver) => Some(receiver.records() as f64),
            None => match http_get(agent.port, "/metrics") {
                Ok((200, body)) => Some(sum_metric_where(
                    &String::from_utf8_lossy(&body),
                    SINK_SENT_METRIC,
                    SINK_LABEL,
                )),
                _ => None, // Not listening yet, or a transient error: try again.
            },
        };
        let now = Instant::now();
        if let Some(count) = count {
            if count >= target {
                // Sample at once: this is the moment the last line was passed on.
                let wall_s = agent.started.elapsed().as_secs_f64();
                let pid = agent.pid().to_string();
                let cpu_ticks =
                    proc_cpu_ticks(&pid).map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
                let peak_rss_kib = proc_status_kib(&pid, "VmHWM")
                    .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
                let busiest_ticks = busiest_thread_ticks(&pid)
                    .map_err(|e| format!("reading /proc/{pid}/task: {e}"))?;
                if count > target {
                    eprintln!(
                        "warning: {count} records passed on for {} lines: lines counted twice?",
                        corpus.lines
                    );
                }
                let metrics = match http_get(agent.port, "/metrics") {
                    Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
                    _ => String::new(),
                };
                let errors = sum_metric(&metrics, "sidewatch_log_parse_errors_total");
                if errors > 0.0 {
                    eprintln!("note: the agent reported {errors} parse errors");
                }
                let rules = if run.evaluated {
                    Some(wait_for_evaluation(&mut agent, &metrics)?)
                } else {
                    None
                };
                match agent.stop() {
                    Some(status) if !status.success() => {
                        eprintln!("warning: agent exited with {status} after SIGTERM (expected 0)")
                    }
                    _ => {}
                }
                return Ok(AgentResult {
                    measurement: Measurement {
                        wall_s,
                        cpu_s: cpu_ticks as f64 / clk_tck as f64,
                        peak_rss_kib,
                        busiest_thread_s: busiest_ticks as f64 / clk_tck as f64,
                    },
                    rules,
                });
            }
            if count > last_count {
                last_count = count;
                last_progress = now;
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(5) {
            last_report = now;
            eprintln!(
                "  {} / {} records after {:.0} s",
                last_count.max(0.0),
                corpus.lines,
                agent.started.elapsed().as_secs_f64()
            );
        }
        if agent.started.elapsed() > RUN_TIMEOUT {
            return Err(agent.failure(&format!(
                "timeout: the sink passed on {} of {} records in {:?}",
                last_count.max(0.0),
                corpus.lines,
                RUN_TIMEOUT
            )));
        }
        if now.duration_since(last_progress) > STALL_TIMEOUT {
            return Err(agent.failure(&format!(
                "stalled: the sink's record count stayed at {} of {} for {:?}",
                last_count.max(0.0),
                corpus.lines,
                STALL_TIMEOUT
            )));
        }
        sleep(POLL_INTERVAL);
    }
}

/// Waits until the rules have been evaluated once more than in `at_end` (the metrics
/// when the last record had been ingested: an evaluation holds the engine for all of its
/// groups, so that one saw every record), then reads the rules' metrics.
fn wait_for_evaluation(agent: &mut Agent, at_end: &str) -> BenchResult<RuleFigures> {
    const EVALUATIONS: &str = "sidewatch_rule_evaluations_total";
    let evaluations_during = sum_metric(at_end, EVALUATIONS);
    let deadline = Instant::now() + EVALUATION_TIMEOUT;
    loop {
        agent.check_alive()?;
        if let Ok((200, body)) = http_get(agent.port, "/metrics") {
            let text = String::from_utf8_lossy(&body);
            let evaluations = sum_metric(&text, EVALUATIONS);
            if evaluations > evaluations_during {
                let pid = agent.pid().to_string();
                let peak_rss_kib = proc_status_kib(&pid, "VmHWM")
                    .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
                return Ok(RuleFigures {
                    evaluations_during,
                    evaluations,
                    failures: sum_metric(&text, "sidewatch_rule_evaluation_failures_total"),
                    window_series: sum_metric(&text, "sidewatch_rule_window_series"),
                    series_limited: sum_metric(&text, "sidewatch_rule_series_limited_total"),
                    too_old: sum_metric(&text, "sidewatch_rule_records_too_old_total"),
                    unwrap_errors: sum_metric(&text, "sidewatch_rule_unwrap_errors_total"),
                    peak_rss_kib,
                });
            }
        }
        if Instant::now() > deadline {
            return Err(agent.failure(&format!(
                "no rule evaluation within {EVALUATION_TIMEOUT:?} of the last record"
            )));
        }
        sleep(Duration::from_millis(200));
    }
}

struct Idle {
    rss_kib: u64,
    cpu_pct: f64,
}

fn run_idle(bin: &Path, dir: &Path, clk_tck: u64) -> BenchResult<Idle> {
    let logs = dir.join("idle");
    fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    // No `rules:` line: the agent as shipped, with the built-in rule pack.
    let mut agent = Agent::start(bin, dir, "idle", &logs.join("*.log"), "", BLACKHOLE)?;
    loop {
        agent.check_alive()?;
        if let Ok((200, _)) = http_get(agent.port, "/readyz") {
            break;
        }
        if agent.started.elapsed() > READY_TIMEOUT {
            return Err(agent.failure(&format!(
                "the idle agent was not ready after {READY_TIMEOUT:?}"
            )));
        }
        sleep(POLL_INTERVAL);
    }
    let pid = agent.pid().to_string();
    let read_ticks = || proc_cpu_ticks(&pid).map_err(|e| format!("reading /proc/{pid}/stat: {e}"));
    let (ticks_before, at_before) = (read_ticks()?, Instant::now());
    sleep(IDLE_WINDOW);
    let (ticks_after, at_after) = (read_ticks()?, Instant::now());
    let rss_kib =
        proc_status_kib(&pid, "VmRSS").map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    agent.check_alive()?;
    let cpu_s = (ticks_after - ticks_before) as f64 / clk_tck as f64;
    let cpu_pct = 100.0 * cpu_s / at_after.duration_since(at_before).as_secs_f64();
    agent.stop();
    Ok(Idle { rss_kib, cpu_pct })
}

// ---------------------------------------------------------------------------------------
// Report

fn table_header() -> String {
    format!(
        "{:<26}{:>11} {:>8} {:>14} {:>10} {:>8}",
        "", "lines/s", "MB/s", "CPU-s/Mlines", "peak RSS", "wall s"
    )
}

fn table_row(corpus: &Corpus, name: &str, m: &Measurement) -> String {
    format!(
        "{name:<26}{:>11} {:>8.1} {:>14.2} {:>6.1} MiB {:>8.2}",
        thousands((corpus.lines as f64 / m.wall_s).round() as u64),
        corpus.bytes as f64 / 1e6 / m.wall_s,
        m.cpu_s / (corpus.lines as f64 / 1e6),
        mib(m.peak_rss_kib),
        m.wall_s,
    )
}

fn print_table(corpus: &Corpus, agent: Option<&Measurement>, reference: &Measurement) {
    let mlines = corpus.lines as f64 / 1e6;
    let row = |name: &str, m: &Measurement| table_row(corpus, name, m);
    println!("{}", table_header());
    match agent {
        Some(agent) => println!("{}", row("sidewatch tail+structlog", agent)),
        None => println!("{:<26}{:>11}", "sidewatch tail+structlog", "failed"),
    }
    println!("{}", row("serde_json -> Value loop", reference));
    let Some(agent) = agent else { return };
    let ratio = reference.wall_s / agent.wall_s;
    println!(
        "ratio sidewatch / serde_json: {ratio:.2}×  (target ≥ {TARGET_RATIO}×)  {}",
        mark(ratio >= TARGET_RATIO)
    );
    let cpu = agent.cpu_s / mlines;
    println!(
        "sidewatch CPU: {cpu:.2} CPU-s per million lines  (target ≤ {TARGET_CPU_S_PER_MLINES})  {}",
        mark(cpu <= TARGET_CPU_S_PER_MLINES)
    );
    let peak = mib(agent.peak_rss_kib);
    println!(
        "sidewatch peak RSS: {peak:.1} MiB  (target ≤ {TARGET_PEAK_RSS_MIB} MiB)  {}",
        mark(peak <= TARGET_PEAK_RSS_MIB)
    );
}

fn print_idle(idle: &Idle) {
    let rss = mib(idle.rss_kib);
    println!(
        "idle: RSS {rss:.1} MiB (target ≤ {TARGET_IDLE_RSS_MIB} MiB) {}, CPU {:.2}% of a core (target < {TARGET_IDLE_CPU_PCT}%) {}",
        mark(rss <= TARGET_IDLE_RSS_MIB),
        idle.cpu_pct,
        mark(idle.cpu_pct < TARGET_IDLE_CPU_PCT),
    );
}

/// The run of median wall time (the faster of the middle two for an even count).
fn median_run(runs: &[AgentResult]) -> Option<&AgentResult> {
    let mut sorted: Vec<&AgentResult> = runs.iter().collect();
    sorted.sort_by(|a, b| a.measurement.wall_s.total_cmp(&b.measurement.wall_s));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

fn print_rules(corpus: &Corpus, rules_name: &str, nones: &[AgentResult], rules: &[AgentResult]) {
    println!();
    println!("rules: {rules_name}");
    println!("{}  {:>14}", table_header(), "busiest thread");
    for (round, (none, rule)) in nones.iter().zip(rules).enumerate() {
        for (name, run) in [("no rules", none), ("rules", rule)] {
            println!(
                "{}  {:>12.2} s",
                table_row(
                    corpus,
                    &format!("round {}, {name}", round + 1),
                    &run.measurement
                ),
                run.measurement.busiest_thread_s
            );
        }
    }
    let ratios: Vec<f64> = nones
        .iter()
        .zip(rules)
        .map(|(n, r)| n.measurement.wall_s / r.measurement.wall_s)
        .collect();
    let (Some(none), Some(rule)) = (median_run(nones), median_run(rules)) else {
        return;
    };
    let ratio = none.measurement.wall_s / rule.measurement.wall_s;
    println!(
        "throughput with rules / without (medians of {} rounds): {:.1}%  (target ≥ {:.0}%)  {}   \
         per round: {}",
        ratios.len(),
        100.0 * ratio,
        100.0 * TARGET_RULES_RATIO,
        mark(ratio >= TARGET_RULES_RATIO),
        ratios
            .iter()
            .map(|r| format!("{:.1}%", 100.0 * r))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let mlines = corpus.lines as f64 / 1e6;
    println!(
        "  CPU-s per million lines: {:.2} without rules, {:.2} with ({:+.2}); busiest thread \
         {:.2} s without, {:.2} s with: on two free cores the rules would keep {:.1}% of the \
         throughput",
        none.measurement.cpu_s / mlines,
        rule.measurement.cpu_s / mlines,
        (rule.measurement.cpu_s - none.measurement.cpu_s) / mlines,
        none.measurement.busiest_thread_s,
        rule.measurement.busiest_thread_s,
        100.0 * none.measurement.busiest_thread_s / rule.measurement.busiest_thread_s,
    );
    if let Some(figures) = &rule.rules {
        print_rule_figures(figures);
    }
    let too_old: f64 = rules
        .iter()
        .filter_map(|r| r.rules.as_ref())
        .map(|f| f.too_old)
        .sum();
    let empty = rules
        .iter()
        .filter_map(|r| r.rules.as_ref())
        .any(|f| f.window_series == 0.0);
    println!(
        "  records too old over the rule runs (must be ~0, else the windows missed records): {}  {}",
        thousands(too_old as u64),
        mark(too_old == 0.0 && !empty)
    );
}

fn print_rule_figures(figures: &RuleFigures) {
    println!(
        "  after the first evaluation past the last record: window series {}, series limited \
         {}, evaluations {} ({} while reading), evaluation failures {} {}, unwrap errors {}, \
         peak RSS then {:.1} MiB",
        thousands(figures.window_series as u64),
        thousands(figures.series_limited as u64),
        thousands(figures.evaluations as u64),
        thousands(figures.evaluations_during as u64),
        figures.failures,
        mark(figures.failures == 0.0),
        thousands(figures.unwrap_errors as u64),
        mib(figures.peak_rss_kib),
    );
}

fn print_cardinality(
    distinct_paths: u64,
    none: &AgentResult,
    bounded: &AgentResult,
    unbounded: &AgentResult,
) {
    println!();
    println!(
        "cardinality: `{CARDINALITY_EXPR}` over {} distinct `path` values",
        thousands(distinct_paths)
    );
    println!(
        "{:<30}{:>14} {:>18} {:>14} {:>16}",
        "", "peak RSS", "after evaluation", "window series", "series limited"
    );
    println!(
        "{:<30}{:>10.1} MiB",
        "no rules",
        mib(none.measurement.peak_rss_kib)
    );
    for (name, run) in [
        (format!("max_series {DEFAULT_MAX_SERIES}"), bounded),
        (format!("max_series {UNBOUNDED_MAX_SERIES}"), unbounded),
    ] {
        let Some(f) = &run.rules else { continue };
        println!(
            "{name:<30}{:>10.1} MiB {:>14.1} MiB {:>14} {:>16}",
            mib(run.measurement.peak_rss_kib),
            mib(f.peak_rss_kib),
            thousands(f.window_series as u64),
            thousands(f.series_limited as u64),
        );
    }
    if let (Some(b), Some(u)) = (&bounded.rules, &unbounded.rules) {
        let base = mib(none.measurement.peak_rss_kib);
        println!(
            "the limit holds the window at {} series (≤ {DEFAULT_MAX_SERIES}) {}: peak RSS {:+.1} MiB \
             over no rules, against {:+.1} MiB for {} series without it; too old: {} / {}, \
             evaluation failures: {} / {}",
            thousands(b.window_series as u64),
            mark(b.window_series <= DEFAULT_MAX_SERIES as f64 && b.window_series > 0.0),
            mib(b.peak_rss_kib) - base,
            mib(u.peak_rss_kib) - base,
            thousands(u.window_series as u64),
            thousands(b.too_old as u64),
            thousands(u.too_old as u64),
            b.failures,
            u.failures,
        );
    }
}

fn mark(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// /proc, HTTP and the Prometheus text format

/// `utime + stime` in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`), which for a
/// process covers all of its threads.
fn proc_cpu_ticks(pid: &str) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        // `after` starts at field 3.
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/{pid}/stat")))
    };
    Ok(field(14)? + field(15)?)
}

/// The largest `proc_cpu_ticks` of the process's threads (`/proc/<pid>/task/*`).
fn busiest_thread_ticks(pid: &str) -> io::Result<u64> {
    let mut busiest = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = task?.file_name();
        // A thread may exit between the listing and the read.
        if let Ok(ticks) = proc_cpu_ticks(&format!("{pid}/task/{}", tid.to_string_lossy())) {
            busiest = busiest.max(ticks);
        }
    }
    Ok(busiest)
}

/// A `kB` line such as `VmHWM:  12345 kB` from `/proc/<pid>/status`.
fn proc_status_kib(pid: &str, key: &str) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc/{pid}/status")))
}

/// `getconf CLK_TCK`, or 100 (the value on every mainstream Linux build) if it fails.
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|&ticks: &u64| ticks > 0)
        .unwrap_or_else(|| {
            eprintln!("warning: `getconf CLK_TCK` failed; assuming 100 ticks per second");
            100
        })
}

fn free_port() -> BenchResult<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// A minimal HTTP/1.1 GET to 127.0.0.1: status code and body (de-chunked if needed).
fn http_get(port: u16, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad HTTP response: {what}"),
        )
    };
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("broken chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The sum of a metric's samples over all its label sets, in the Prometheus text format.
fn sum_metric(text: &str, name: &str) -> f64 {
    sum_metric_where(text, name, "")
}

/// The sum of a metric's samples whose label block contains `label` (`k="v"`).
fn sum_metric_where(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = match rest.as_bytes().first()? {
                b'{' => {
                    let end = label_block_end(rest)?;
                    if !rest[..end].contains(label) {
                        return None;
                    }
                    &rest[end..]
                }
                b' ' | b'\t' if label.is_empty() => rest,
                _ => return None, // Another metric sharing the prefix, or unlabelled.
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The index just past the `}` closing a label block that starts at index 0, honouring
/// quoted label values (which may contain `}` and escaped quotes).
fn label_block_end(text: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A scratch directory for configs, data dirs and agent output: removed at the end of a
/// successful run, kept (and named) after a failure so the agent's output can be read.
struct Scratch {
    path: PathBuf,
    keep: std::cell::Cell<bool>,
}

impl Scratch {
    fn create() -> BenchResult<Scratch> {
        let path = std::env::temp_dir().join(format!("sidewatch-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Scratch {
            path,
            keep: std::cell::Cell::new(false),
        })
    }

    fn keep(&self) {
        self.keep.set(true);
        eprintln!("agent configs and output kept in {}", self.path.display());
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep.get() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
