//! The exporter's durable queue: encoded OTLP requests appended to segment files under
//! `data_dir/otlp/<signal>/`, read back in order by the sender, removed once acked.
//!
//! Layout of the directory:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segments, oldest first; only the last one is written.
//!   Each entry is a 12-byte header — payload length (u32 LE), record count (u32 LE),
//!   CRC32 of the count and payload (u32 LE) — then the payload (protobuf bytes).
//! - `read.pos`: the acked read position (`segment offset`), replaced atomically
//!   (write, fsync, rename). A crash can lose the last ack: that batch is sent again
//!   (at-least-once), never skipped.
//! - `lock`: held (`flock`) while a queue is open, so a second agent on the same
//!   `data_dir` fails at start instead of corrupting the queue.
//!
//! Why the sink can commit file checkpoints without waiting for the collector: an
//! entry is durable once `sync` returns, and from then on only the sender (ack) or the
//! disk limit (drop oldest, counted and logged) removes it. A `kill -9` mid-append
//! leaves a torn last entry; `open` finds it by length and CRC and cuts it off (its
//! records were never checkpointed, so the tail source reads them again).
//!
//! The most recent entries are also kept in memory (up to `queue.memory`) so that a
//! sender keeping up never reads the disk; behind that, it reads the segments.
//!
//! Nothing waits for the disk while holding the queue's lock: `fsync`s (of `read.pos`,
//! the segments, the directory) and unlinks are decided under it and done after it is
//! released. The sink's appends share that lock, and on a virtual disk one flush takes
//! tens of milliseconds (with them under the lock the sink waited 1.2 s of a 3.7 s
//! export benchmark).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::telemetry::{Counter, Gauge};

const HEADER: usize = 12;
/// An entry longer than this is corruption, not data: requests are a few MiB at most.
const MAX_ENTRY: u32 = 256 * 1024 * 1024;
/// How often acks reach `read.pos` at most while requests keep going. A crash loses at
/// most this much of the acked position: those entries are sent again (at-least-once),
/// as they would be had the crash come before their ack.
const READ_PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the sender has got to: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Size limits of the queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Recent entries kept in memory besides the disk.
    pub memory: u64,
    /// The most the segments may hold on disk; past it the oldest are dropped.
    pub disk: u64,
}

impl QueueLimits {
    /// Segments are an eighth of the disk limit (between 64 KiB and 64 MiB), so that
    /// dropping the oldest one frees a small part of the queue, not half of it.
    fn segment_bytes(&self) -> u64 {
        (self.disk / 8).clamp(64 * 1024, 64 * 1024 * 1024)
    }
}

/// The queue's series.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// `sidewatch_export_queue_bytes{signal}`: bytes not yet acked.
    pub bytes: Gauge,
    /// `sidewatch_export_dropped_total{signal}`: records dropped (disk limit).
    pub dropped: Counter,
}

/// Errors of the queue, each naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot use the queue file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the queue in {0} is in use by another sidewatch process (each agent needs its own data_dir)"
    )]
    Locked(PathBuf),
}

/// One entry read back.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Position,
    pub records: u32,
    /// Where the entry after it starts.
    pub next: Position,
}

/// Consecutive entries read for one request: their payloads concatenated, which is
/// itself a valid protobuf request (repeated fields of concatenated messages merge).
#[derive(Debug, Clone, Default)]
pub struct Peeked {
    pub body: bytes::BytesMut,
    pub entries: Vec<Entry>,
}

impl Peeked {
    pub fn records(&self) -> u64 {
        self.entries.iter().map(|e| e.records as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    bytes: u64,
    records: u64,
}

#[derive(Debug)]
struct Cached {
    at: Position,
    records: u32,
    /// The encoder's own buffer (a slice of it), not a copy.
    payload: bytes::Bytes,
}

#[derive(Debug)]
struct Inner {
    /// Oldest first; the last one is the one being written. Never empty.
    segments: VecDeque<Segment>,
    writer: File,
    /// Written since the last `sync`.
    dirty: bool,
    /// Segments closed since the last `sync`, to be synced by it (a rotation does not
    /// wait for the disk while holding the lock).
    unsynced: Vec<File>,
    /// A segment was created since the last `sync`: the directory is synced by it, so
    /// the new name survives a crash before the checkpoints that need it.
    dir_unsynced: bool,
    /// The acked position. `read.pos` holds it, or an earlier one (`read_saved`).
    read: Position,
    /// What `read.pos` holds, and when it was last asked to be written: acks are
    /// persisted at most every `READ_PERSIST_INTERVAL` (and whenever a segment goes,
    /// and when idle or closing), not once per request.
    read_saved: Position,
    read_saved_at: tokio::time::Instant,
    /// Records of the read segment before `read.offset` (acked): what dropping that
    /// segment does not count as lost.
    read_records: u64,
    cache: VecDeque<Cached>,
    cache_bytes: u64,
    /// The capacity of the sender's request buffer (`peek_into`), which it keeps from
    /// request to request: it counts against `queue.memory` as the cached entries do,
    /// so the bound holds the request in flight too. (Entries taken out of the cache
    /// into a request leave the cache.) Counting only the bytes of the request in
    /// flight left the rest of the buffer outside the bound: the export benchmark's
    /// heap peaked with 16 MiB of entries beside the 3 MiB buffer.
    request_buffer: u64,
    /// What the sender's client keeps for gzip from request to request (the deflate
    /// state and the output buffer, `OtlpClient::retained_bytes`), counted as the
    /// request buffer is: before, that memory was outside the bound.
    compression: u64,
}

/// The durable queue of one signal. Shared by the sink stage (appends, syncs) and the
/// sender (peeks, acks); every operation takes the lock briefly.
#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    limits: QueueLimits,
    metrics: QueueMetrics,
    inner: Mutex<Inner>,
    /// Held while `read.pos` is written, so that two writers (the sender's ack, the
    /// sink's drop of the oldest segment) do not interleave; `inner` is not held then.
    persisting: Mutex<()>,
    /// Wakes the sender when an entry is appended.
    appended: tokio::sync::Notify,
    /// Held for the queue's life: the directory's lock.
    _lock: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

fn entry_crc(records: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&records.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

impl DiskQueue {
    /// Opens (or creates) the queue in `dir`: takes its lock, checks every segment,
    /// cuts a torn last entry, and resumes from the persisted read position.
    pub fn open(
        dir: &Path,
        limits: QueueLimits,
        metrics: QueueMetrics,
    ) -> Result<Arc<DiskQueue>, QueueError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(QueueError::Locked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let mut seqs: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let last = seqs.last().copied();
        let persisted = read_position(&dir.join("read.pos"));
        let mut segments = VecDeque::new();
        let mut read = None;
        let mut read_records = 0;
        for seq in seqs {
            let path = segment_path(dir, seq);
            // Segments wholly before the read position were acked: a crash came
            // between the ack and their removal.
            if persisted.is_some_and(|p| seq < p.segment) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let scan = scan_segment(&path, Some(seq) == last, persisted)?;
            if scan.valid_len < scan.file_len {
                tracing::warn!(
                    file = %path.display(),
                    bytes = scan.file_len - scan.valid_len,
                    "the export queue ended in a torn entry (the agent was killed mid-write); removed it, its records will be read again"
                );
                let file = File::options().write(true).open(&path).map_err(io(&path))?;
                file.set_len(scan.valid_len).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            if read.is_none() {
                // The first segment kept holds the read position: the persisted one
                // (moved back to an entry boundary) when it is in this segment, else
                // the segment's start.
                let offset = match persisted {
                    Some(p) if p.segment == seq => scan.boundary_at_or_before,
                    _ => 0,
                };
                read_records = match persisted {
                    Some(p) if p.segment == seq => scan.records_before,
                    _ => 0,
                };
                read = Some(Position {
                    segment: seq,
                    offset,
                });
            }
            segments.push_back(Segment {
                seq,
                bytes: scan.valid_len,
                records: scan.records,
            });
        }
        if segments.is_empty() {
            let seq = persisted.map_or(0, |p| p.segment + 1);
            create_segment(dir, seq)?;
            sync_dir(dir)?;
            segments.push_back(Segment {
                seq,
                bytes: 0,
                records: 0,
            });
            read = Some(Position {
                segment: seq,
                offset: 0,
            });
        }
        let last = segments.back().map_or(0, |s| s.seq);
        let path = segment_path(dir, last);
        let writer = File::options()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let queue = DiskQueue {
            dir: dir.to_path_buf(),
            limits,
            metrics,
            persisting: Mutex::new(()),
            inner: Mutex::new(Inner {
                segments,
                writer,
                dirty: false,
                unsynced: Vec::new(),
                dir_unsynced: false,
                read: read.unwrap_or(Position {
                    segment: last,
                    offset: 0,
                }),
                read_records,
                read_saved: read.unwrap_or(Position {
                    segment: last,
                    offset: 0,
                }),
                read_saved_at: tokio::time::Instant::now(),
                cache: VecDeque::new(),
                cache_bytes: 0,
                request_buffer: 0,
                compression: 0,
            }),
            appended: tokio::sync::Notify::new(),
            _lock: lock,
        };
        {
            let inner = queue.lock();
            queue.update_gauge(&inner);
        }
        Ok(Arc::new(queue))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one entry (written, not yet synced). When the disk limit is passed, the
    /// oldest segments are dropped (counted and logged). On an error nothing is left
    /// half-written.
    pub fn append(&self, records: u32, payload: impl Into<bytes::Bytes>) -> Result<(), QueueError> {
        let payload: bytes::Bytes = payload.into();
        let mut inner = self.lock();
        let entry_len = (HEADER + payload.len()) as u64;
        let mut current = inner.segments.back().map_or(0, |s| s.bytes);
        if current > 0 && current + entry_len > self.limits.segment_bytes() {
            self.rotate(&mut inner)?;
            current = 0;
        }
        let seq = inner.segments.back().map_or(0, |s| s.seq);
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&records.to_le_bytes());
        header[8..].copy_from_slice(&entry_crc(records, &payload).to_le_bytes());
        let writer = &mut inner.writer;
        // Two writes rather than a copy of the payload behind its header.
        if let Err(e) = writer
            .write_all(&header)
            .and_then(|()| writer.write_all(&payload))
        {
            // Cut whatever part of the entry reached the file, so the next append
            // starts on a boundary.
            let _ = writer.set_len(current);
            return Err(io(&segment_path(&self.dir, seq))(e));
        }
        inner.dirty = true;
        let at = Position {
            segment: seq,
            offset: current,
        };
        if let Some(segment) = inner.segments.back_mut() {
            segment.bytes += entry_len;
            segment.records += records as u64;
        }
        // The memory holds the head of the queue, what goes next; what does not fit is
        // read back from disk when its turn comes. (Keeping the newest instead would
        // serve nothing after an outage: the sender starts at the oldest.)
        let sender = inner.request_buffer + inner.compression;
        if inner.cache_bytes + sender + payload.len() as u64 <= self.limits.memory {
            inner.cache_bytes += payload.len() as u64;
            inner.cache.push_back(Cached {
                at,
                records,
                payload,
            });
        }
        let dropped = self.enforce_disk_limit(&mut inner);
        self.update_gauge(&inner);
        drop(inner);
        self.appended.notify_one();
        if let Some(dropped) = dropped {
            // The read position moved past the dropped segments: written, then they go
            // (had they gone first, a crash would leave `read.pos` naming a missing
            // segment, which `open` also handles).
            if let Err(e) = self.persist(dropped.read) {
                tracing::warn!("{e}");
            }
            self.remove_segments(&dropped.segments);
        }
        Ok(())
    }

    /// Makes every entry appended before the call durable (`fdatasync` of the segments
    /// written since the last sync). The disk is waited for without the lock held, so
    /// appends, peeks and acks go on meanwhile.
    pub fn sync(&self) -> Result<(), QueueError> {
        let (files, current, dir) = {
            let mut inner = self.lock();
            let current = match inner.dirty {
                true => Some(inner.writer.try_clone().map_err(io(&self.dir))?),
                false => None,
            };
            inner.dirty = false;
            let dir = std::mem::take(&mut inner.dir_unsynced);
            (std::mem::take(&mut inner.unsynced), current, dir)
        };
        if dir && let Err(e) = sync_dir(&self.dir) {
            let mut inner = self.lock();
            inner.dir_unsynced = true;
            inner.unsynced.extend(files);
            if let Some(current) = current {
                inner.unsynced.push(current);
            }
            return Err(e);
        }
        let mut failed = None;
        let mut unsynced = Vec::new();
        for file in files.into_iter().chain(current) {
            if failed.is_some() {
                unsynced.push(file);
                continue;
            }
            if let Err(e) = file.sync_data() {
                failed = Some(e);
                unsynced.push(file);
            }
        }
        match failed {
            None => Ok(()),
            Some(e) => {
                // Synced next time; the checkpoints wait until then.
                let mut inner = self.lock();
                inner.unsynced.extend(unsynced);
                Err(io(&self.dir)(e))
            }
        }
    }

    /// Waits until an entry is appended (returns at once if one was appended since the
    /// last wait).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// Reads entries from the acked position on, up to `max_records` records and
    /// `max_bytes` of payload (at least one entry however large).
    pub fn peek(&self, max_records: u64, max_bytes: usize) -> Result<Peeked, QueueError> {
        self.peek_into(bytes::BytesMut::new(), max_records, max_bytes)
    }

    /// `peek` into `body`, a buffer given back by the previous request: the sender
    /// reuses one buffer of `max_bytes` rather than allocating and freeing megabytes
    /// per request, which glibc answers by raising its mmap threshold and keeping the
    /// freed memory in its arenas (the RSS of the export benchmark grew by ~10 MiB).
    pub fn peek_into(
        &self,
        mut body: bytes::BytesMut,
        max_records: u64,
        max_bytes: usize,
    ) -> Result<Peeked, QueueError> {
        body.clear();
        if body.capacity() < max_bytes {
            body.reserve(max_bytes);
        }
        let mut inner = self.lock();
        let mut peeked = Peeked {
            body,
            entries: Vec::new(),
        };
        let mut at = inner.read;
        let mut records = 0u64;
        let mut file: Option<(u64, File)> = None;
        let mut corrupt = None;
        while let Some(index) = inner.segments.iter().position(|s| s.seq == at.segment) {
            let segment = &inner.segments[index];
            let segment_bytes = segment.bytes;
            if at.offset >= segment.bytes {
                match inner.segments.get(index + 1) {
                    Some(next) => {
                        at = Position {
                            segment: next.seq,
                            offset: 0,
                        };
                        continue;
                    }
                    None => break,
                }
            }
            if let Some(index) = inner.cache.iter().position(|c| c.at == at) {
                let cached = &inner.cache[index];
                if !peeked.is_empty()
                    && (records + cached.records as u64 > max_records
                        || peeked.body.len() + cached.payload.len() > max_bytes)
                {
                    break;
                }
                let next = Position {
                    segment: at.segment,
                    offset: at.offset + (HEADER + cached.payload.len()) as u64,
                };
                peeked.body.extend_from_slice(&cached.payload);
                peeked.entries.push(Entry {
                    at,
                    records: cached.records,
                    next,
                });
                records += cached.records as u64;
                // In the request now (and on disk): not twice in memory.
                if let Some(taken) = inner.cache.remove(index) {
                    inner.cache_bytes -= taken.payload.len() as u64;
                }
                at = next;
                continue;
            }
            let path = segment_path(&self.dir, at.segment);
            if file.as_ref().is_none_or(|(seq, _)| *seq != at.segment) {
                file = Some((at.segment, File::open(&path).map_err(io(&path))?));
            }
            let Some((_, f)) = file.as_mut() else { break };
            let mut header = [0u8; HEADER];
            f.seek(SeekFrom::Start(at.offset)).map_err(io(&path))?;
            f.read_exact(&mut header).map_err(io(&path))?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
            if len > MAX_ENTRY as usize || at.offset + (HEADER + len) as u64 > segment_bytes {
                corrupt = Some(at);
                break;
            }
            if !peeked.is_empty()
                && (records + count as u64 > max_records || peeked.body.len() + len > max_bytes)
            {
                break;
            }
            let start = peeked.body.len();
            peeked.body.resize(start + len, 0);
            f.read_exact(&mut peeked.body[start..]).map_err(io(&path))?;
            // Older segments are not checked at open (only the last one can be torn);
            // a bad sector or a stray write shows here.
            if entry_crc(count, &peeked.body[start..]) != crc {
                peeked.body.truncate(start);
                corrupt = Some(at);
                break;
            }
            let next = Position {
                segment: at.segment,
                offset: at.offset + (HEADER + len) as u64,
            };
            peeked.entries.push(Entry {
                at,
                records: count,
                next,
            });
            records += count as u64;
            at = next;
        }
        inner.request_buffer = peeked.body.capacity() as u64;
        drop(inner);
        if let Some(at) = corrupt
            && peeked.is_empty()
        {
            self.skip_corrupt(at);
        }
        Ok(peeked)
    }

    /// The entry at the read position is damaged: the rest of its segment cannot be
    /// walked, so it is given up (counted as dropped, logged) and reading goes on with
    /// the next segment, rather than the sender stopping for good.
    fn skip_corrupt(&self, at: Position) {
        let mut inner = self.lock();
        if inner.read != at {
            return;
        }
        let Some(index) = inner.segments.iter().position(|s| s.seq == at.segment) else {
            return;
        };
        let (seq, bytes, records) = {
            let s = &inner.segments[index];
            (s.seq, s.bytes, s.records)
        };
        let lost = records.saturating_sub(inner.read_records);
        match inner.segments.get(index + 1).map(|s| s.seq) {
            Some(next) => {
                inner.read = Position {
                    segment: next,
                    offset: 0,
                };
                inner.read_records = 0;
            }
            None => {
                inner.read = Position {
                    segment: seq,
                    offset: bytes,
                };
                inner.read_records = records;
            }
        }
        self.metrics.dropped.add(lost);
        tracing::error!(
            file = %segment_path(&self.dir, seq).display(),
            offset = at.offset,
            records = lost,
            "the export queue holds a damaged entry; dropped the rest of its segment"
        );
        inner.read_saved_at = tokio::time::Instant::now();
        let read = inner.read;
        self.update_gauge(&inner);
        drop(inner);
        if let Err(e) = self.persist(read) {
            tracing::warn!("{e}");
        }
    }

    /// Marks everything before `through.next` as sent: persists the read position and
    /// removes segments that are wholly read. Entries the disk limit dropped meanwhile
    /// are skipped.
    pub fn ack(&self, entries: &[Entry]) -> Result<(), QueueError> {
        let mut inner = self.lock();
        let mut moved = false;
        for entry in entries {
            if entry.at != inner.read {
                // Dropped while in flight (the read position jumped past it), or
                // already acked.
                if entry.at < inner.read {
                    continue;
                }
                // The entry starts the next segment: the previous one is all read.
                if entry.at.offset == 0 && entry.at.segment > inner.read.segment {
                    inner.read_records = 0;
                } else {
                    continue;
                }
            }
            inner.read = entry.next;
            inner.read_records += entry.records as u64;
            moved = true;
        }
        if !moved {
            return Ok(());
        }
        while let Some(Cached { at, .. }) = inner.cache.front()
            && *at < inner.read
        {
            if let Some(old) = inner.cache.pop_front() {
                inner.cache_bytes -= old.payload.len() as u64;
            }
        }
        // A wholly read segment that is not the one being written goes.
        let read = inner.read;
        let bytes = inner
            .segments
            .iter()
            .find(|s| s.seq == read.segment)
            .map_or(0, |s| s.bytes);
        if read.offset >= bytes && inner.segments.len() > 1 {
            let next = inner
                .segments
                .iter()
                .find(|s| s.seq > read.segment)
                .map(|s| s.seq);
            if let Some(next) = next {
                inner.read = Position {
                    segment: next,
                    offset: 0,
                };
                inner.read_records = 0;
            }
        }
        let removes_segments = inner.segments.len() > 1
            && inner
                .segments
                .front()
                .is_some_and(|s| s.seq < inner.read.segment);
        let persist = removes_segments || inner.read_saved_at.elapsed() >= READ_PERSIST_INTERVAL;
        if persist {
            inner.read_saved_at = tokio::time::Instant::now();
        }
        let read = inner.read;
        self.update_gauge(&inner);
        drop(inner);
        if !persist {
            return Ok(());
        }
        self.persist(read)?;
        // Segments go only once `read.pos` is past them.
        let mut inner = self.lock();
        let mut gone = Vec::new();
        while inner.segments.len() > 1
            && inner
                .segments
                .front()
                .is_some_and(|s| s.seq < inner.read_saved.segment)
        {
            if let Some(old) = inner.segments.pop_front() {
                gone.push(old.seq);
            }
        }
        drop(inner);
        self.remove_segments(&gone);
        Ok(())
    }

    /// The memory the sender's client keeps for compression between requests, which
    /// counts against `queue.memory` (see `Inner::compression`).
    pub fn set_compression_memory(&self, bytes: u64) {
        self.lock().compression = bytes;
    }

    /// Whether `at` is the oldest entry not yet acked (what `peek` starts from).
    pub fn is_head(&self, at: Position) -> bool {
        self.lock().read == at
    }

    /// Bytes appended and not yet acked.
    pub fn pending_bytes(&self) -> u64 {
        let inner = self.lock();
        pending(&inner)
    }

    /// Records appended and not yet acked.
    pub fn pending_records(&self) -> u64 {
        let inner = self.lock();
        let total: u64 = inner
            .segments
            .iter()
            .filter(|s| s.seq >= inner.read.segment)
            .map(|s| s.records)
            .sum();
        total.saturating_sub(inner.read_records)
    }

    fn update_gauge(&self, inner: &Inner) {
        self.metrics.bytes.set(pending(inner) as f64);
    }

    /// Writes the acked position to `read.pos` if it moved since it was last written:
    /// the sender calls it when the queue is empty and when it stops.
    pub fn save_read(&self) -> Result<(), QueueError> {
        let read = {
            let mut inner = self.lock();
            if inner.read == inner.read_saved {
                return Ok(());
            }
            inner.read_saved_at = tokio::time::Instant::now();
            inner.read
        };
        self.persist(read)
    }

    /// Writes `at` to `read.pos` (write, fsync, rename) unless it holds `at` or a later
    /// position already. Called without the queue's lock held.
    fn persist(&self, at: Position) -> Result<(), QueueError> {
        let _one = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        if self.lock().read_saved >= at {
            return Ok(());
        }
        let path = self.dir.join("read.pos");
        let tmp = self.dir.join("read.pos.tmp");
        let text = format!("{} {}\n", at.segment, at.offset);
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(text.as_bytes()).map_err(io(&tmp))?;
        file.sync_data().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let mut inner = self.lock();
        inner.read_saved = inner.read_saved.max(at);
        Ok(())
    }

    /// Removes the files of segments already taken out of `segments` (wholly acked,
    /// or dropped), after `read.pos` was written past them.
    fn remove_segments(&self, seqs: &[u64]) {
        for seq in seqs {
            let _ = std::fs::remove_file(segment_path(&self.dir, *seq));
        }
    }

    /// Starts a new segment. The one it closes, and the directory naming the new one,
    /// are synced by the next `sync` (before the checkpoints that need them), not here
    /// under the lock. So after a crash an older
    /// segment can end torn too: `open` walks it by its headers, and `peek` finds the
    /// torn entry by its CRC and drops the rest of that segment (counted as dropped,
    /// though its records were never checkpointed and are read again from the logs).
    fn rotate(&self, inner: &mut Inner) -> Result<(), QueueError> {
        let seq = inner.segments.back().map_or(0, |s| s.seq);
        let next = seq + 1;
        let writer = create_segment(&self.dir, next)?;
        inner.dir_unsynced = true;
        let old = std::mem::replace(&mut inner.writer, writer);
        if inner.dirty {
            inner.unsynced.push(old);
        }
        inner.segments.push_back(Segment {
            seq: next,
            bytes: 0,
            records: 0,
        });
        Ok(())
    }

    /// Drops the oldest segments while the disk holds more than the limit; the one
    /// being written stays.
    /// Their files are removed by the caller once the lock is released.
    fn enforce_disk_limit(&self, inner: &mut Inner) -> Option<Dropped> {
        let mut total: u64 = inner.segments.iter().map(|s| s.bytes).sum();
        let mut dropped: Option<Dropped> = None;
        while total > self.limits.disk && inner.segments.len() > 1 {
            let Some(old) = inner.segments.pop_front() else {
                break;
            };
            total -= old.bytes;
            // A segment before the read one was acked (its file waits for `read.pos`).
            let lost = match old.seq.cmp(&inner.read.segment) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => old.records.saturating_sub(inner.read_records),
                std::cmp::Ordering::Greater => old.records,
            };
            inner.cache.retain(|c| c.at.segment != old.seq);
            inner.cache_bytes = inner.cache.iter().map(|c| c.payload.len() as u64).sum();
            if let Some(front) = inner.segments.front()
                && inner.read.segment <= old.seq
            {
                inner.read = Position {
                    segment: front.seq,
                    offset: 0,
                };
                inner.read_records = 0;
            }
            if lost > 0 {
                self.metrics.dropped.add(lost);
                tracing::warn!(
                    dir = %self.dir.display(),
                    records = lost,
                    limit_bytes = self.limits.disk,
                    "export queue full: dropped the oldest records (the collector has been unreachable too long)"
                );
            }
            inner.read_saved_at = tokio::time::Instant::now();
            let dropped = dropped.get_or_insert_with(|| Dropped {
                read: inner.read,
                segments: Vec::new(),
            });
            dropped.read = inner.read;
            dropped.segments.push(old.seq);
        }
        dropped
    }
}

/// Segments the disk limit dropped, and the read position past them: what is left to
/// do on disk once the lock is released.
struct Dropped {
    read: Position,
    segments: Vec<u64>,
}

impl Drop for DiskQueue {
    /// The acked position is written on the way out, so a clean stop sends nothing twice.
    fn drop(&mut self) {
        if let Err(e) = self.save_read() {
            tracing::warn!("{e}");
        }
    }
}

fn pending(inner: &Inner) -> u64 {
    let total: u64 = inner
        .segments
        .iter()
        .filter(|s| s.seq >= inner.read.segment)
        .map(|s| s.bytes)
        .sum();
    total.saturating_sub(inner.read.offset)
}

fn create_segment(dir: &Path, seq: u64) -> Result<File, QueueError> {
    let path = segment_path(dir, seq);
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    Ok(file)
}

/// The directory's entries made durable: a new segment's name must survive a crash.
fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn read_position(path: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(path).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

struct Scan {
    file_len: u64,
    /// The end of the last whole entry.
    valid_len: u64,
    records: u64,
    /// The last entry boundary at or before the persisted read offset (when it is in
    /// this segment), and the records before it.
    boundary_at_or_before: u64,
    records_before: u64,
}

/// Walks a segment's entries. The last segment's payloads are checked against their
/// CRC, and it is cut at the first bad one (the entries a crash tore); older ones are
/// walked by their headers, and `peek` checks their payloads.
fn scan_segment(path: &Path, verify: bool, read: Option<Position>) -> Result<Scan, QueueError> {
    let mut file = File::open(path).map_err(io(path))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    let read_offset = read.map_or(0, |p| p.offset);
    let mut scan = Scan {
        file_len,
        valid_len: 0,
        records: 0,
        boundary_at_or_before: 0,
        records_before: 0,
    };
    let mut payload = Vec::new();
    let mut offset = 0u64;
    loop {
        if offset <= read_offset {
            scan.boundary_at_or_before = offset;
            scan.records_before = scan.records;
        }
        let mut header = [0u8; HEADER];
        if offset + HEADER as u64 > file_len {
            break;
        }
        file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
        file.read_exact(&mut header).map_err(io(path))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let records = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let end = offset + HEADER as u64 + len as u64;
        if len > MAX_ENTRY || end > file_len {
            break;
        }
        if verify {
            payload.resize(len as usize, 0);
            file.read_exact(&mut payload).map_err(io(path))?;
            if entry_crc(records, &payload) != crc {
                break;
            }
        }
        offset = end;
        scan.records += records as u64;
        scan.valid_len = offset;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Telemetry;

    fn metrics() -> QueueMetrics {
        let t = Telemetry::new();
        QueueMetrics {
            bytes: t.gauge("q_bytes", "q", &[]),
            dropped: t.counter("q_dropped_total", "d", &[]),
        }
    }

    fn limits() -> QueueLimits {
        QueueLimits {
            memory: 1 << 20,
            disk: 1 << 30,
        }
    }

    fn payloads(peeked: &Peeked) -> Vec<u8> {
        peeked.body.to_vec()
    }

    #[test]
    fn append_peek_ack_in_order_and_restart_resumes_after_the_ack() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        let q = DiskQueue::open(dir.path(), limits(), m.clone()).unwrap();
        q.append(2, &b"aa"[..]).unwrap();
        q.append(3, &b"bbb"[..]).unwrap();
        q.append(1, &b"c"[..]).unwrap();
        q.sync().unwrap();
        assert_eq!(m.bytes.get(), (3 * HEADER + 6) as f64);
        // At most 5 records per request: the first two entries.
        let p = q.peek(5, 1 << 20).unwrap();
        assert_eq!(payloads(&p), b"aabbb");
        assert_eq!(p.records(), 5);
        // Peeking again without an ack gives the same (a retry).
        assert_eq!(payloads(&q.peek(5, 1 << 20).unwrap()), b"aabbb");
        q.ack(&p.entries[..1]).unwrap();
        assert_eq!(payloads(&q.peek(100, 1 << 20).unwrap()), b"bbbc");
        drop(q);

        // A restart resumes after the acked entry: "bbb" was in flight, it comes again.
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        let p = q.peek(100, 1 << 20).unwrap();
        assert_eq!(payloads(&p), b"bbbc", "read from disk this time");
        q.ack(&p.entries).unwrap();
        assert!(q.peek(100, 1 << 20).unwrap().is_empty());
        assert_eq!(q.pending_bytes(), 0);
        drop(q);
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        assert!(q.peek(100, 1 << 20).unwrap().is_empty());
        q.append(1, &b"d"[..]).unwrap();
        assert_eq!(payloads(&q.peek(100, 1 << 20).unwrap()), b"d");
    }

    #[tokio::test(start_paused = true)]
    async fn acks_reach_read_pos_once_a_second_when_idle_and_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let saved = || read_position(&dir.path().join("read.pos"));
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        for payload in [b"a", b"b", b"c", b"d"] {
            q.append(1, &payload[..]).unwrap();
        }
        let entries = q.peek(100, 1 << 20).unwrap().entries;
        q.ack(&entries[..1]).unwrap();
        assert_eq!(saved(), None, "the clock has not moved: not written yet");
        tokio::time::advance(READ_PERSIST_INTERVAL).await;
        q.ack(&entries[1..2]).unwrap();
        assert_eq!(saved(), Some(entries[1].next), "a second on: written");
        q.ack(&entries[2..3]).unwrap();
        assert_eq!(saved(), Some(entries[1].next));
        q.save_read().unwrap();
        assert_eq!(saved(), Some(entries[2].next), "idle: written at once");
        q.ack(&entries[3..]).unwrap();
        drop(q);
        assert_eq!(saved(), Some(entries[3].next), "closing writes it");
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        assert!(
            q.peek(100, 1 << 20).unwrap().is_empty(),
            "nothing sent twice"
        );
    }

    fn segment_files(dir: &Path) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        seqs
    }

    #[test]
    fn acked_segments_leave_the_disk_only_once_read_pos_is_past_them() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments: 6 entries of 10 KiB each.
        let limits = QueueLimits {
            memory: 1 << 20,
            disk: 512 * 1024,
        };
        let q = DiskQueue::open(dir.path(), limits, metrics()).unwrap();
        for _ in 0..20 {
            q.append(1, vec![7u8; 10 * 1024 - HEADER]).unwrap();
        }
        assert_eq!(segment_files(dir.path()), vec![0, 1, 2, 3]);
        // Acks one entry at a time through the second segment.
        for _ in 0..8 {
            let p = q.peek(1, 1 << 20).unwrap();
            q.ack(&p.entries).unwrap();
            let saved = read_position(&dir.path().join("read.pos"));
            let files = segment_files(dir.path());
            for gone in (0..4).filter(|seq| !files.contains(seq)) {
                assert!(
                    saved.is_some_and(|s| s.segment > gone),
                    "segment {gone} is gone, read.pos says {saved:?}: files go only after it"
                );
            }
        }
        // 8 acked: the first segment (6) is gone and `read.pos` is in the second.
        assert_eq!(segment_files(dir.path()), vec![1, 2, 3]);
        assert_eq!(
            read_position(&dir.path().join("read.pos")).map(|p| p.segment),
            Some(1)
        );
        drop(q);
        let q = DiskQueue::open(dir.path(), limits, metrics()).unwrap();
        assert_eq!(q.pending_records(), 12, "resumes after the acked 8");
    }

    #[test]
    fn the_senders_request_buffer_counts_against_the_memory_bound() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        // The sender's buffer (kept from request to request), reserved by a peek of
        // the empty queue: 600 KiB of the 1 MiB bound.
        let peeked = q
            .peek_into(bytes::BytesMut::new(), 1000, 600 * 1024)
            .unwrap();
        assert!(peeked.is_empty());
        let buffer = peeked.body.capacity() as u64;
        assert!(buffer >= 600 * 1024);
        for _ in 0..10 {
            q.append(1, vec![1u8; 100 * 1024]).unwrap();
        }
        let cached = q.lock().cache_bytes;
        assert!(
            cached + buffer <= limits().memory,
            "{cached} bytes cached beside a {buffer}-byte request buffer: over the bound"
        );
        assert!(cached > 0, "what fits is still kept in memory");
        // Every entry comes back all the same (from disk beyond the memory).
        let peeked = q.peek_into(peeked.body, 1000, 2 << 20).unwrap();
        assert_eq!(peeked.records(), 10);
        assert_eq!(peeked.body.len(), 10 * 100 * 1024);
    }

    #[test]
    fn the_senders_gzip_memory_counts_against_the_memory_bound() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        let gzip = 700 * 1024;
        q.set_compression_memory(gzip);
        for _ in 0..10 {
            q.append(1, vec![1u8; 100 * 1024]).unwrap();
        }
        let cached = q.lock().cache_bytes;
        assert!(
            cached + gzip <= limits().memory,
            "{cached} bytes cached beside {gzip} bytes of gzip state: over the bound"
        );
        assert!(cached > 0, "what fits is still kept in memory");
    }

    #[test]
    fn appends_and_peeks_do_not_wait_for_a_read_pos_write() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        q.append(1, &b"a"[..]).unwrap();
        // A `read.pos` write in progress (its fsync can take tens of milliseconds on a
        // virtual disk): the sink's appends and the sender's peeks go on meanwhile.
        let writing = q.persisting.lock().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let sink = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    q.append(1, i.to_le_bytes().to_vec()).unwrap();
                }
                q.sync().unwrap();
                let peeked = q.peek(1000, 1 << 20).unwrap();
                done.send(peeked.records()).unwrap();
            })
        };
        let records = finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("appends and a peek waited for the read.pos write");
        assert_eq!(records, 101);
        drop(writing);
        sink.join().unwrap();
    }

    #[test]
    fn entries_across_segments_come_back_in_order_from_memory_and_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments; everything fits in memory.
        let limits = QueueLimits {
            memory: 1 << 20,
            disk: 512 * 1024,
        };
        // Sizes vary so that entries of different segments share offsets.
        let entry = |i: u32| {
            let mut p = vec![0u8; 3000 + (i as usize % 3) * 1000];
            p[..4].copy_from_slice(&i.to_le_bytes());
            p
        };
        let drain = |q: &DiskQueue, acks: bool| {
            let mut seen = Vec::new();
            loop {
                let p = q.peek(1, 1 << 20).unwrap();
                if p.is_empty() || seen.len() == 60 {
                    break;
                }
                assert_eq!(p.body.len(), entry(seen.len() as u32).len());
                seen.push(u32::from_le_bytes(p.body[..4].try_into().unwrap()));
                if acks {
                    q.ack(&p.entries).unwrap();
                }
            }
            seen
        };
        // Every entry kept in memory is where the disk has it.
        let q = DiskQueue::open(dir.path(), limits, metrics()).unwrap();
        for i in 0..60 {
            q.append(1, entry(i)).unwrap();
        }
        let cached: Vec<(Position, Vec<u8>)> = q
            .lock()
            .cache
            .iter()
            .map(|c| (c.at, c.payload.to_vec()))
            .collect();
        assert!(cached.len() > 20);
        for (at, payload) in cached {
            let bytes = std::fs::read(segment_path(dir.path(), at.segment)).unwrap();
            let start = at.offset as usize + HEADER;
            assert_eq!(&bytes[start..start + payload.len()], &payload[..], "{at:?}");
        }
        assert_eq!(drain(&q, true), (0..60).collect::<Vec<_>>());
        drop(q);
        // And from disk after a restart, with the same positions.
        let dir2 = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir2.path(), limits, metrics()).unwrap();
        for i in 0..60 {
            q.append(1, entry(i)).unwrap();
        }
        drop(q);
        let q = DiskQueue::open(dir2.path(), limits, metrics()).unwrap();
        assert_eq!(drain(&q, true), (0..60).collect::<Vec<_>>());
    }

    #[test]
    fn byte_limit_per_request_still_sends_one_large_entry() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        q.append(1, vec![7u8; 100]).unwrap();
        q.append(1, &b"x"[..]).unwrap();
        let p = q.peek(100, 10).unwrap();
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.body.len(), 100);
    }

    #[test]
    fn a_torn_last_entry_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        q.append(1, &b"whole"[..]).unwrap();
        q.append(1, &b"also whole"[..]).unwrap();
        q.sync().unwrap();
        drop(q);
        let seg = segment_path(dir.path(), 0);
        let whole = std::fs::metadata(&seg).unwrap().len();
        // kill -9 mid-append: a header and part of the payload.
        let mut f = File::options().append(true).open(&seg).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&1u32.to_le_bytes()).unwrap();
        f.write_all(&0u32.to_le_bytes()).unwrap();
        f.write_all(b"torn").unwrap();
        drop(f);
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
        assert_eq!(payloads(&q.peek(100, 1 << 20).unwrap()), b"wholealso whole");
        drop(q);

        // A whole-length entry whose bytes are wrong (a torn page) is cut too.
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        assert_eq!(payloads(&q.peek(100, 1 << 20).unwrap()), b"whole");
        q.append(1, &b"next"[..]).unwrap();
        assert_eq!(payloads(&q.peek(100, 1 << 20).unwrap()), b"wholenext");
    }

    #[test]
    fn past_the_disk_limit_the_oldest_segments_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        // 64 KiB segments (the minimum), 256 KiB on disk at most.
        let limits = QueueLimits {
            memory: 16 * 1024,
            disk: 256 * 1024,
        };
        let q = DiskQueue::open(dir.path(), limits, m.clone()).unwrap();
        let payload = vec![1u8; 10 * 1024 - HEADER];
        // 6 entries (10 records each) per segment; 40 entries = 7 segments: more than
        // the 4 the limit holds.
        for i in 0..40u32 {
            let mut p = payload.clone();
            p[..4].copy_from_slice(&i.to_le_bytes());
            q.append(10, p.clone()).unwrap();
        }
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
            .count();
        assert!(segments <= 5, "{segments} segments");
        let dropped = m.dropped.get();
        assert!(
            dropped > 0 && dropped.is_multiple_of(60),
            "whole segments: {dropped}"
        );
        // The sender resumes at the oldest entry kept, in order, with nothing missing
        // after it.
        let mut seen = Vec::new();
        loop {
            let p = q.peek(10, 1 << 20).unwrap();
            if p.is_empty() {
                break;
            }
            seen.push(u32::from_le_bytes(p.body[..4].try_into().unwrap()));
            q.ack(&p.entries).unwrap();
        }
        let first = (dropped / 10) as u32;
        assert_eq!(seen, (first..40).collect::<Vec<_>>());
        assert_eq!(m.bytes.get(), 0.0);
    }

    #[test]
    fn entries_in_flight_when_their_segment_is_dropped_are_skipped_on_ack() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        let limits = QueueLimits {
            memory: 0,
            disk: 128 * 1024,
        };
        let q = DiskQueue::open(dir.path(), limits, m.clone()).unwrap();
        let payload = vec![0u8; 30 * 1024];
        q.append(1, payload.clone()).unwrap();
        let in_flight = q.peek(1, 1 << 20).unwrap();
        for _ in 0..10 {
            q.append(1, payload.clone()).unwrap();
        }
        assert!(m.dropped.get() > 0);
        let next = q.peek(1, 1 << 20).unwrap();
        q.ack(&in_flight.entries).unwrap();
        assert_eq!(
            q.peek(1, 1 << 20).unwrap().entries[0].at,
            next.entries[0].at,
            "the stale ack moved nothing"
        );
    }

    #[test]
    fn a_damaged_entry_in_an_older_segment_skips_that_segment_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        let limits = QueueLimits {
            memory: 0,
            disk: 1 << 20,
        };
        let q = DiskQueue::open(dir.path(), limits, m.clone()).unwrap();
        // 20 KiB entries: six per 128 KiB segment (an eighth of the disk limit).
        for i in 0..9u32 {
            let mut p = vec![0u8; 20 * 1024];
            p[..4].copy_from_slice(&i.to_le_bytes());
            q.append(1, p.clone()).unwrap();
        }
        q.sync().unwrap();
        drop(q);
        // A flipped byte in the second entry of the first segment.
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let second = HEADER + 20 * 1024 + HEADER + 100;
        bytes[second] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let q = DiskQueue::open(dir.path(), limits, m.clone()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..20 {
            let p = q.peek(1, 1 << 20).unwrap();
            if let Some(e) = p.entries.first() {
                seen.push(u32::from_le_bytes(p.body[..4].try_into().unwrap()));
                q.ack(std::slice::from_ref(e)).unwrap();
            }
        }
        assert_eq!(seen, [0, 6, 7, 8]);
        assert_eq!(m.dropped.get(), 5);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _q = DiskQueue::open(dir.path(), limits(), metrics()).unwrap();
        let err = DiskQueue::open(dir.path(), limits(), metrics()).unwrap_err();
        assert!(matches!(err, QueueError::Locked(_)), "{err}");
    }
}
