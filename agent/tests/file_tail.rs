//! The file tail source in-process, on a temp dir: each test writes files the way an
//! app or a rotation tool would and checks the records (offset, body, flags) that come
//! out. The end-to-end versions with a real app and real logrotate live in `tests/`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sidewatch::channel::{BatchReceiver, Received, batch_channel};
use sidewatch::config::{LogSourceConfig, StartAt};
use sidewatch::event::{FileIdentity, FileMark, LogBatch};
use sidewatch::parse::Format;
use sidewatch::sources::file_tail::{FileTail, fnv1a};
use sidewatch::state::StateStore;
use sidewatch::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

/// What a test sees of one record.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    file: String,
    offset: u64,
    body: String,
    truncated: bool,
    invalid_utf8: bool,
    parse_error: bool,
    attrs: Vec<(String, String)>,
    file_id: String,
}

struct Tail {
    rx: BatchReceiver,
    stop: CancellationToken,
    thread: Option<tokio::task::JoinHandle<()>>,
    seen: Vec<Seen>,
    marks: Vec<FileMark>,
}

fn source(dir: &Path, pattern: &str, format: Format, start_at: StartAt) -> LogSourceConfig {
    let mut config = LogSourceConfig::defaults("app", vec![format!("{}/{pattern}", dir.display())]);
    config.format = format;
    config.fields = format.default_field_names();
    config.start_at = start_at;
    config.max_line_bytes = 1024;
    config.rotate_wait = Duration::from_millis(300);
    config.poll_interval = Duration::from_millis(20);
    config
}

impl Drop for Tail {
    /// A failed test must still stop the tail thread, or the runtime waits for it forever.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tail {
    fn start(config: LogSourceConfig, store: &StateStore) -> Tail {
        let telemetry = Telemetry::new();
        let tail = FileTail::new(config, store, &telemetry).expect("tail starts");
        let (tx, rx, _depth) = batch_channel(4);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = tokio::task::spawn_blocking(move || {
            tail.run(tx, Arc::new(Mutex::new(Vec::new())), token)
        });
        Tail {
            rx,
            stop,
            thread: Some(thread),
            seen: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Receives the next batch, failing with `what` if none comes within 10 s.
    fn next_batch(&mut self, what: &str) -> LogBatch {
        match self.rx.recv_timeout(Duration::from_secs(10)) {
            Received::Batch(batch) => batch,
            Received::Timeout => panic!("{what} within 10s; records so far: {:#?}", self.seen),
            Received::Closed => panic!("the tail stopped while waiting for {what}"),
        }
    }

    /// Collects records until `n` have been seen in all, or fails after 10 s of silence.
    async fn wait_for(&mut self, n: usize) -> &[Seen] {
        while self.seen.len() < n {
            let batch = self.next_batch(&format!("expected {n} records"));
            self.take(batch);
        }
        &self.seen
    }

    /// Waits for the first batch, which carries the marks of the initial scan: after it,
    /// the tail has chosen where each existing file starts.
    async fn wait_scanned(&mut self) {
        let batch = self.next_batch("the initial scan");
        self.take(batch);
    }

    /// Collects marks until one says the file at `path` was closed.
    async fn wait_closed(&mut self, path: &str) {
        while !self.marks.iter().any(|m| m.closed && &*m.path == path) {
            let batch = self.next_batch(&format!("{path} to be closed"));
            self.take(batch);
        }
    }

    fn take(&mut self, batch: LogBatch) {
        for record in &batch.records {
            let buf = &batch.buf;
            self.seen.push(Seen {
                file: batch.file_path(record).to_string(),
                offset: record.offset,
                body: record
                    .body
                    .map(|b| b.as_str(buf).into_owned())
                    .unwrap_or_default(),
                truncated: record.flags.truncated,
                invalid_utf8: record.flags.invalid_utf8,
                parse_error: record.flags.parse_error,
                file_id: batch
                    .file_mark(record)
                    .map(|m| m.identity.file_id())
                    .unwrap_or_default(),
                attrs: batch
                    .attrs(record)
                    .iter()
                    .map(|f| (f.key(buf).into_owned(), f.value.as_str(buf).into_owned()))
                    .collect(),
            });
        }
        self.marks.extend(batch.files.iter().cloned());
    }

    async fn stop(mut self) -> Vec<FileMark> {
        self.stop.cancel();
        // Drain so the tail is never stuck sending.
        loop {
            match self.rx.recv_timeout(Duration::from_secs(10)) {
                Received::Batch(batch) => self.take(batch),
                Received::Closed => break,
                Received::Timeout => panic!("the tail did not stop within 10s"),
            }
        }
        if let Some(thread) = self.thread.take() {
            thread.await.expect("tail thread ends");
        }
        std::mem::take(&mut self.marks)
    }
}

fn append(path: &Path, text: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text).unwrap();
}

fn line(event: &str) -> String {
    format!("{{\"event\": \"{event}\", \"level\": \"info\"}}\n")
}

/// What logrotate's `copytruncate` does: copy the file aside, then cut it to 0 in place
/// (same inode).
fn copytruncate(path: &Path, copy: &Path) {
    std::fs::copy(path, copy).unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn bodies(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.body.as_str()).collect()
}

fn setup() -> (tempfile::TempDir, StateStore, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("data")).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    (dir, store, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_line_waits_for_its_newline() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, line("one").as_bytes());
    append(&path, b"{\"event\": \"tw");
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    assert_eq!(bodies(tail.wait_for(1).await), ["one"]);
    append(&path, b"o\"}\n");
    let seen = tail.wait_for(2).await.to_vec();
    assert_eq!(bodies(&seen), ["one", "two"]);
    assert_eq!(seen[1].offset, line("one").len() as u64);
    let marks = tail.stop().await;
    let last = marks.iter().rev().find(|m| !m.closed).unwrap();
    assert_eq!(last.checkpoint, std::fs::metadata(&path).unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_line_is_cut_and_flagged_and_the_next_is_intact() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    let long = format!("{{\"event\": \"{}\"}}\n", "x".repeat(10_000));
    append(&path, long.as_bytes());
    append(&path, line("after").as_bytes());
    append(&path, b"\xff\xfe not utf-8\n");
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    let seen = tail.wait_for(3).await.to_vec();
    assert!(seen[0].truncated && seen[0].parse_error, "{:?}", seen[0]);
    assert_eq!(seen[0].body.len(), 1024);
    assert_eq!(seen[1].body, "after");
    assert_eq!(seen[1].offset, long.len() as u64);
    assert!(!seen[1].truncated);
    assert!(seen[2].invalid_utf8 && seen[2].parse_error, "{:?}", seen[2]);
    assert_eq!(seen[2].body, "\u{FFFD}\u{FFFD} not utf-8");
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_is_read_again_from_zero() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, (line("a1") + &line("a2")).as_bytes());
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    tail.wait_for(2).await;
    // What copytruncate does: the same inode is cut to 0 and written again.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, line("b1").as_bytes());
    let seen = tail.wait_for(3).await.to_vec();
    assert_eq!(bodies(&seen), ["a1", "a2", "b1"]);
    assert_eq!(seen[2].offset, 0);
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_file_is_drained_while_its_writer_appends_then_closed() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    let mut writer = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    writer.write_all(line("before").as_bytes()).unwrap();
    let mut tail = Tail::start(
        source(&logs, "app.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    tail.wait_for(1).await;
    // logrotate `create`: rename, new file at the old name; the app keeps its descriptor.
    std::fs::rename(&path, logs.join("app.log.1")).unwrap();
    append(&path, line("new file").as_bytes());
    writer
        .write_all(line("into the renamed file").as_bytes())
        .unwrap();
    let seen = tail.wait_for(3).await.to_vec();
    let mut got = bodies(&seen);
    got.sort();
    assert_eq!(got, ["before", "into the renamed file", "new file"]);
    let renamed: Vec<_> = seen.iter().filter(|s| s.body != "new file").collect();
    assert!(
        renamed.iter().all(|s| s.file == path.display().to_string()),
        "{renamed:?}"
    );
    drop(writer);
    tail.wait_closed(&path.display().to_string()).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_resume_and_a_reused_inode_is_read_from_zero() {
    let (_dir, store, logs) = setup();
    let kept = logs.join("kept.log");
    let reused = logs.join("reused.log");
    append(&kept, (line("old") + &line("new")).as_bytes());
    append(&reused, line("fresh content").as_bytes());
    let identity = |p: &Path, fingerprint: u64| {
        let meta = std::fs::metadata(p).unwrap();
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint_len: 10,
            fingerprint,
            complete: true,
        }
    };
    // kept.log: a checkpoint with its true fingerprint after the first line.
    let head = std::fs::read(&kept).unwrap();
    let true_fp = fnv1a(&head[..10]);
    // reused.log: a checkpoint left by a deleted file that had the same inode.
    store
        .commit_marks(
            &[
                mark(&kept, identity(&kept, true_fp), line("old").len() as u64),
                mark(&reused, identity(&reused, 12345), 5000),
            ],
            0,
        )
        .unwrap();
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Structlog, StartAt::End),
        &store,
    );
    let seen = tail.wait_for(2).await.to_vec();
    let mut got = bodies(&seen);
    got.sort();
    assert_eq!(got, ["fresh content", "new"]);
    tail.stop().await;
}

fn mark(path: &Path, identity: FileIdentity, checkpoint: u64) -> FileMark {
    FileMark {
        source: "app".into(),
        path: path.display().to_string().into(),
        identity,
        checkpoint,
        closed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_applies_only_on_the_first_run() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, line("history").as_bytes());
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Structlog, StartAt::End),
        &store,
    );
    tail.wait_scanned().await;
    append(&path, line("live").as_bytes());
    assert_eq!(bodies(tail.wait_for(1).await), ["live"]);
    let marks = tail.stop().await;
    store.commit_marks(marks.iter(), 0).unwrap();
    // Second run: a file that appeared while the agent was down is read in full.
    append(&logs.join("other.log"), line("while down").as_bytes());
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Structlog, StartAt::End),
        &store,
    );
    assert_eq!(bodies(tail.wait_for(1).await), ["while down"]);
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_tracebacks_fold_into_their_record() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, b"ERROR:app:payment failed\nTraceback (most recent call last):\n  File \"a.py\", line 1, in f\n");
    let mut tail = Tail::start(
        source(&logs, "*.log", Format::Text, StartAt::Beginning),
        &store,
    );
    // The traceback has not reached its exception line: nothing is emitted yet.
    append(&path, b"    pay()\nValueError: no money\nINFO:app:next\n");
    let seen = tail.wait_for(2).await.to_vec();
    assert_eq!(seen[0].body, "ERROR:app:payment failed");
    let attrs: std::collections::HashMap<_, _> = seen[0].attrs.iter().cloned().collect();
    assert_eq!(attrs["exception_type"], "ValueError");
    assert!(
        attrs["exception"].ends_with("    pay()\nValueError: no money"),
        "{attrs:?}"
    );
    assert_eq!(seen[1].body, "INFO:app:next");
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_while_stopped_recovers_the_unread_rest_from_the_copy() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, (line("a1") + &line("a2")).as_bytes());
    let mut tail = Tail::start(
        source(&logs, "app.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    let first = tail.wait_for(2).await.to_vec();
    let marks = tail.stop().await;
    store.commit_marks(marks.iter(), 0).unwrap();
    // While the agent is down the app writes more, then logrotate copies and truncates.
    append(&path, (line("b1") + &line("b2")).as_bytes());
    copytruncate(&path, &logs.join("app.log.1"));
    append(&path, line("c1").as_bytes());
    let mut tail = Tail::start(
        source(&logs, "app.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    let seen = tail.wait_for(3).await.to_vec();
    assert_eq!(bodies(&seen), ["b1", "b2", "c1"]);
    // b1, b2 belong to the first generation: same file_id and offsets as it had.
    assert_eq!(seen[0].file_id, first[0].file_id);
    assert_eq!(seen[0].offset, 2 * line("a1").len() as u64);
    assert_ne!(seen[2].file_id, first[0].file_id);
    assert_eq!(seen[2].offset, 0);
    // Restarting again reads nothing twice.
    let marks = tail.stop().await;
    store.commit_marks(marks.iter(), 0).unwrap();
    append(&path, line("c2").as_bytes());
    let mut tail = Tail::start(
        source(&logs, "app.log", Format::Structlog, StartAt::Beginning),
        &store,
    );
    assert_eq!(bodies(tail.wait_for(1).await), ["c2"]);
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_polling_finds_new_files_lines_and_rotations() {
    let (_dir, store, logs) = setup();
    let mut config = source(&logs, "app.log", Format::Structlog, StartAt::Beginning);
    config.notify = false;
    let mut tail = Tail::start(config, &store);
    // The file appears after the start, grows, and is rotated: all found by polling.
    let path = logs.join("app.log");
    append(&path, line("created later").as_bytes());
    assert_eq!(bodies(tail.wait_for(1).await), ["created later"]);
    append(&path, line("appended").as_bytes());
    assert_eq!(bodies(tail.wait_for(2).await)[1], "appended");
    std::fs::rename(&path, logs.join("app.log.1")).unwrap();
    append(&path, line("after rotation").as_bytes());
    assert_eq!(bodies(tail.wait_for(3).await)[2], "after rotation");
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_refilled_past_the_read_position_is_caught_by_the_first_line() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, (line("a1") + &line("a2")).as_bytes());
    let mut config = source(&logs, "app.log", Format::Structlog, StartAt::Beginning);
    // Polling only, slowly: the tail does not look while the rotation happens.
    config.notify = false;
    config.poll_interval = Duration::from_secs(2);
    let mut tail = Tail::start(config, &store);
    let first = tail.wait_for(2).await.to_vec();
    // Unread b1, then copytruncate, then the app writes more than was read before.
    append(&path, line("b1").as_bytes());
    copytruncate(&path, &logs.join("app.log.1"));
    let refill: String = (0..5).map(|i| line(&format!("c{i}"))).collect();
    append(&path, refill.as_bytes());
    assert!(refill.len() > 2 * line("a1").len());
    let seen = tail.wait_for(8).await.to_vec();
    assert_eq!(
        bodies(&seen),
        ["a1", "a2", "b1", "c0", "c1", "c2", "c3", "c4"]
    );
    assert_eq!(
        seen[2].file_id, first[0].file_id,
        "b1 is of the first generation"
    );
    assert_eq!(seen[3].offset, 0);
    assert!(
        seen.iter().all(|s| !s.parse_error),
        "no torn line was read: {seen:?}"
    );
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_larger_than_a_batch_is_read_to_its_end() {
    let (_dir, store, logs) = setup();
    let path = logs.join("app.log");
    append(&path, line("a1").as_bytes());
    let config = || source(&logs, "app.log", Format::Structlog, StartAt::Beginning);
    let mut tail = Tail::start(config(), &store);
    tail.wait_for(1).await;
    let marks = tail.stop().await;
    store.commit_marks(marks.iter(), 0).unwrap();
    // Megabytes the agent never read before copytruncate: several batches' worth.
    let backlog: String = (0..40_000).map(|i| line(&format!("b{i}"))).collect();
    assert!(backlog.len() > 1_000_000, "{}", backlog.len());
    append(&path, backlog.as_bytes());
    copytruncate(&path, &logs.join("app.log.1"));
    append(&path, line("c1").as_bytes());
    let mut tail = Tail::start(config(), &store);
    let seen = tail.wait_for(40_001).await.to_vec();
    assert_eq!(seen.len(), 40_001);
    assert_eq!(seen[0].body, "b0");
    assert_eq!(seen[39_999].body, "b39999");
    assert_eq!(seen[40_000].body, "c1");
    assert_eq!(seen[40_000].offset, 0);
    tail.stop().await;
}
