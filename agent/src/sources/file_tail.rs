//! The file tail source: follows the files a `logs:` entry's globs match, through
//! rename rotation, copytruncate, deletion and restarts, and turns their lines into
//! records in batches.
//!
//! How it keeps "nothing lost, nothing doubled":
//! - A file is known by its `FileIdentity` (device, inode and a fingerprint of its first
//!   line), not its name: a file renamed within the globs keeps being read where it was,
//!   a new file at an old name is a new file, and a new file that reuses a deleted file's
//!   inode is told apart by its fingerprint.
//! - A file that leaves the globs (renamed by rotation, or deleted) keeps being read
//!   through its open descriptor until it has been idle for `rotate_wait`: an app with a
//!   plain `FileHandler` keeps writing into the renamed file.
//! - A file that shrinks below the read position was truncated (copytruncate); so was one
//!   whose first line no longer matches its fingerprint. What it had unread is read from
//!   logrotate's copy beside it (`draining`), then the file again from 0.
//! - Each batch carries, per file, the offset before which every record has been emitted.
//!   The sink stage commits it to the state store only once the batch is durable, so a
//!   crash repeats at most what was read since the last commit, never skips anything.
//! - A partial last line waits for its newline; a line longer than `max_line_bytes` is
//!   cut and flagged, and the rest of it skipped without being held in memory.
//!
//! The loop runs on a blocking thread: file IO is synchronous, and a dedicated thread
//! reads and parses while the sink stage writes on another, using both cores.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::BatchSender;
use crate::config::{LogSourceConfig, StartAt};
use crate::event::{FileIdentity, FileMark, LogBatch, LogRecord, RecordFlags, Span};
use crate::parse::text::Folder;
use crate::parse::{Format, LineParser, Outcome};
use crate::sources::discovery::Discovery;
use crate::state::{Checkpoint, StateStore};
use crate::telemetry::{ComponentEvents, Counter, Telemetry};
use crate::transform::SourceTransform;

/// How many leading bytes identify a file.
const FINGERPRINT_BYTES: u64 = 256;
/// Bytes read per `read` call. A batch is checked for fullness after each chunk, so
/// this is also how far a batch can run past `BATCH_BYTES`.
const CHUNK_BYTES: usize = 64 * 1024;
/// A batch is sent once it holds this much text or this many records. With the chunk,
/// a batch's text fits the capacity it starts with (`LogBatch::new`): no batch grows
/// by doubling, and the few batches in flight and in the recycling pool stay small
/// (under an exporter slower than the tail, all of them are full at once).
const BATCH_BYTES: usize = 256 * 1024;
const _: () = assert!(BATCH_BYTES + CHUNK_BYTES <= crate::event::BATCH_TEXT_CAPACITY);
const BATCH_RECORDS: usize = 4096;
/// At most this much is read from one file before the others get their turn.
const FILE_TURN_BYTES: u64 = 4 * 1024 * 1024;
/// A copytruncate copy older than this is not the one just made.
const COPY_MAX_AGE: Duration = Duration::from_secs(3600);
/// Globs are listed at least this often even if no change notification arrives.
const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// What `/api/v1/status` shows of one file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileStatus {
    pub path: String,
    pub current_path: String,
    pub offset: u64,
    pub size: u64,
    /// Renamed out of the globs or deleted, and still being drained.
    pub rotated: bool,
}

/// Shared view of a source's files, for the API.
pub type SourceStatus = Arc<Mutex<Vec<FileStatus>>>;

/// Counters of one tail source.
struct TailMetrics {
    events: ComponentEvents,
    /// By severity label, in the order of `LEVELS`.
    records: Vec<Counter>,
    parse_errors: Counter,
    truncated: Counter,
    invalid_utf8: Counter,
    dropped: Counter,
    redacted: Counter,
    telemetry: Arc<Telemetry>,
    source: Arc<str>,
}

const LEVELS: [&str; 7] = [
    "unknown", "trace", "debug", "info", "warning", "error", "critical",
];

fn level_index(severity_number: u8) -> usize {
    match severity_number {
        0 => 0,
        1..=4 => 1,
        5..=8 => 2,
        9..=12 => 3,
        13..=16 => 4,
        17..=20 => 5,
        _ => 6,
    }
}

impl TailMetrics {
    fn new(telemetry: &Arc<Telemetry>, source: &Arc<str>) -> TailMetrics {
        let label = [("source", &**source)];
        TailMetrics {
            events: ComponentEvents::new(telemetry, source, "file_tail"),
            records: LEVELS
                .iter()
                .map(|level| {
                    telemetry.counter(
                        "sidewatch_log_records_total",
                        "Log records read, by source and level.",
                        &[("source", source), ("level", level)],
                    )
                })
                .collect(),
            parse_errors: telemetry.counter(
                "sidewatch_log_parse_errors_total",
                "Lines that were not valid for their source's format (kept as text records).",
                &label,
            ),
            truncated: telemetry.counter(
                "sidewatch_log_truncated_total",
                "Lines longer than max_line_bytes, cut and flagged.",
                &label,
            ),
            invalid_utf8: telemetry.counter(
                "sidewatch_log_invalid_utf8_total",
                "Lines holding invalid UTF-8, kept with replacement characters and flagged.",
                &label,
            ),
            dropped: telemetry.counter(
                "sidewatch_log_records_dropped_total",
                "Records removed by the source's drop filter (never exported nor seen by the rules).",
                &label,
            ),
            redacted: telemetry.counter(
                "sidewatch_log_records_redacted_total",
                "Records with at least one value rewritten by the source's redact rules.",
                &label,
            ),
            telemetry: telemetry.clone(),
            source: source.clone(),
        }
    }

    /// A file event (discovered, rotated, truncated, closed): a log line and a counter.
    /// A file created and gone (deleted, or renamed out of the globs) before it could
    /// be opened: nothing it held was read.
    fn missed_file(&self, path: &str) {
        tracing::warn!(
            component = %self.source,
            file = path,
            event = "missed",
            "file created and gone (deleted or renamed out of the globs) before sidewatch could open it: lines written to it, if any, were not read"
        );
        self.telemetry
            .counter(
                "sidewatch_file_events_total",
                "Files discovered, rotated away, truncated, closed, or missed (created and gone before they could be opened).",
                &[("source", &self.source), ("event", "missed")],
            )
            .inc();
    }

    fn file_event(&self, event: &'static str, path: &str, detail: &str) {
        tracing::info!(component = %self.source, file = path, event, "{detail}");
        self.telemetry
            .counter(
                "sidewatch_file_events_total",
                "Files discovered, rotated away, truncated, closed, or missed (created and gone before they could be opened).",
                &[("source", &self.source), ("event", event)],
            )
            .inc();
    }
}

/// Per-batch tallies, added to the counters once per batch rather than per line.
#[derive(Default)]
struct Tally {
    levels: [u64; 7],
    parse_errors: u64,
    truncated: u64,
    invalid_utf8: u64,
    /// Lines with nothing but whitespace: not records.
    blank: u64,
    bytes: u64,
}

/// A record being folded (format `text`): its lines so far.
struct Folding {
    text: Vec<u8>,
    offset: u64,
    truncated: bool,
}

/// One file being read.
struct TrackedFile {
    /// The path it had when discovered: the record's `file`.
    path: Arc<str>,
    /// Where it is now (changes when renamed within the globs).
    current_path: PathBuf,
    file: File,
    identity: FileIdentity,
    /// Offset of the next byte to read.
    read_pos: u64,
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
    partial_start: u64,
    /// The partial line exceeded `max_line_bytes`: the rest until its newline is skipped.
    partial_truncated: bool,
    folding: Option<Folding>,
    folder: Folder,
    /// Reading the rest of the previous generation from a copytruncate copy: `file`
    /// is then the copy, and this holds the live file to go back to.
    draining: Option<Draining>,
    /// When it left the globs (renamed away or deleted).
    rotated_since: Option<Instant>,
    last_data: Instant,
    size: u64,
}

impl TrackedFile {
    /// Takes the fingerprint again (the first line has grown, or the file was truncated).
    fn reidentify(&mut self, size: u64) -> std::io::Result<()> {
        self.identity = identify(&self.file, self.identity.dev, self.identity.ino, size)?;
        Ok(())
    }

    /// Every record before this offset has been emitted.
    fn committable(&self) -> u64 {
        let mut offset = self.read_pos;
        if !self.partial.is_empty() || self.partial_truncated {
            offset = self.partial_start;
        }
        if let Some(folding) = &self.folding {
            offset = offset.min(folding.offset);
        }
        offset
    }

    fn mark(&self, source: &Arc<str>, closed: bool) -> FileMark {
        FileMark {
            source: source.clone(),
            path: self.path.clone(),
            identity: self.identity,
            checkpoint: self.committable(),
            closed,
        }
    }
}

/// Wakes the tail loop: a file changed, or shutdown began.
#[derive(Clone)]
pub struct Waker {
    tx: std_mpsc::SyncSender<()>,
    rescan: Arc<AtomicBool>,
}

impl Waker {
    pub fn wake(&self, rescan: bool) {
        if rescan {
            self.rescan.store(true, Ordering::Relaxed);
        }
        // A full channel already holds a wake-up: nothing is lost by dropping this one.
        let _ = self.tx.try_send(());
    }
}

pub struct FileTail {
    config: LogSourceConfig,
    parser: LineParser,
    /// The source's `drop` and `redact`, applied to each batch before it is sent.
    transform: Option<SourceTransform>,
    discovery: Discovery,
    /// Stored checkpoints by (dev, ino), consumed as their files are found again.
    checkpoints: HashMap<(u64, u64), Checkpoint>,
    /// The source has committed before: `start_at` no longer applies.
    seen_before: bool,
    files: HashMap<(u64, u64), TrackedFile>,
    chunk: Vec<u8>,
    metrics: TailMetrics,
    status: SourceStatus,
    /// Set once the initial scan has opened the files that exist at startup.
    ready: Arc<AtomicBool>,
    wake_rx: std_mpsc::Receiver<()>,
    waker: Waker,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    /// Files the watcher saw created, checked at the next rescan: one that is gone
    /// before it was ever opened is counted and logged, never lost silently.
    created: Created,
}

/// A file the watcher saw created within the globs: its path as the globs spell it,
/// its identity when it could still be read, and how many rescans have seen it
/// neither open nor gone.
struct CreatedFile {
    path: PathBuf,
    key: Option<(u64, u64)>,
    rescans: u8,
}

type Created = Arc<Mutex<Vec<CreatedFile>>>;

/// At most this many created files wait for the next rescan (a storm of creations
/// past it is not checked one by one; the rescan still finds every file that exists).
const MAX_CREATED: usize = 4096;

/// The watcher's side: remembers each created path the globs match, with its
/// identity if it still exists.
fn note_created(discovery: &Discovery, created: &Created, paths: &[PathBuf]) {
    for path in paths {
        let Some(spelled) = discovery.match_event_path(path) else {
            continue;
        };
        let key = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (m.dev(), m.ino()));
        let mut created = created.lock().unwrap_or_else(|e| e.into_inner());
        if created.len() < MAX_CREATED {
            created.push(CreatedFile {
                path: spelled,
                key,
                rescans: 0,
            });
        }
    }
}

impl FileTail {
    pub fn new(
        config: LogSourceConfig,
        store: &StateStore,
        telemetry: &Arc<Telemetry>,
    ) -> anyhow::Result<FileTail> {
        let discovery = Discovery::new(&config.paths)?;
        let checkpoints = store
            .checkpoints(&config.name)?
            .into_iter()
            .map(|c| ((c.identity.dev, c.identity.ino), c))
            .collect();
        let seen_before = store.source_seen(&config.name)?;
        let (tx, wake_rx) = std_mpsc::sync_channel(1);
        let waker = Waker {
            tx,
            rescan: Arc::new(AtomicBool::new(true)),
        };
        let created: Created = Arc::new(Mutex::new(Vec::new()));
        let watcher = config.notify.then(|| {
            let waker = waker.clone();
            let created = created.clone();
            let discovery = discovery.clone();
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                use notify::EventKind;
                if let Ok(e) = &event
                    && matches!(e.kind, EventKind::Create(_))
                {
                    note_created(&discovery, &created, &e.paths);
                }
                let rescan = match &event {
                    Ok(e) => matches!(
                        e.kind,
                        EventKind::Create(_)
                            | EventKind::Remove(_)
                            | EventKind::Modify(notify::event::ModifyKind::Name(_))
                            | EventKind::Any
                            | EventKind::Other
                    ),
                    Err(_) => true,
                };
                waker.wake(rescan);
            })
        });
        let metrics = TailMetrics::new(telemetry, &config.name);
        let watcher = match watcher {
            None => None,
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => {
                metrics.events.error(
                    "watch_failed",
                    &format!(
                        "file change notifications unavailable, polling every {:?}: {e}",
                        config.poll_interval
                    ),
                );
                None
            }
        };
        Ok(FileTail {
            parser: LineParser::new(config.format, config.fields.clone()),
            transform: SourceTransform::new(&config),
            config,
            discovery,
            checkpoints,
            seen_before,
            files: HashMap::new(),
            chunk: vec![0; CHUNK_BYTES],
            metrics,
            status: Arc::new(Mutex::new(Vec::new())),
            ready: Arc::new(AtomicBool::new(false)),
            wake_rx,
            waker,
            watcher,
            watched: Vec::new(),
            created,
        })
    }

    pub fn status(&self) -> SourceStatus {
        self.status.clone()
    }

    /// Becomes true once the files present at startup are open.
    pub fn ready(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Reads until `shutdown`, sending batches to `out`. Emptied batches come back on
    /// `recycle` to be reused.
    pub fn run(
        mut self,
        out: BatchSender,
        recycle: Arc<Mutex<Vec<LogBatch>>>,
        shutdown: CancellationToken,
    ) {
        let source = self.config.name.clone();
        let new_batch = || {
            let mut batch = recycle
                .lock()
                .ok()
                .and_then(|mut pool| pool.pop())
                .unwrap_or_else(|| LogBatch::new(source.clone()));
            batch.source = source.clone();
            batch
        };
        let mut batch = new_batch();
        let mut tally = Tally::default();
        self.rescan(true, &mut batch);
        self.ready.store(true, Ordering::Relaxed);
        let mut last_rescan = Instant::now();
        while !shutdown.is_cancelled() {
            if self.waker.rescan.swap(false, Ordering::Relaxed)
                || last_rescan.elapsed() >= RESCAN_INTERVAL
            {
                self.rescan(false, &mut batch);
                last_rescan = Instant::now();
            }
            let mut read_any = false;
            let keys: Vec<(u64, u64)> = self.files.keys().copied().collect();
            for key in keys {
                if shutdown.is_cancelled() {
                    break;
                }
                // A file's turn is FILE_TURN_BYTES over all the batches it fills: a file
                // written faster than it is read must not keep the others, the rescan
                // (new files, rotations) and the shutdown waiting.
                let mut turn = FILE_TURN_BYTES;
                loop {
                    match self.read_file(key, &mut batch, &mut tally, turn) {
                        Ok(ReadResult::Done { bytes }) => {
                            read_any |= bytes > 0;
                            break;
                        }
                        Ok(ReadResult::BatchFull { bytes }) => {
                            read_any = true;
                            if !self.send(&out, &mut batch, &mut tally, &new_batch) {
                                return;
                            }
                            // A file created or renamed meanwhile is opened now, not after
                            // the pass: once open, a rotation that deletes it loses nothing.
                            if self.waker.rescan.swap(false, Ordering::Relaxed) {
                                self.rescan(false, &mut batch);
                                last_rescan = Instant::now();
                            }
                            turn = turn.saturating_sub(bytes);
                            if turn == 0 || shutdown.is_cancelled() {
                                break;
                            }
                        }
                        Err(e) => {
                            let path = self
                                .files
                                .get(&key)
                                .map(|f| f.path.to_string())
                                .unwrap_or_default();
                            self.metrics
                                .events
                                .error("read_failed", &format!("cannot read {path}: {e}"));
                            break;
                        }
                    }
                }
            }
            self.close_idle_rotated(&mut batch);
            if !batch.is_empty() && !self.send(&out, &mut batch, &mut tally, &new_batch) {
                return;
            }
            if !read_any {
                match self.wake_rx.recv_timeout(self.config.poll_interval) {
                    Ok(()) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        }
        tracing::debug!(component = %self.config.name, "file tail stopped");
    }

    /// Sends the batch downstream; `false` when the sink is gone.
    fn send(
        &mut self,
        out: &BatchSender,
        batch: &mut LogBatch,
        tally: &mut Tally,
        new_batch: &impl Fn() -> LogBatch,
    ) -> bool {
        self.count(tally);
        if let Some(transform) = &mut self.transform {
            let done = transform.apply(batch);
            self.metrics.dropped.add(done.dropped);
            self.metrics.redacted.add(done.redacted);
            if done.dropped > 0 {
                tracing::debug!(component = %self.config.name, count = done.dropped, "records dropped by the drop filter");
            }
        }
        let records = batch.records.len() as u64;
        let full = std::mem::replace(batch, new_batch());
        if out.send(full).is_err() {
            return false;
        }
        self.metrics.events.sent.add(records);
        tracing::trace!(component = %self.config.name, records, "batch sent");
        true
    }

    /// Adds a tally to the counters and logs what was flagged (once per batch, not per
    /// line, so a stream of bad lines cannot flood the agent's own log).
    fn count(&self, tally: &mut Tally) {
        let m = &self.metrics;
        for (i, n) in tally.levels.iter().enumerate() {
            if *n > 0 {
                m.records[i].add(*n);
            }
        }
        m.parse_errors.add(tally.parse_errors);
        m.truncated.add(tally.truncated);
        m.invalid_utf8.add(tally.invalid_utf8);
        m.events.received.add(tally.levels.iter().sum());
        m.events.received_bytes.add(tally.bytes);
        m.events.discarded.add(tally.blank);
        let source = &self.config.name;
        tracing::debug!(component = %source, records = tally.levels.iter().sum::<u64>(), bytes = tally.bytes, "records received");
        if tally.blank > 0 {
            tracing::debug!(component = %source, count = tally.blank, "blank lines skipped (not records)");
        }
        if tally.parse_errors > 0 {
            tracing::warn!(
                component = %source,
                count = tally.parse_errors,
                "lines not valid {} kept as text records with parse_error=true",
                self.config.format.name()
            );
        }
        if tally.truncated > 0 {
            tracing::warn!(component = %source, count = tally.truncated, max_line_bytes = self.config.max_line_bytes, "lines longer than max_line_bytes were cut and flagged truncated");
        }
        if tally.invalid_utf8 > 0 {
            tracing::warn!(component = %source, count = tally.invalid_utf8, "lines with invalid UTF-8 kept lossily and flagged invalid_utf8");
        }
        *tally = Tally::default();
    }

    /// Lists the globs: new files are opened, renamed ones followed, vanished ones
    /// marked rotated. `initial` applies `start_at` and stored checkpoints.
    fn rescan(&mut self, initial: bool, batch: &mut LogBatch) {
        self.watch_dirs();
        let now = Instant::now();
        let mut present: Vec<(u64, u64)> = Vec::new();
        for path in self.discovery.scan() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = (meta.dev(), meta.ino());
            present.push(key);
            if let Some(tracked) = self.files.get_mut(&key) {
                if tracked.current_path != path {
                    tracked.current_path = path.clone();
                }
                if tracked.rotated_since.take().is_some() {
                    tracing::debug!(component = %self.config.name, file = %tracked.path, "file is back within the globs");
                }
                continue;
            }
            match self.open(&path, initial) {
                Ok(tracked) => {
                    let index = mark_index(batch, &self.config.name, &tracked);
                    batch.files[index] = tracked.mark(&self.config.name, false);
                    self.files.insert(key, tracked);
                }
                Err(e) => self.metrics.events.error(
                    "open_failed",
                    &format!("cannot open {}: {e}", path.display()),
                ),
            }
        }
        // A rotation storm (RotatingFileHandler renaming .1 → .2 → …) can move a file
        // between the listing and the stat; before calling a file rotated away, look
        // once more.
        let missing = self
            .files
            .iter()
            .any(|(key, f)| f.rotated_since.is_none() && !present.contains(key));
        if missing {
            present.extend(self.discovery.scan().iter().filter_map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.dev(), meta.ino()))
            }));
        }
        self.check_created();
        for (key, tracked) in self.files.iter_mut() {
            if !present.contains(key) && tracked.rotated_since.is_none() {
                tracked.rotated_since = Some(now);
                self.metrics.file_event(
                    "rotated",
                    &tracked.path,
                    "file renamed out of the globs or deleted; draining it until idle",
                );
            }
            // Upgrade a fingerprint taken while the first line was incomplete.
            if tracked.rotated_since.is_none() {
                extend_fingerprint(tracked);
            }
        }
        self.publish_status();
    }

    /// The files created since the last rescan: each was opened (fine), is still
    /// there to be opened (looked at again by the next rescans), or went — deleted or
    /// renamed out of the globs — before the agent could open it: then whatever it
    /// held was not read, and that is counted (`sidewatch_file_events_total{event=
    /// "missed"}`) and logged.
    fn check_created(&mut self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        let mut again = Vec::new();
        for mut file in created {
            if file.key.is_some_and(|key| self.files.contains_key(&key)) {
                continue;
            }
            if let (Some(key), Ok(meta)) = (file.key, std::fs::metadata(&file.path))
                && (meta.dev(), meta.ino()) == key
            {
                // Created after this rescan listed the directory, or not openable
                // (reported as open_failed): looked at again, a few times.
                file.rescans += 1;
                if file.rescans < 3 {
                    again.push(file);
                }
                continue;
            }
            self.metrics.missed_file(&file.path.display().to_string());
        }
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(again);
    }

    fn watch_dirs(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        use notify::Watcher;
        for dir in self.discovery.watch_dirs() {
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(dir),
                Err(e) => {
                    tracing::warn!(component = %self.config.name, dir = %dir.display(), "cannot watch directory, polling instead: {e}")
                }
            }
        }
    }

    fn open(&mut self, path: &Path, initial: bool) -> std::io::Result<TrackedFile> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let size = meta.len();
        let identity = identify(&file, meta.dev(), meta.ino(), size)?;
        let path_text: Arc<str> = path.to_string_lossy().into();
        let mut rescue = None;
        let (start, why) = match self.checkpoints.remove(&(identity.dev, identity.ino)) {
            Some(cp) if same_file(&file, &cp.identity, size) && size >= cp.offset => {
                (cp.offset, "resuming from checkpoint")
            }
            Some(cp) => {
                // Shrunk, or other first bytes: copytruncate while the agent was stopped
                // (its copy beside the file holds the unread rest) or a new file that
                // reuses the inode. Either way the file itself is read from the start.
                rescue = find_copy(path, &cp.identity, cp.offset)
                    .map(|(copy_path, copy)| (copy_path, copy, cp));
                (
                    0,
                    "file truncated or replaced while the agent was stopped; reading from the start",
                )
            }
            None if initial && !self.seen_before && self.config.start_at == StartAt::End => {
                (size, "first run with start_at: end; reading new lines only")
            }
            None => (0, "new file; reading from the start"),
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        self.metrics.file_event("discovered", &path_text, why);
        let now = Instant::now();
        let tracked = TrackedFile {
            path: path_text,
            current_path: path.to_path_buf(),
            file,
            identity,
            read_pos: start,
            partial: Vec::new(),
            partial_start: start,
            partial_truncated: false,
            folding: None,
            folder: Folder::default(),
            draining: None,
            rotated_since: None,
            last_data: now,
            size,
        };
        let mut tracked = tracked;
        if let Some((copy_path, copy, cp)) = rescue {
            // Read the previous generation's rest from the copy first, as that
            // generation (its identity, its offsets); `read_file` then switches back.
            let live = std::mem::replace(&mut tracked.file, copy);
            tracked.identity = cp.identity;
            tracked.read_pos = cp.offset;
            tracked.partial_start = cp.offset;
            tracked.draining = Some(Draining {
                live,
                copy_path,
                from: cp.offset,
            });
        }
        Ok(tracked)
    }

    /// Reads what the file has now, up to its turn's worth.
    fn read_file(
        &mut self,
        key: (u64, u64),
        batch: &mut LogBatch,
        tally: &mut Tally,
        turn: u64,
    ) -> std::io::Result<ReadResult> {
        let Some(tracked) = self.files.get_mut(&key) else {
            return Ok(ReadResult::Done { bytes: 0 });
        };
        let size = tracked.file.metadata()?.len();
        tracked.size = size;
        let max_line = self.config.max_line_bytes;
        let source = &self.config.name;
        if !tracked.identity.complete {
            // The first line has grown since the file was identified: identify it again,
            // before any record of it goes out with the provisional fingerprint.
            tracked.reidentify(size)?;
        }
        let mut emitter = Emitter {
            parser: &self.parser,
            file_index: mark_index(batch, source, tracked) as u32,
            observed: unix_nanos_now(),
            tally,
        };
        // copytruncate cuts the file to 0 and the app writes on: usually the file is now
        // shorter than our position, but if the app wrote past it before we looked, only
        // the changed first line tells. Checked before reading, so we never read from
        // the middle of the new content.
        let rewritten = tracked.draining.is_none()
            && size > tracked.read_pos
            && tracked.identity.fingerprint_len > 0
            && !same_file(&tracked.file, &tracked.identity, size);
        if tracked.draining.is_none() && (size < tracked.read_pos || rewritten) {
            // copytruncate: logrotate copied the file, then cut it to 0. What was written
            // after our last read is in the copy: read it there first (over as many
            // turns as it takes), then start the live file again from 0.
            match find_copy(&tracked.current_path, &tracked.identity, tracked.read_pos) {
                Some((copy_path, copy)) => {
                    self.metrics.file_event(
                        "truncated",
                        &tracked.path,
                        &format!(
                            "file truncated (copytruncate); reading its unread rest from the copy {}",
                            copy_path.display()
                        ),
                    );
                    let live = std::mem::replace(&mut tracked.file, copy);
                    let from = tracked.read_pos;
                    tracked.draining = Some(Draining {
                        live,
                        copy_path,
                        from,
                    });
                }
                None => {
                    self.metrics.file_event(
                        "truncated",
                        &tracked.path,
                        "file truncated (copytruncate); no copy with unread lines beside it; reading from the start",
                    );
                    end_generation(tracked, &mut emitter, batch)?;
                    emitter.file_index = mark_index(batch, source, tracked) as u32;
                }
            }
        }
        let (total, stop) = read_lines(
            tracked,
            &mut self.chunk,
            &mut emitter,
            batch,
            max_line,
            turn,
        )?;
        if stop == Stop::Eof
            && let Some(draining) = tracked.draining.take()
        {
            // The copy is read to its end: the previous generation is complete.
            let recovered = tracked.read_pos - draining.from;
            tracked.file = draining.live;
            end_generation(tracked, &mut emitter, batch)?;
            emitter.file_index = mark_index(batch, source, tracked) as u32;
            self.metrics.file_event(
                "recovered",
                &tracked.path,
                &format!(
                    "{recovered} bytes written before the truncation read from the copy {}; reading the file from the start",
                    draining.copy_path.display()
                ),
            );
        }
        let mut result = if stop == Stop::Full {
            ReadResult::BatchFull { bytes: total }
        } else {
            ReadResult::Done { bytes: 0 }
        };
        let index = emitter.file_index;
        if !tracked.identity.complete {
            tracked.reidentify(tracked.read_pos)?;
            batch.files[index as usize].identity = tracked.identity;
        }
        if total > 0 {
            tracked.last_data = Instant::now();
        }
        // At the end of what is there, a folded record is complete unless a traceback
        // is still waiting for its exception line.
        if matches!(result, ReadResult::Done { .. }) && !tracked.folder.expects_more() {
            emitter.flush_folding(tracked, batch);
        }
        batch.files[index as usize].checkpoint = tracked.committable();
        if let ReadResult::Done { bytes } = &mut result {
            *bytes = total;
        }
        Ok(result)
    }

    /// Closes files that left the globs, have been read to their end and got nothing
    /// new for `rotate_wait`: their last partial line is emitted (nothing more will be
    /// appended) and their checkpoint forgotten. A rotated file the agent is behind on
    /// stays open however long ago it was last read (under overload the files take
    /// turns, and a turn can come later than `rotate_wait`): closing it would lose its
    /// unread lines.
    fn close_idle_rotated(&mut self, batch: &mut LogBatch) {
        let wait = self.config.rotate_wait;
        let done: Vec<(u64, u64)> = self
            .files
            .iter()
            .filter(|(_, f)| {
                f.rotated_since.is_some_and(|since| since.elapsed() >= wait)
                    && f.last_data.elapsed() >= wait
                    && f.draining.is_none()
                    && f.file.metadata().is_ok_and(|m| m.len() <= f.read_pos)
            })
            .map(|(k, _)| *k)
            .collect();
        let mut tally = Tally::default();
        for key in done {
            let Some(mut tracked) = self.files.remove(&key) else {
                continue;
            };
            let index = mark_index(batch, &self.config.name, &tracked) as u32;
            let mut emitter = Emitter {
                parser: &self.parser,
                file_index: index,
                observed: unix_nanos_now(),
                tally: &mut tally,
            };
            emitter.flush_partial(&mut tracked, batch);
            emitter.flush_folding(&mut tracked, batch);
            batch.files[index as usize] = tracked.mark(&self.config.name, true);
            self.metrics.file_event(
                "closed",
                &tracked.path,
                "rotated file idle for rotate_wait; closed",
            );
        }
        self.count(&mut tally);
        self.publish_status();
    }

    fn publish_status(&self) {
        let mut files: Vec<FileStatus> = self
            .files
            .values()
            .map(|f| FileStatus {
                path: f.path.to_string(),
                current_path: f.current_path.display().to_string(),
                offset: f.read_pos,
                size: f.size,
                rotated: f.rotated_since.is_some(),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if let Ok(mut status) = self.status.lock() {
            *status = files;
        }
    }
}

/// Why `read_lines` stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Eof,
    Full,
    /// Read `limit` bytes: other files get their turn.
    Turn,
}

/// Reads `tracked.file` from its position until EOF, `limit` bytes, or a full batch,
/// turning complete lines into records. Returns the bytes read and why it stopped.
fn read_lines(
    tracked: &mut TrackedFile,
    chunk: &mut [u8],
    emitter: &mut Emitter<'_>,
    batch: &mut LogBatch,
    max_line: usize,
    limit: u64,
) -> std::io::Result<(u64, Stop)> {
    let mut total = 0u64;
    loop {
        let n = tracked.file.read(chunk)?;
        if n == 0 {
            return Ok((total, Stop::Eof));
        }
        let base = tracked.read_pos;
        tracked.read_pos += n as u64;
        total += n as u64;
        emitter.tally.bytes += n as u64;
        let data = &chunk[..n];
        let mut start = 0usize;
        for newline in memchr::memchr_iter(b'\n', data) {
            let piece = &data[start..newline];
            if tracked.partial.is_empty() && !tracked.partial_truncated {
                let cut = piece.len() > max_line;
                let piece = if cut { &piece[..max_line] } else { piece };
                emitter.line(tracked, batch, piece, base + start as u64, cut);
            } else {
                let room = max_line.saturating_sub(tracked.partial.len());
                let cut = tracked.partial_truncated || piece.len() > room;
                tracked
                    .partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                emitter.flush_partial_as(tracked, batch, cut);
            }
            start = newline + 1;
        }
        if start < n {
            let rest = &data[start..];
            if tracked.partial.is_empty() && !tracked.partial_truncated {
                tracked.partial_start = base + start as u64;
            }
            let room = max_line.saturating_sub(tracked.partial.len());
            if rest.len() > room {
                tracked.partial_truncated = true;
            }
            tracked
                .partial
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
        if batch.buf.len() >= BATCH_BYTES || batch.records.len() >= BATCH_RECORDS {
            return Ok((total, Stop::Full));
        }
        if total >= limit {
            return Ok((total, Stop::Turn));
        }
    }
}

/// Finds the copy logrotate's `copytruncate` made of the file at `path` (`app.log.1`,
/// `app.log-20261123`, ... beside it): a recent, uncompressed file that starts with the
/// same first line and is longer than `offset`, opened and positioned at `offset`.
fn find_copy(path: &Path, identity: &FileIdentity, offset: u64) -> Option<(PathBuf, File)> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_string_lossy().to_string();
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name().to_string_lossy().to_string();
            if file_name == name || !file_name.starts_with(&name) || file_name.ends_with(".gz") {
                return None;
            }
            let meta = entry.metadata().ok()?;
            let modified = meta.modified().ok()?;
            let fresh = modified
                .elapsed()
                .map(|age| age < COPY_MAX_AGE)
                .unwrap_or(true);
            let candidate =
                meta.is_file() && meta.ino() != identity.ino && meta.len() > offset && fresh;
            candidate.then(|| (modified, entry.path()))
        })
        .collect();
    // The newest copy is the one just made.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    candidates.into_iter().find_map(|(_, path)| {
        let mut file = File::open(&path).ok()?;
        let size = file.metadata().ok()?.len();
        if !same_file(&file, identity, size) {
            return None;
        }
        file.seek(SeekFrom::Start(offset)).ok()?;
        Some((path, file))
    })
}

/// The live file, set aside while the previous generation's rest is read from the
/// copy logrotate's copytruncate made.
struct Draining {
    live: File,
    copy_path: PathBuf,
    /// Where reading the copy started.
    from: u64,
}

enum ReadResult {
    Done {
        bytes: u64,
    },
    /// The batch is full after `bytes` of this turn: send it, then go on if the turn
    /// has bytes left.
    BatchFull {
        bytes: u64,
    },
}

/// The index of `tracked`'s mark in `batch.files`, adding one if needed.
fn mark_index(batch: &mut LogBatch, source: &Arc<str>, tracked: &TrackedFile) -> usize {
    // A closed mark belongs to a finished generation of the file (before a truncation):
    // the live generation gets a mark of its own.
    if let Some(i) = batch.files.iter().position(|m| {
        !m.closed
            && m.identity.dev == tracked.identity.dev
            && m.identity.ino == tracked.identity.ino
    }) {
        batch.files[i].identity = tracked.identity;
        return i;
    }
    batch.files.push(tracked.mark(source, false));
    batch.files.len() - 1
}

/// Finishes a file's generation (a truncation): its last partial line and folded
/// record are emitted, its mark closed at the final offset, and reading restarts at 0
/// under the new content's identity.
fn end_generation(
    tracked: &mut TrackedFile,
    emitter: &mut Emitter<'_>,
    batch: &mut LogBatch,
) -> std::io::Result<()> {
    emitter.flush_partial(tracked, batch);
    emitter.flush_folding(tracked, batch);
    let old = &mut batch.files[emitter.file_index as usize];
    old.checkpoint = tracked.read_pos;
    old.closed = true;
    restart_from_zero(tracked)
}

fn restart_from_zero(tracked: &mut TrackedFile) -> std::io::Result<()> {
    tracked.file.seek(SeekFrom::Start(0))?;
    tracked.read_pos = 0;
    tracked.partial.clear();
    tracked.partial_start = 0;
    tracked.partial_truncated = false;
    tracked.folding = None;
    tracked.folder = Folder::default();
    let size = tracked.file.metadata()?.len();
    tracked.reidentify(size)?;
    Ok(())
}

/// Extends a fingerprint taken while the first line was still being written. (A
/// changed first line is a truncation; `read_file` alone handles those, so that the
/// unread rest is recovered from the copy whichever look notices first.)
fn extend_fingerprint(tracked: &mut TrackedFile) {
    let Ok(meta) = tracked.file.metadata() else {
        return;
    };
    let size = meta.len();
    if !tracked.identity.complete
        && size > tracked.identity.fingerprint_len as u64
        && same_file(&tracked.file, &tracked.identity, size)
    {
        // A failure here leaves the provisional fingerprint; the next look retries.
        let _ = tracked.reidentify(size);
    }
}

/// The identity of an open file: its device, inode and a hash of its first line (up to
/// `FINGERPRINT_BYTES`). While that line is still being written the fingerprint covers
/// what is there and `complete` is false; it is taken again once the line is whole, so
/// a record never goes out under a fingerprint that will change.
fn identify(file: &File, dev: u64, ino: u64, size: u64) -> std::io::Result<FileIdentity> {
    let available = size.min(FINGERPRINT_BYTES) as usize;
    let mut head = [0u8; FINGERPRINT_BYTES as usize];
    file.read_exact_at(&mut head[..available], 0)?;
    let (len, complete) = match memchr::memchr(b'\n', &head[..available]) {
        Some(newline) => (newline + 1, true),
        None => (available, available as u64 == FINGERPRINT_BYTES),
    };
    Ok(FileIdentity {
        dev,
        ino,
        fingerprint_len: len as u32,
        fingerprint: fnv1a(&head[..len]),
        complete,
    })
}

/// Whether `file` still starts with the bytes `identity` fingerprinted.
fn same_file(file: &File, identity: &FileIdentity, size: u64) -> bool {
    let len = identity.fingerprint_len as u64;
    if size < len {
        return false;
    }
    let mut head = [0u8; FINGERPRINT_BYTES as usize];
    match file.read_exact_at(&mut head[..len as usize], 0) {
        Ok(()) => fnv1a(&head[..len as usize]) == identity.fingerprint,
        Err(_) => false,
    }
}

/// The fingerprint hash, FNV-1a: tiny, stable across releases and platforms (it is
/// persisted in checkpoints).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn unix_nanos_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Turns complete lines into records in the batch.
struct Emitter<'a> {
    parser: &'a LineParser,
    file_index: u32,
    observed: i64,
    tally: &'a mut Tally,
}

impl Emitter<'_> {
    /// One complete line (without its newline) that starts at `offset`.
    fn line(
        &mut self,
        tracked: &mut TrackedFile,
        batch: &mut LogBatch,
        line: &[u8],
        offset: u64,
        cut: bool,
    ) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.parser.format() == Format::Text {
            self.fold(tracked, batch, line, offset, cut);
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            self.tally.blank += 1;
            return;
        }
        self.record(batch, line, offset, cut);
    }

    /// Text lines: a continuation joins the record being folded; any other line
    /// completes it and starts the next.
    fn fold(
        &mut self,
        tracked: &mut TrackedFile,
        batch: &mut LogBatch,
        line: &[u8],
        offset: u64,
        cut: bool,
    ) {
        let continues = tracked.folder.continues(line);
        if continues && let Some(folding) = tracked.folding.as_mut() {
            folding.text.push(b'\n');
            folding.text.extend_from_slice(line);
            folding.truncated |= cut;
            return;
        }
        self.flush_folding(tracked, batch);
        if !continues {
            tracked.folder = Folder::default();
        }
        if line.is_empty() && !continues {
            return;
        }
        tracked.folding = Some(Folding {
            text: line.to_vec(),
            offset,
            truncated: cut,
        });
    }

    /// Emits the partial line as a record: its newline has arrived (`cut` says whether
    /// it was overlong), or its file is finished and nothing more will be appended.
    fn flush_partial_as(&mut self, tracked: &mut TrackedFile, batch: &mut LogBatch, cut: bool) {
        let line = std::mem::take(&mut tracked.partial);
        let start = tracked.partial_start;
        self.line(tracked, batch, &line, start, cut);
        tracked.partial = line;
        tracked.partial.clear();
        tracked.partial_truncated = false;
    }

    /// Emits whatever partial line there is, for a file that will not grow any more.
    fn flush_partial(&mut self, tracked: &mut TrackedFile, batch: &mut LogBatch) {
        if !tracked.partial.is_empty() || tracked.partial_truncated {
            let cut = tracked.partial_truncated;
            self.flush_partial_as(tracked, batch, cut);
        }
    }

    fn flush_folding(&mut self, tracked: &mut TrackedFile, batch: &mut LogBatch) {
        if let Some(folding) = tracked.folding.take() {
            self.record(batch, &folding.text, folding.offset, folding.truncated);
        }
    }

    fn record(&mut self, batch: &mut LogBatch, line: &[u8], offset: u64, cut: bool) {
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
        let span = Span::new(start, batch.buf.len());
        let mut record = LogRecord {
            file: self.file_index,
            offset,
            observed_unix_nano: self.observed,
            flags: RecordFlags {
                parse_error: false,
                truncated: cut,
                invalid_utf8,
            },
            ..LogRecord::default()
        };
        if self
            .parser
            .parse(&mut batch.buf, span, &mut batch.fields, &mut record)
            == Outcome::Malformed
        {
            self.tally.parse_errors += 1;
        }
        self.tally.truncated += cut as u64;
        self.tally.invalid_utf8 += invalid_utf8 as u64;
        self.tally.levels[level_index(record.severity_number)] += 1;
        batch.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watcher's notes of created files, checked at the next rescan, here driven by
    /// hand: a real watcher races the tail thread, which usually opens a new file
    /// within a millisecond (the race these checks are for).
    #[test]
    fn a_file_created_and_gone_before_it_was_opened_is_counted_as_missed() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let store = StateStore::open(&dir.path().join("data")).unwrap();
        let telemetry = Telemetry::new();
        let mut config =
            LogSourceConfig::defaults("app", vec![format!("{}/*.log", logs.display())]);
        config.notify = false;
        let mut tail = FileTail::new(config, &store, &telemetry).unwrap();
        let missed = telemetry.counter(
            "sidewatch_file_events_total",
            "",
            &[("source", "app"), ("event", "missed")],
        );
        let mut batch = LogBatch::new(Arc::from("app"));
        tail.rescan(true, &mut batch);
        let note = |name: &str| {
            note_created(&tail.discovery, &tail.created, &[logs.join(name)]);
        };

        // Created, noted by the watcher, deleted before the rescan: missed.
        std::fs::write(logs.join("a.log"), "{\"event\": \"lost\"}\n").unwrap();
        note("a.log");
        std::fs::remove_file(logs.join("a.log")).unwrap();
        // Renamed out of the globs before the rescan: missed too.
        std::fs::write(logs.join("b.log"), "{\"event\": \"lost\"}\n").unwrap();
        note("b.log");
        std::fs::rename(logs.join("b.log"), logs.join("b.log.1")).unwrap();
        // Already gone when the watcher looked: missed.
        note("c.log");
        // Outside the globs: not noted.
        std::fs::write(logs.join("d.txt"), "x\n").unwrap();
        note("d.txt");
        // Created and still there: opened by the rescan, not missed.
        std::fs::write(logs.join("e.log"), "{\"event\": \"kept\"}\n").unwrap();
        note("e.log");
        assert_eq!(tail.created.lock().unwrap().len(), 4, "d.txt is not noted");
        tail.rescan(false, &mut batch);
        assert_eq!(missed.get(), 3);
        assert!(tail.created.lock().unwrap().is_empty());
        assert!(
            tail.files.values().any(|f| f.path.ends_with("e.log")),
            "e.log is open"
        );
        // A file the rescan listed before it existed is looked at again, not missed.
        std::fs::write(logs.join("f.log"), "").unwrap();
        let meta = std::fs::metadata(logs.join("f.log")).unwrap();
        tail.created.lock().unwrap().push(CreatedFile {
            path: logs.join("f.log"),
            key: Some((meta.dev(), meta.ino())),
            rescans: 0,
        });
        tail.check_created();
        assert_eq!(missed.get(), 3);
        assert_eq!(tail.created.lock().unwrap().len(), 1);
    }

    /// bench/overload.py under a 0.1-core CPU limit: with many rotated files taking
    /// turns, a file's turn came later than `rotate_wait` after its last read, and it
    /// was closed with lines unread (3.5 M lines lost without a counter). A rotated file
    /// is closed only once read to its end.
    #[test]
    fn a_rotated_file_with_unread_lines_is_not_closed_however_long_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("data")).unwrap();
        let telemetry = Telemetry::new();
        let mut config =
            LogSourceConfig::defaults("app", vec![format!("{}/*.log", dir.path().display())]);
        config.notify = false;
        config.rotate_wait = Duration::from_millis(1);
        let mut tail = FileTail::new(config, &store, &telemetry).unwrap();
        std::fs::write(dir.path().join("app.log"), "{\"event\": \"unread\"}\n").unwrap();
        let mut batch = LogBatch::new(Arc::from("app"));
        tail.rescan(true, &mut batch);
        let long_ago = Instant::now() - Duration::from_secs(60);
        for file in tail.files.values_mut() {
            file.read_pos = 0; // the agent is behind: nothing of it read yet
            file.rotated_since = Some(long_ago);
            file.last_data = long_ago;
        }
        tail.close_idle_rotated(&mut batch);
        assert_eq!(tail.files.len(), 1, "closed with its line unread");
        for file in tail.files.values_mut() {
            file.read_pos = file.file.metadata().unwrap().len();
        }
        tail.close_idle_rotated(&mut batch);
        assert!(tail.files.is_empty(), "read to its end and idle: closed");
    }
}
