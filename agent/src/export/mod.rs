//! The sink stage: where records leave the pipeline (the `file` and `stdout` JSON-lines
//! outputs, the `blackhole` used by benchmarks, the OTLP exporter's disk queue) and
//! where file checkpoints are committed once the records are durable.
//!
//! One stage owns every output so that a batch is acknowledged only when all of them
//! hold it. Every `checkpoint_interval` it flushes the file output and hands the
//! acknowledged offsets to its committer thread, which `fdatasync`s the file output and
//! the OTLP queue and then commits the offsets to the state store in one transaction,
//! while the stage goes on with the next batches (the disk is never waited for on the
//! pipeline's path): a crash can repeat at most about one interval's records, and never
//! skip any.
//! The OTLP queue is durable on local disk, so checkpoints never wait for the collector
//! (SPEC: a collector outage never stalls alerting or keeps rotated files open).

pub mod json;
pub mod otlp;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::channel::{BatchReceiver, Received};
use crate::config::ExportConfig;
use crate::event::{FileMark, LogBatch};
use crate::state::StateStore;
use crate::telemetry::{ComponentEvents, Telemetry};

/// The outputs of the pipeline and the checkpoint commit.
pub struct SinkStage {
    file: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    stdout: bool,
    blackhole: bool,
    /// Takes the store; started by `run`.
    committer: Option<Committer>,
    store: Option<StateStore>,
    checkpoint_interval: Duration,
    events: ComponentEvents,
    /// Emptied batches go back to the sources for reuse.
    recycle: Arc<Mutex<Vec<LogBatch>>>,
    /// Sum over every decoded field (blackhole): keeps the work from being optimized out.
    checksum: u64,
    /// The rule engine, fed every batch before it is acknowledged.
    rules: Option<crate::rule_runner::SharedEngine>,
    /// Deployment detection and evidence: sets each record's `deployment` first.
    deployments: Option<(
        crate::deploy::SharedDeployments,
        tokio::sync::mpsc::UnboundedSender<crate::deploy::tracker::Deployment>,
    )>,
    /// OTLP log export: every batch is encoded and appended to its disk queue.
    otlp: Option<otlp::LogExport>,
}

/// How many emptied batches are kept for reuse.
const RECYCLE_POOL: usize = 16;

impl SinkStage {
    pub fn new(
        config: &ExportConfig,
        store: StateStore,
        checkpoint_interval: Duration,
        telemetry: &Arc<Telemetry>,
        recycle: Arc<Mutex<Vec<LogBatch>>>,
    ) -> anyhow::Result<SinkStage> {
        let file = match &config.file {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs_err::create_dir_all(dir)?;
                }
                repair_torn_tail(path).map_err(|e| {
                    anyhow::anyhow!("cannot check the end of {}: {e}", path.display())
                })?;
                let file = fs_err::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Some((
                    path.clone(),
                    std::io::BufWriter::with_capacity(256 * 1024, file.into()),
                ))
            }
            None => None,
        };
        Ok(SinkStage {
            file,
            stdout: config.stdout,
            blackhole: config.blackhole,
            committer: None,
            store: Some(store),
            checkpoint_interval,
            events: ComponentEvents::new(telemetry, "records", "sink"),
            recycle,
            checksum: 0,
            rules: None,
            deployments: None,
            otlp: None,
        })
    }

    /// Sets every record's `deployment` and feeds deployment detection and evidence;
    /// deployments that start are sent on `started`.
    pub fn with_deployments(
        mut self,
        deployments: crate::deploy::SharedDeployments,
        started: tokio::sync::mpsc::UnboundedSender<crate::deploy::tracker::Deployment>,
    ) -> SinkStage {
        self.deployments = Some((deployments, started));
        self
    }

    /// Appends every batch to the OTLP log queue too.
    pub fn with_otlp(mut self, export: otlp::LogExport) -> SinkStage {
        self.otlp = Some(export);
        self
    }

    /// Feeds every batch to the rule engine too.
    pub fn with_rules(mut self, engine: crate::rule_runner::SharedEngine) -> SinkStage {
        self.rules = Some(engine);
        self
    }

    /// Consumes batches until every source has stopped, then makes the last ones
    /// durable and commits their checkpoints.
    pub fn run(mut self, input: BatchReceiver) {
        match self.start_committer() {
            Ok(committer) => self.committer = Some(committer),
            Err(e) => self.events.error(
                "checkpoint_failed",
                &format!(
                    "cannot start the checkpoint committer: {e}; checkpoints are not committed"
                ),
            ),
        }
        let mut pending: Vec<FileMark> = Vec::new();
        let mut last_commit = Instant::now();
        let mut line = Vec::with_capacity(64 * 1024);
        let stdout = std::io::stdout();
        loop {
            // Wait for a batch, but no longer than the next commit is due, so offsets
            // are committed on time even when the input goes quiet.
            let due = self
                .checkpoint_interval
                .saturating_sub(last_commit.elapsed());
            let mut batch = match input.recv_timeout(due) {
                Received::Batch(batch) => batch,
                Received::Timeout => {
                    self.commit(&mut pending);
                    last_commit = Instant::now();
                    continue;
                }
                Received::Closed => break,
            };
            let records = batch.records.len() as u64;
            self.events.received.add(records);
            if let Some((deployments, started)) = &self.deployments {
                let events = crate::deploy_runner::lock(deployments).ingest(&mut batch);
                for event in events {
                    crate::deploy_runner::log_event(&event);
                    if let crate::deploy::DeploymentEvent::Started(d) = event {
                        let _ = started.send(d);
                    }
                }
            }
            if let Some(engine) = &self.rules {
                crate::rule_runner::lock(engine).ingest(&batch);
            }
            if self.file.is_some() || self.stdout {
                line.clear();
                for record in &batch.records {
                    let deployment = record.deployment.map(|v| v.as_str(&batch.buf));
                    json::write_record(&mut line, &batch, record, deployment.as_deref());
                }
                self.write_file(&line);
                if self.stdout {
                    let mut lock = stdout.lock();
                    if let Err(e) = lock.write_all(&line) {
                        self.events.error(
                            "stdout_write_failed",
                            &format!("cannot write records to stdout: {e}"),
                        );
                    }
                }
            }
            self.append_otlp(&batch);
            if self.blackhole {
                self.checksum = self.checksum.wrapping_add(touch_every_field(&batch));
            }
            self.events.sent.add(records);
            pending.append(&mut batch.files);
            batch.clear();
            if let Ok(mut pool) = self.recycle.lock()
                && pool.len() < RECYCLE_POOL
            {
                pool.push(batch);
            }
            if last_commit.elapsed() >= self.checkpoint_interval {
                self.commit(&mut pending);
                last_commit = Instant::now();
            }
        }
        let flushed = self.commit(&mut pending);
        if let Some(committer) = self.committer.take() {
            // What the committer was too busy to take goes now, waited for: a clean
            // stop commits every checkpoint (unless the file output could not be
            // flushed: then its records were not written and are read again).
            committer.finish(if flushed { pending } else { Vec::new() });
        }
        std::hint::black_box(self.checksum);
        tracing::debug!("sink stage stopped; checkpoints committed");
    }

    fn start_committer(&mut self) -> std::io::Result<Committer> {
        let file = match &self.file {
            Some((path, writer)) => Some((path.clone(), writer.get_ref().try_clone()?)),
            None => None,
        };
        let store = self
            .store
            .take()
            .ok_or_else(|| std::io::Error::other("the state store is already taken"))?;
        let work = CommitWork {
            file,
            otlp: self.otlp.as_ref().map(|o| o.queue.clone()),
            store,
            events: self.events.clone(),
            carry: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<FileMark>>(1);
        let thread = std::thread::Builder::new()
            .name("sidewatch-commit".into())
            .spawn(move || work.run(rx))?;
        Ok(Committer { tx, thread })
    }

    /// Writes to the file output, retrying until it works: records are never dropped
    /// because a disk is briefly full; the pipeline waits (backpressure) instead.
    fn write_file(&mut self, bytes: &[u8]) {
        let Some((path, writer)) = self.file.as_mut() else {
            return;
        };
        let mut delay = Duration::from_millis(100);
        while let Err(e) = writer.write_all(bytes) {
            let message = format!("cannot write records to {}: {e}; retrying", path.display());
            self.events.error("file_write_failed", &message);
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Appends to the OTLP queue. Like the file output, an IO error (a full disk) holds
    /// the pipeline back rather than losing records; a full queue is no error, it drops
    /// its oldest entries.
    fn append_otlp(&mut self, batch: &LogBatch) {
        let Some(export) = self.otlp.as_mut() else {
            return;
        };
        // The OTLP receiver's span records: the spans themselves are relayed as traces,
        // so they do not go to the collector a second time as log records.
        if &*batch.source == crate::config::OTLP_SOURCE {
            return;
        }
        let events = &self.events;
        export.append(batch, |e| {
            events.error("otlp_queue_write_failed", &format!("{e}; retrying"));
        });
    }

    /// Flushes the file output and hands the offsets of everything written so far to
    /// the committer, which makes it durable and commits them. If the committer is
    /// still busy with the last interval's, they wait for the next. False when the file
    /// output could not be flushed (the marks are held back).
    fn commit(&mut self, pending: &mut Vec<FileMark>) -> bool {
        if let Some((path, writer)) = self.file.as_mut()
            && let Err(e) = writer.flush()
        {
            let message = format!(
                "cannot flush {}: {e}; checkpoints held back",
                path.display()
            );
            self.events.error("file_sync_failed", &message);
            return false;
        }
        if let Some(committer) = self.committer.as_mut()
            && !pending.is_empty()
        {
            committer.offer(pending);
        }
        true
    }
}

/// The sink's end of the committer thread.
struct Committer {
    tx: std::sync::mpsc::SyncSender<Vec<FileMark>>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    /// Hands `pending` over unless the committer is busy (then they stay and go with
    /// the next interval's).
    fn offer(&mut self, pending: &mut Vec<FileMark>) {
        match self.tx.try_send(std::mem::take(pending)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(marks)) => {
                *pending = marks;
                dedup_marks(pending);
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(marks)) => {
                *pending = marks;
                dedup_marks(pending);
                tracing::error!("the checkpoint committer stopped; checkpoints are not committed");
            }
        }
    }

    /// The last commit, `pending` included, waited for.
    fn finish(self, pending: Vec<FileMark>) {
        if !pending.is_empty() && self.tx.send(pending).is_err() {
            tracing::error!(
                "the checkpoint committer stopped; the last checkpoints are not committed"
            );
        }
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!(
                "the checkpoint committer panicked; the last checkpoints are not committed"
            );
        }
    }
}

/// The committer thread's side: syncs the outputs, then commits the offsets.
struct CommitWork {
    file: Option<(PathBuf, std::fs::File)>,
    otlp: Option<Arc<otlp::queue::DiskQueue>>,
    store: StateStore,
    events: ComponentEvents,
    /// Marks whose commit failed, committed with the next ones.
    carry: Vec<FileMark>,
}

impl CommitWork {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Vec<FileMark>>) {
        // On a channel closed by `finish`, the last marks were sent before it.
        while let Ok(marks) = rx.recv() {
            self.carry.extend(marks);
            if self.commit() {
                self.carry.clear();
            } else {
                dedup_marks(&mut self.carry);
            }
        }
    }

    /// Makes written records durable, then commits the offsets they cover; false if
    /// it could not (the marks are tried again with the next ones).
    fn commit(&mut self) -> bool {
        if let Some(queue) = &self.otlp
            && let Err(e) = queue.sync()
        {
            let message = format!("{e}; checkpoints held back");
            self.events.error("otlp_queue_sync_failed", &message);
            return false;
        }
        if let Some((path, file)) = &self.file
            && let Err(e) = file.sync_data()
        {
            let message = format!(
                "cannot sync {} to disk: {e}; checkpoints held back",
                path.display()
            );
            self.events.error("file_sync_failed", &message);
            return false;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match self.store.commit_marks(self.carry.iter(), now) {
            Ok(()) => true,
            Err(e) => {
                self.events.error(
                    "checkpoint_failed",
                    &format!("cannot commit checkpoints: {e}"),
                );
                false
            }
        }
    }
}

/// Keeps only the last mark of each file (a later mark supersedes an earlier one), so
/// marks carried over failed commits do not pile up.
fn dedup_marks(marks: &mut Vec<FileMark>) {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<FileMark> = Vec::with_capacity(marks.len());
    for mark in marks.drain(..).rev() {
        if seen.insert((mark.source.clone(), mark.identity)) {
            kept.push(mark);
        }
    }
    kept.reverse();
    *marks = kept;
}

/// A crash (`kill -9`, power cut) can leave the file output ending in part of a line.
/// Those records were never acknowledged, so they will be read and written again:
/// cut the torn tail so the output stays one JSON object per line.
fn repair_torn_tail(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(newline) = memchr::memrchr(b'\n', chunk) {
            end = start + newline as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            file = %path.display(),
            bytes = len - end,
            "record output ended in a torn line (the agent was killed mid-write); removed it, the records will be written again"
        );
        file.set_len(end)?;
    }
    Ok(())
}

/// Decodes everything an exporter would read from each record (time, severity, body,
/// trace context, every attribute's key and value) and folds it into a number, so a
/// benchmark of the blackhole output pays for the decoding that lazy parsing deferred.
pub fn touch_every_field(batch: &LogBatch) -> u64 {
    use crate::event::Decoded;
    let buf = &batch.buf;
    let mut sum = 0u64;
    let fold = |d: &Decoded<'_>| -> u64 {
        match d {
            Decoded::Str(s) => s.len() as u64,
            Decoded::Int(i) => *i as u64,
            Decoded::Double(f) => f.to_bits(),
            Decoded::Bool(b) => *b as u64,
            Decoded::Null => 1,
            Decoded::Json(s) => s.len() as u64,
        }
    };
    for record in &batch.records {
        sum = sum.wrapping_add(record.time() as u64);
        sum = sum.wrapping_add(record.severity_number as u64);
        if let Some(body) = record.body {
            sum = sum.wrapping_add(fold(&body.decode(buf)));
        }
        for id in [record.trace_id, record.span_id].into_iter().flatten() {
            sum = sum.wrapping_add(id.raw(buf).len() as u64);
        }
        for field in batch.attrs(record) {
            sum = sum.wrapping_add(field.key(buf).len() as u64);
            sum = sum.wrapping_add(fold(&field.value.decode(buf)));
        }
        sum = sum.wrapping_add(batch.file_path(record).len() as u64);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_back_to_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        repair_torn_tail(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        repair_torn_tail(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        std::fs::write(&path, "no newline at all").unwrap();
        repair_torn_tail(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        repair_torn_tail(&dir.path().join("missing")).unwrap();
    }
}
