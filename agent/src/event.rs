//! The record types that flow between components: a `LogBatch` holds many log records
//! whose text lives in one buffer, so the hot path allocates per batch, not per line.
//!
//! Every string a record refers to is a `Span` into `LogBatch::buf`. Parsers record where
//! things are and what kind of JSON value they are; consumers decode on demand (see
//! `Value::decode`). This keeps every attribute while paying for a decode only where a
//! sink actually needs the decoded form.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// A byte range `[start, end)` into `LogBatch::buf`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// What a span holds. `Str` spans exclude the quotes; `StrEscaped` contains JSON escapes
/// that must be decoded; `Object`/`Array`/`Number` spans are raw, valid JSON text; `Text`
/// is plain text that was never JSON (a text line, a logfmt value) and needs escaping on
/// output but no decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Str,
    StrEscaped,
    Text,
    Number,
    True,
    False,
    Null,
    Object,
    Array,
}

/// A value inside a batch: where it is and how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    pub span: Span,
    pub kind: ValueKind,
}

/// One attribute of a record. Keys are JSON strings (`escaped` when they hold escapes)
/// or plain text (logfmt, access-log fields), which never need decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub key: Span,
    pub key_escaped: bool,
    pub value: Value,
}

/// A value decoded for a consumer that needs typed data (an exporter).
#[derive(Debug, PartialEq)]
pub enum Decoded<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Bool(bool),
    Null,
    /// A nested object or array, as raw JSON text.
    Json(&'a str),
}

impl Value {
    pub fn text(span: Span) -> Value {
        Value {
            span,
            kind: ValueKind::Text,
        }
    }

    /// The value's text as it is in the buffer (no quotes for strings).
    pub fn raw<'a>(&self, buf: &'a str) -> &'a str {
        // Spans always start and end at ASCII delimiters, so this never fails; the
        // fallback keeps it panic-free anyway.
        buf.get(self.span.range()).unwrap_or("")
    }

    /// Decodes the value the way an exporter needs it: strings unescaped, numbers typed.
    pub fn decode<'a>(&self, buf: &'a str) -> Decoded<'a> {
        let raw = self.raw(buf);
        match self.kind {
            ValueKind::Str | ValueKind::Text => Decoded::Str(Cow::Borrowed(raw)),
            ValueKind::StrEscaped => Decoded::Str(Cow::Owned(unescape_json(raw))),
            ValueKind::Number => match raw.parse::<i64>() {
                Ok(i) => Decoded::Int(i),
                Err(_) => Decoded::Double(raw.parse::<f64>().unwrap_or(f64::NAN)),
            },
            ValueKind::True => Decoded::Bool(true),
            ValueKind::False => Decoded::Bool(false),
            ValueKind::Null => Decoded::Null,
            ValueKind::Object | ValueKind::Array => Decoded::Json(raw),
        }
    }

    /// The value as a string, decoding escapes only when there are some. Numbers,
    /// booleans and nested JSON come back as their JSON text.
    pub fn as_str<'a>(&self, buf: &'a str) -> Cow<'a, str> {
        match self.kind {
            ValueKind::StrEscaped => Cow::Owned(unescape_json(self.raw(buf))),
            _ => Cow::Borrowed(self.raw(buf)),
        }
    }
}

impl Field {
    pub fn key<'a>(&self, buf: &'a str) -> Cow<'a, str> {
        let raw = buf.get(self.key.range()).unwrap_or("");
        if self.key_escaped {
            Cow::Owned(unescape_json(raw))
        } else {
            Cow::Borrowed(raw)
        }
    }
}

/// Decodes the inside of a JSON string that the parser has already validated. Lone
/// surrogates become U+FFFD, as `String::from_utf8_lossy` would do for bad bytes.
pub fn unescape_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    let mut plain_start = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[plain_start..i]);
        let esc = bytes.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        match esc {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => {
                let hi = hex4(bytes, i);
                i += 4;
                let ch = if (0xD800..0xDC00).contains(&hi)
                    && bytes.get(i) == Some(&b'\\')
                    && bytes.get(i + 1) == Some(&b'u')
                {
                    let lo = hex4(bytes, i + 2);
                    if (0xDC00..0xE000).contains(&lo) {
                        i += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                    } else {
                        None
                    }
                } else {
                    char::from_u32(hi)
                };
                out.push(ch.unwrap_or('\u{FFFD}'));
            }
            other => out.push(other as char),
        }
        plain_start = i.min(bytes.len());
    }
    out.push_str(&raw[plain_start.min(raw.len())..]);
    out
}

fn hex4(bytes: &[u8], at: usize) -> u32 {
    let mut v = 0u32;
    for k in 0..4 {
        let d = match bytes.get(at + k) {
            Some(c @ b'0'..=b'9') => c - b'0',
            Some(c @ b'a'..=b'f') => c - b'a' + 10,
            Some(c @ b'A'..=b'F') => c - b'A' + 10,
            _ => 0,
        };
        v = v * 16 + d as u32;
    }
    v
}

/// Text that is either in the batch or a constant (a severity name a parser derived).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeverityText {
    #[default]
    None,
    In(Value),
    Static(&'static str),
}

/// Flags a record carries about how faithfully it was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordFlags {
    /// The line was not valid for the source's format and is kept as text.
    pub parse_error: bool,
    /// The line was longer than `max_line_bytes` and was cut.
    pub truncated: bool,
    /// The line held bytes that are not UTF-8; they were replaced by U+FFFD.
    pub invalid_utf8: bool,
}

/// One log record. Its strings are spans into the batch it belongs to.
#[derive(Clone, Debug, Default)]
pub struct LogRecord {
    /// Index into `LogBatch::files`: which file the record came from.
    pub file: u32,
    /// Byte offset of the record's first line in that file.
    pub offset: u64,
    /// The whole record text (the line, or the folded lines).
    pub line: Span,
    /// The record's own time, when it had a readable one.
    pub time_unix_nano: Option<i64>,
    /// When the agent read it.
    pub observed_unix_nano: i64,
    pub severity_number: u8,
    pub severity_text: SeverityText,
    pub body: Option<Value>,
    pub trace_id: Option<Value>,
    pub span_id: Option<Value>,
    /// Range into `LogBatch::fields`.
    pub attrs: Range<u32>,
    /// The version the record belongs to: its own version field, else the deployment
    /// live when it was written (set by the sink stage, not the parser).
    pub deployment: Option<Value>,
    pub flags: RecordFlags,
}

impl LogRecord {
    pub fn time(&self) -> i64 {
        self.time_unix_nano.unwrap_or(self.observed_unix_nano)
    }
}

/// Identity of a file across renames and restarts: device and inode, plus a fingerprint
/// of its first line so that a new file which reuses a deleted file's inode is not
/// mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    /// How many leading bytes the fingerprint covers: the first line with its newline,
    /// at most 256 bytes (0 for a file seen empty).
    pub fingerprint_len: u32,
    pub fingerprint: u64,
    /// The first line was whole (or 256 bytes long) when fingerprinted, so the
    /// fingerprint is final.
    #[serde(default)]
    pub complete: bool,
}

impl FileIdentity {
    /// A stable name for the file's content across renames and restarts (`file_id` in
    /// records): its inode and first-line fingerprint, so every generation of a rotated
    /// `app.log` has its own.
    pub fn file_id(&self) -> String {
        format!("{:x}-{:016x}", self.ino, self.fingerprint)
    }
}

/// Where reading a file has got to, carried with the batch so that a sink can
/// acknowledge it once the batch's records are durable.
#[derive(Clone, Debug)]
pub struct FileMark {
    pub source: Arc<str>,
    pub path: Arc<str>,
    pub identity: FileIdentity,
    /// Every record of this file before this offset has been emitted.
    pub checkpoint: u64,
    /// The file is finished (rotated away and idle, or deleted): forget its checkpoint.
    pub closed: bool,
}

impl FileMark {
    /// The mark of records that come from no tailed file (`replay`, `sidewatch test`):
    /// it names the `file` label and is never committed.
    pub fn unchecked(source: Arc<str>, path: &str) -> FileMark {
        FileMark {
            source,
            path: Arc::from(path),
            identity: FileIdentity {
                dev: 0,
                ino: 0,
                fingerprint_len: 0,
                fingerprint: 0,
                complete: true,
            },
            checkpoint: 0,
            closed: false,
        }
    }
}

/// Records read from one source, with their text in one buffer.
#[derive(Debug, Default)]
pub struct LogBatch {
    pub source: Arc<str>,
    /// The text of every record. A `String`: lines are validated (or converted lossily)
    /// once, when they enter, so consumers slice it without validating again.
    pub buf: String,
    pub records: Vec<LogRecord>,
    pub fields: Vec<Field>,
    pub files: Vec<FileMark>,
}

/// The text a new batch has room for: a file source's full batch (`BATCH_BYTES` plus
/// the chunk that filled it) fits without reallocating.
pub const BATCH_TEXT_CAPACITY: usize = 320 * 1024;

impl LogBatch {
    pub fn new(source: Arc<str>) -> LogBatch {
        LogBatch {
            source,
            buf: String::with_capacity(BATCH_TEXT_CAPACITY),
            records: Vec::with_capacity(1024),
            fields: Vec::with_capacity(16 * 1024),
            files: Vec::new(),
        }
    }

    pub fn attrs(&self, record: &LogRecord) -> &[Field] {
        &self.fields[record.attrs.start as usize..record.attrs.end as usize]
    }

    pub fn file_mark(&self, record: &LogRecord) -> Option<&FileMark> {
        self.files.get(record.file as usize)
    }

    pub fn file_path(&self, record: &LogRecord) -> &str {
        self.files
            .get(record.file as usize)
            .map(|mark| &*mark.path)
            .unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.files.is_empty()
    }

    /// Empties the batch but keeps its allocations, for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records.clear();
        self.fields.clear();
        self.files.clear();
    }
}

/// One health probe result: what `probes:` produce for the rules (`probe_success`,
/// `probe_duration_seconds`, `probe_http_status_code`), `/metrics` and deployment
/// detection (`version`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProbeSample {
    pub probe: Arc<str>,
    /// When the request was sent.
    pub time_unix_nano: i64,
    pub success: bool,
    /// From sending the request to the end of the body (or the failure).
    pub duration_seconds: f64,
    /// The response's status, when there was a response.
    pub status_code: Option<u16>,
    /// The `version_from` value of the body, when configured and present.
    pub version: Option<String>,
    /// Why the probe failed (connection refused, timeout, status 503, `$.status` was
    /// "degraded", latency 812ms over 500ms…).
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_every_escape() {
        assert_eq!(unescape_json(r#"a\"b\\c\/d\n\t"#), "a\"b\\c/d\n\t");
        assert_eq!(unescape_json(r"\u00e9\ud83d\ude00"), "é😀");
        assert_eq!(unescape_json(r"\ud83d x"), "\u{FFFD} x");
        assert_eq!(unescape_json("plain"), "plain");
    }
}
