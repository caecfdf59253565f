//! Maps a `LogBatch` to OTLP: `ExportLogsServiceRequest` protobuf bytes. Pure: no IO,
//! no clock.
//!
//! The mapping (SPEC "Log records", OTel's log data model):
//! - `body` = the record's message (structlog `event`), a string;
//! - `severity_number`/`severity_text` as parsed; `time_unix_nano` = the record's own
//!   time, left 0 ("unknown", as the data model says) when it had none, and
//!   `observed_time_unix_nano` = when the agent read it;
//! - every attribute with its JSON type (string, int, double, bool; `null` as an empty
//!   value); nested objects and arrays as their JSON text in a string — a collector
//!   keeps them intact and backends (Loki, Elasticsearch) parse JSON strings, while a
//!   `kvlist` would cost a full parse per record for little gain;
//! - `trace_id`/`span_id` from hex to 16/8 bytes; an id that is not valid hex of the
//!   right length is left out and counted (`EncodeStats::invalid_ids`), never sent
//!   malformed;
//! - `log.file.path`, `log.source` (the `logs:` entry's name), `sidewatch.file_id` and
//!   `sidewatch.offset` (the record's identity: a consumer drops the rare duplicate by
//!   them), and `sidewatch.parse_error`/`truncated`/`invalid_utf8` when set;
//! - the record's `deployment` is the resource's `service.version`: records of
//!   different deployments go in different `ResourceLogs`;
//! - scope `sidewatch` with the crate's version.
//!
//! The protobuf is written by hand, straight from the batch's spans into the output
//! buffer: no `prost` structs per record, no owned string per attribute (the
//! struct-based encoder spent most of the export path's CPU allocating and freeing
//! them; BENCHMARKS "OTLP export"). Fields go in field-number order with proto3's
//! rules (defaults left out, `oneof` members always written), so the bytes are what
//! `prost` would write for the same message; the tests decode them with
//! opentelemetry-proto's types. A length-delimited field gets a placeholder of the
//! length's likely width, and its body is moved only when the length needs another.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::event::{Decoded, LogBatch, LogRecord, SeverityText};

/// Counts from encoding one chunk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncodeStats {
    pub records: u32,
    /// Trace or span ids left out because they were not valid hex of the right length.
    pub invalid_ids: u32,
}

/// Turns batches into OTLP requests, keeping its buffers between calls.
#[derive(Debug)]
pub struct LogEncoder {
    /// The resource attributes every request carries (`service.name`, `host.name`,
    /// `deployment.environment.name`, `OTEL_RESOURCE_ATTRIBUTES`…), as encoded
    /// `Resource.attributes` fields: all of them for records without a deployment…
    resource: BytesMut,
    /// …and all but `service.version` for records with one (theirs is appended).
    resource_unversioned: BytesMut,
    /// The `ScopeLogs.scope` field (`sidewatch` and the crate's version), encoded.
    scope: BytesMut,
    /// Reused per chunk: each record's group (its deployment's index).
    groups: Vec<u16>,
    /// Reused per chunk: the attributes every record of a file carries —
    /// `log.file.path`, `log.source`, `sidewatch.file_id` — encoded once per file of
    /// the batch (file `i`'s are `file_attrs[file_attr_ends[i - 1]..file_attr_ends[i]]`)
    /// and copied into each record, instead of three key-value pairs encoded per record.
    file_attrs: BytesMut,
    file_attr_ends: Vec<usize>,
}

// Field tags (field number << 3 | wire type) of the messages written here.
const LEN: u8 = 2;
const fn tag(field: u8, wire: u8) -> u8 {
    field << 3 | wire
}
/// `ExportLogsServiceRequest.resource_logs`, `ResourceLogs.resource`,
/// `Resource.attributes`, `ScopeLogs.scope`, `KeyValue.key`, `AnyValue.string_value`,
/// `InstrumentationScope.name`: all field 1, length-delimited.
const FIELD1_LEN: u8 = tag(1, LEN);
/// `ResourceLogs.scope_logs`, `ScopeLogs.log_records`, `KeyValue.value`,
/// `InstrumentationScope.version`.
const FIELD2_LEN: u8 = tag(2, LEN);
const RECORD_TIME: u8 = tag(1, 1);
const RECORD_SEVERITY_NUMBER: u8 = tag(2, 0);
const RECORD_SEVERITY_TEXT: u8 = tag(3, LEN);
const RECORD_BODY: u8 = tag(5, LEN);
const RECORD_ATTRIBUTE: u8 = tag(6, LEN);
const RECORD_TRACE_ID: u8 = tag(9, LEN);
const RECORD_SPAN_ID: u8 = tag(10, LEN);
const RECORD_OBSERVED_TIME: u8 = tag(11, 1);
const ANY_BOOL: u8 = tag(2, 0);
const ANY_INT: u8 = tag(3, 0);
const ANY_DOUBLE: u8 = tag(4, 1);

impl LogEncoder {
    pub fn new(resource: &[(String, String)]) -> LogEncoder {
        let mut encoded = BytesMut::new();
        let mut unversioned = BytesMut::new();
        for (key, value) in resource {
            put_kv(
                &mut encoded,
                FIELD1_LEN,
                key,
                Decoded::Str(Cow::Borrowed(value)),
            );
            if key != "service.version" {
                put_kv(
                    &mut unversioned,
                    FIELD1_LEN,
                    key,
                    Decoded::Str(Cow::Borrowed(value)),
                );
            }
        }
        let mut scope = BytesMut::new();
        let at = open(&mut scope, FIELD1_LEN, 1);
        put_str(&mut scope, FIELD1_LEN, "sidewatch");
        put_str(&mut scope, FIELD2_LEN, env!("CARGO_PKG_VERSION"));
        close(&mut scope, at, 1);
        LogEncoder {
            resource: encoded,
            resource_unversioned: unversioned,
            scope,
            groups: Vec::new(),
            file_attrs: BytesMut::new(),
            file_attr_ends: Vec::new(),
        }
    }

    /// Appends the request for `batch.records[range]` to `out` as protobuf bytes.
    pub fn encode(
        &mut self,
        batch: &LogBatch,
        range: std::ops::Range<usize>,
        out: &mut BytesMut,
    ) -> EncodeStats {
        let buf = batch.buf.as_str();
        let records = &batch.records[range];
        let mut stats = EncodeStats::default();
        // One `ResourceLogs` per deployment: a chunk rarely has more than two.
        let mut versions: Vec<Option<Cow<'_, str>>> = Vec::new();
        self.groups.clear();
        for record in records {
            let version = record.deployment.map(|v| v.as_str(buf));
            let group = match versions.iter().position(|v| *v == version) {
                Some(i) => i,
                None => {
                    versions.push(version);
                    versions.len() - 1
                }
            };
            self.groups.push(group as u16);
        }
        self.file_attrs.clear();
        self.file_attr_ends.clear();
        for mark in &batch.files {
            put_file_attrs(
                &mut self.file_attrs,
                &mark.path,
                &batch.source,
                Some(&mark.identity.file_id()),
            );
            self.file_attr_ends.push(self.file_attrs.len());
        }
        // A record of no known file (none in practice): an empty path, no file id.
        put_file_attrs(&mut self.file_attrs, "", &batch.source, None);
        self.file_attr_ends.push(self.file_attrs.len());
        for (group, version) in versions.iter().enumerate() {
            let resource_logs = open(out, FIELD1_LEN, 3);
            let resource = open(out, FIELD1_LEN, 2);
            match version {
                Some(version) => {
                    out.extend_from_slice(&self.resource_unversioned);
                    put_kv(
                        out,
                        FIELD1_LEN,
                        "service.version",
                        Decoded::Str(Cow::Borrowed(version)),
                    );
                }
                None => out.extend_from_slice(&self.resource),
            }
            close(out, resource, 2);
            let scope_logs = open(out, FIELD2_LEN, 3);
            out.extend_from_slice(&self.scope);
            for (record, _) in records
                .iter()
                .zip(&self.groups)
                .filter(|(_, g)| **g as usize == group)
            {
                let at = open(out, FIELD2_LEN, 2);
                self.put_record(batch, record, out, &mut stats);
                close(out, at, 2);
                stats.records += 1;
            }
            close(out, scope_logs, 3);
            close(out, resource_logs, 3);
        }
        stats
    }

    /// One `LogRecord`'s fields, in field-number order.
    fn put_record(
        &self,
        batch: &LogBatch,
        record: &LogRecord,
        out: &mut BytesMut,
        stats: &mut EncodeStats,
    ) {
        let buf = batch.buf.as_str();
        let time = record.time_unix_nano.map_or(0, |t| t.max(0) as u64);
        if time != 0 {
            out.put_u8(RECORD_TIME);
            out.extend_from_slice(&time.to_le_bytes());
        }
        if record.severity_number != 0 {
            out.put_u8(RECORD_SEVERITY_NUMBER);
            put_varint(out, record.severity_number as u64);
        }
        let severity_text = match record.severity_text {
            SeverityText::In(v) => v.as_str(buf),
            SeverityText::Static(s) => Cow::Borrowed(s),
            SeverityText::None => Cow::Borrowed(""),
        };
        if !severity_text.is_empty() {
            put_str(out, RECORD_SEVERITY_TEXT, &severity_text);
        }
        if let Some(body) = record.body {
            put_any(out, RECORD_BODY, &body.decode(buf));
        }
        for field in batch.attrs(record) {
            put_kv(
                out,
                RECORD_ATTRIBUTE,
                &field.key(buf),
                field.value.decode(buf),
            );
        }
        let file = (record.file as usize).min(batch.files.len());
        let start = match file {
            0 => 0,
            i => self.file_attr_ends[i - 1],
        };
        out.extend_from_slice(&self.file_attrs[start..self.file_attr_ends[file]]);
        put_kv(
            out,
            RECORD_ATTRIBUTE,
            "sidewatch.offset",
            Decoded::Int(record.offset as i64),
        );
        for (flag, key) in [
            (record.flags.parse_error, "sidewatch.parse_error"),
            (record.flags.truncated, "sidewatch.truncated"),
            (record.flags.invalid_utf8, "sidewatch.invalid_utf8"),
        ] {
            if flag {
                put_kv(out, RECORD_ATTRIBUTE, key, Decoded::Bool(true));
            }
        }
        if let Some(id) = record.trace_id {
            match hex_bytes::<16>(id.raw(buf)) {
                Some(bytes) => put_bytes(out, RECORD_TRACE_ID, &bytes),
                None => stats.invalid_ids += 1,
            }
        }
        if let Some(id) = record.span_id {
            match hex_bytes::<8>(id.raw(buf)) {
                Some(bytes) => put_bytes(out, RECORD_SPAN_ID, &bytes),
                None => stats.invalid_ids += 1,
            }
        }
        let observed = record.observed_unix_nano.max(0) as u64;
        if observed != 0 {
            out.put_u8(RECORD_OBSERVED_TIME);
            out.extend_from_slice(&observed.to_le_bytes());
        }
    }
}

/// The attributes of every record of one file: `log.file.path`, `log.source` and,
/// when known, `sidewatch.file_id`.
fn put_file_attrs(out: &mut BytesMut, path: &str, source: &str, file_id: Option<&str>) {
    put_kv(
        out,
        RECORD_ATTRIBUTE,
        "log.file.path",
        Decoded::Str(Cow::Borrowed(path)),
    );
    put_kv(
        out,
        RECORD_ATTRIBUTE,
        "log.source",
        Decoded::Str(Cow::Borrowed(source)),
    );
    if let Some(file_id) = file_id {
        put_kv(
            out,
            RECORD_ATTRIBUTE,
            "sidewatch.file_id",
            Decoded::Str(Cow::Borrowed(file_id)),
        );
    }
}

fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Starts a length-delimited field: its tag and `width` placeholder bytes for the
/// length. Returns where the placeholder is, for `close`.
fn open(out: &mut BytesMut, tag: u8, width: usize) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.resize(at + width, 0);
    at
}

/// Ends the field `open` started: writes its length in the placeholder, moving the
/// body when the length takes more or fewer bytes than the placeholder held.
fn close(out: &mut BytesMut, at: usize, width: usize) {
    let body = at + width;
    let len = out.len() - body;
    let needed = varint_len(len as u64);
    if needed != width {
        if needed > width {
            out.resize(out.len() + needed - width, 0);
        }
        out.copy_within(body..body + len, at + needed);
        out.truncate(at + needed + len);
    }
    let mut value = len as u64;
    for byte in &mut out[at..at + needed] {
        *byte = value as u8 & 0x7f | 0x80;
        value >>= 7;
    }
    out[at + needed - 1] &= 0x7f;
}

fn put_bytes(out: &mut BytesMut, tag: u8, bytes: &[u8]) {
    out.put_u8(tag);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut BytesMut, tag: u8, s: &str) {
    put_bytes(out, tag, s.as_bytes());
}

/// The encoded length of an `AnyValue` holding `value`.
fn any_len(value: &Decoded<'_>) -> usize {
    match value {
        Decoded::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Decoded::Json(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Decoded::Int(i) => 1 + varint_len(*i as u64),
        Decoded::Double(_) => 9,
        Decoded::Bool(_) => 2,
        // No value: an empty `AnyValue`.
        Decoded::Null => 0,
    }
}

/// An `AnyValue` field (`tag`) holding `value`: strings as `string_value`, nested
/// JSON as its text, `null` as an `AnyValue` with no value set.
fn put_any(out: &mut BytesMut, tag: u8, value: &Decoded<'_>) {
    out.put_u8(tag);
    put_varint(out, any_len(value) as u64);
    put_any_body(out, value);
}

fn put_any_body(out: &mut BytesMut, value: &Decoded<'_>) {
    match value {
        Decoded::Str(s) => put_str(out, FIELD1_LEN, s),
        Decoded::Json(s) => put_str(out, FIELD1_LEN, s),
        Decoded::Int(i) => {
            out.put_u8(ANY_INT);
            put_varint(out, *i as u64);
        }
        Decoded::Double(f) => {
            out.put_u8(ANY_DOUBLE);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Decoded::Bool(b) => {
            out.put_u8(ANY_BOOL);
            out.put_u8(u8::from(*b));
        }
        Decoded::Null => {}
    }
}

/// A `KeyValue` field (`tag`): the key (left out when empty, as proto3 does) and the
/// value, always present. The framing bytes around the key and the value are put
/// together on the stack and appended at once (this runs ~12 times per record).
fn put_kv(out: &mut BytesMut, tag: u8, key: &str, value: Decoded<'_>) {
    let any = any_len(&value);
    let key_len = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    let body = key_len + 1 + varint_len(any as u64) + any;
    out.reserve(1 + varint_len(body as u64) + body);
    let mut head = Frame::new();
    head.push(tag);
    head.varint(body as u64);
    if !key.is_empty() {
        head.push(FIELD1_LEN);
        head.varint(key.len() as u64);
        out.extend_from_slice(head.bytes());
        out.extend_from_slice(key.as_bytes());
        head = Frame::new();
    }
    head.push(FIELD2_LEN);
    head.varint(any as u64);
    match &value {
        Decoded::Str(_) | Decoded::Json(_) => {
            let s = match &value {
                Decoded::Str(s) => s.as_ref(),
                Decoded::Json(s) => s,
                _ => "",
            };
            head.push(FIELD1_LEN);
            head.varint(s.len() as u64);
            out.extend_from_slice(head.bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Decoded::Int(i) => {
            head.push(ANY_INT);
            head.varint(*i as u64);
            out.extend_from_slice(head.bytes());
        }
        Decoded::Double(f) => {
            head.push(ANY_DOUBLE);
            out.extend_from_slice(head.bytes());
            out.extend_from_slice(&f.to_le_bytes());
        }
        Decoded::Bool(b) => {
            head.push(ANY_BOOL);
            head.push(u8::from(*b));
            out.extend_from_slice(head.bytes());
        }
        Decoded::Null => out.extend_from_slice(head.bytes()),
    }
}

/// A few framing bytes (tags and varint lengths) gathered before one append.
struct Frame {
    buf: [u8; 32],
    len: usize,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            buf: [0; 32],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.push(value as u8);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `N` bytes from `2N` hex digits; `None` for anything else, and for the all-zero id,
/// which OTLP defines as "no id". (The parser takes only hex of the right length as an
/// id and keeps anything else as an attribute; this checks again because the encoder
/// must never send a malformed id.)
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        invalid |= high | low;
        *byte = high << 4 | low & 0x0f;
    }
    (invalid & 0x80 == 0 && out != [0u8; N]).then_some(out)
}

/// Each byte's value as a hex digit, 0x80 for anything else (a lookup, not a match per
/// digit: trace and span ids are on every record of a traced service).
const HEX: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileIdentity, FileMark, LogRecord, Span, Value, ValueKind};
    use crate::parse::{Format, LineParser};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use prost::Message as _;

    /// A batch of parsed structlog lines from one file, each with the given deployment.
    fn batch(lines: &[(&str, Option<&str>)]) -> LogBatch {
        let parser = LineParser::new(Format::Structlog, Format::Structlog.default_field_names());
        let mut batch = LogBatch::new("app".into());
        batch.files.push(FileMark {
            source: "app".into(),
            path: "/var/log/app.log".into(),
            identity: FileIdentity {
                dev: 1,
                ino: 0x2a,
                fingerprint_len: 10,
                fingerprint: 0xabc,
                complete: true,
            },
            checkpoint: 0,
            closed: false,
        });
        let mut offset = 0;
        for (line, deployment) in lines {
            let start = batch.buf.len();
            batch.buf.push_str(line);
            let mut record = LogRecord {
                offset,
                observed_unix_nano: 1_700_000_000_000_000_000,
                ..LogRecord::default()
            };
            offset += line.len() as u64 + 1;
            parser.parse(
                &mut batch.buf,
                Span::new(start, start + line.len()),
                &mut batch.fields,
                &mut record,
            );
            if let Some(d) = deployment {
                let start = batch.buf.len();
                batch.buf.push_str(d);
                record.deployment = Some(Value {
                    span: Span::new(start, batch.buf.len()),
                    kind: ValueKind::Text,
                });
            }
            batch.records.push(record);
        }
        batch
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a V> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn s(v: &str) -> V {
        V::StringValue(v.into())
    }

    #[test]
    fn every_field_is_mapped_and_decodes_back() {
        let batch = batch(&[
            (
                r#"{"event": "request \"finished\"", "level": "error", "timestamp": "2026-11-23T19:49:24.5Z", "status": 500, "ratio": 0.25, "ok": false, "none": null, "ctx": {"a": [1]}, "trace_id": "0123456789abcdef0123456789ABCDEF", "span_id": "0123456789abcdef"}"#,
                Some("1.4.2"),
            ),
            (
                r#"{"event": "boot", "level": "info", "trace_id": "00000000000000000000000000000000", "span_id": "xyz"}"#,
                Some("1.4.3"),
            ),
            ("not json", Some("1.4.2")),
        ]);
        let mut encoder = LogEncoder::new(&[
            ("service.name".into(), "checkout-api".into()),
            ("deployment.environment.name".into(), "production".into()),
            ("host.name".into(), "pod-1".into()),
        ]);
        let mut out = BytesMut::new();
        let stats = encoder.encode(&batch, 0..3, &mut out);
        assert_eq!(
            stats,
            EncodeStats {
                records: 3,
                invalid_ids: 1
            }
        );
        let request = decode_canonical(&out);
        assert_eq!(
            request.resource_logs.len(),
            2,
            "one ResourceLogs per deployment"
        );
        let resources: Vec<Vec<(String, V)>> = request
            .resource_logs
            .iter()
            .map(|rl| {
                rl.resource
                    .as_ref()
                    .unwrap()
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap().value.unwrap()))
                    .collect()
            })
            .collect();
        assert_eq!(
            resources[0],
            [
                ("service.name".to_string(), s("checkout-api")),
                ("deployment.environment.name".into(), s("production")),
                ("host.name".into(), s("pod-1")),
                ("service.version".into(), s("1.4.2")),
            ]
        );
        assert_eq!(resources[1][3], ("service.version".to_string(), s("1.4.3")));
        for rl in &request.resource_logs {
            assert_eq!(rl.scope_logs.len(), 1);
            let scope = rl.scope_logs[0].scope.as_ref().unwrap();
            assert_eq!(scope.name, "sidewatch");
            assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        }
        let first = &request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(first.len(), 2, "both 1.4.2 records, in order");
        let r = &first[0];
        assert_eq!(r.time_unix_nano, 1_795_463_364_500_000_000);
        assert_eq!(r.observed_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(r.severity_number, 17);
        assert_eq!(r.severity_text, "error");
        assert_eq!(
            r.body.as_ref().unwrap().value,
            Some(s("request \"finished\""))
        );
        assert_eq!(
            r.trace_id,
            [
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ]
        );
        assert_eq!(r.span_id, [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        let a = &r.attributes;
        assert_eq!(attr(a, "status"), Some(&V::IntValue(500)));
        assert_eq!(attr(a, "ratio"), Some(&V::DoubleValue(0.25)));
        assert_eq!(attr(a, "ok"), Some(&V::BoolValue(false)));
        assert!(a.iter().any(|kv| kv.key == "none"));
        assert_eq!(attr(a, "none"), None, "null is an empty value");
        assert_eq!(attr(a, "ctx"), Some(&s(r#"{"a": [1]}"#)));
        assert_eq!(attr(a, "log.file.path"), Some(&s("/var/log/app.log")));
        assert_eq!(attr(a, "log.source"), Some(&s("app")));
        assert_eq!(
            attr(a, "sidewatch.file_id"),
            Some(&s("2a-0000000000000abc"))
        );
        assert_eq!(attr(a, "sidewatch.offset"), Some(&V::IntValue(0)));
        assert_eq!(attr(a, "sidewatch.parse_error"), None);
        for key in ["event", "level", "timestamp", "trace_id", "span_id"] {
            assert_eq!(attr(a, key), None, "{key} is mapped to its own field");
        }

        let text = &first[1];
        assert_eq!(text.time_unix_nano, 0, "no time of its own: unknown");
        assert_eq!(text.body.as_ref().unwrap().value, Some(s("not json")));
        assert_eq!(
            attr(&text.attributes, "sidewatch.parse_error"),
            Some(&V::BoolValue(true))
        );
        assert!(
            matches!(attr(&text.attributes, "sidewatch.offset"), Some(V::IntValue(o)) if *o > 0)
        );

        let boot = &request.resource_logs[1].scope_logs[0].log_records[0];
        assert!(
            boot.trace_id.is_empty(),
            "the all-zero id means none: left out"
        );
        assert!(boot.span_id.is_empty());
        // The parser keeps what is not hex as an attribute, so nothing is lost.
        assert_eq!(attr(&boot.attributes, "span_id"), Some(&s("xyz")));
        assert_eq!(boot.severity_number, 9);
    }

    #[test]
    fn a_sub_range_is_encoded_and_buffers_are_reused() {
        let batch = batch(&[
            (r#"{"event": "a"}"#, None),
            (r#"{"event": "b"}"#, None),
            (r#"{"event": "c"}"#, None),
        ]);
        let mut encoder = LogEncoder::new(&[]);
        let mut out = BytesMut::new();
        assert_eq!(encoder.encode(&batch, 1..3, &mut out).records, 2);
        let request = decode_canonical(&out);
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        let bodies: Vec<_> = records
            .iter()
            .map(|r| r.body.clone().unwrap().value.unwrap())
            .collect();
        assert_eq!(bodies, [s("b"), s("c")]);
        assert!(
            request.resource_logs[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .is_empty(),
            "no deployment: no service.version"
        );
        out.clear();
        encoder.encode(&batch, 0..1, &mut out);
        let again = decode_canonical(&out);
        assert_eq!(again.resource_logs.len(), 1);
        assert_eq!(again.resource_logs[0].scope_logs[0].log_records.len(), 1);
    }

    #[test]
    fn hex_ids() {
        assert_eq!(hex_bytes::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(hex_bytes::<2>("0aF"), None);
        assert_eq!(hex_bytes::<2>("0aFg"), None);
        assert_eq!(hex_bytes::<2>("0000"), None);
    }

    /// Decodes `out` and encodes it again with `prost`: the same bytes, so the
    /// hand-written encoder writes canonical protobuf (field order, minimal varints,
    /// proto3 defaults left out), not merely something a lenient decoder accepts.
    fn decode_canonical(out: &[u8]) -> ExportLogsServiceRequest {
        let request = ExportLogsServiceRequest::decode(out).expect("valid protobuf");
        assert_eq!(request.encode_to_vec(), out, "canonical encoding");
        request
    }

    #[test]
    fn the_bytes_are_what_prost_would_write() {
        let long = "x".repeat(20_000);
        let huge = format!(r#"{{"event": "{long}", "level": "warning", "n": -5}}"#);
        let batch = batch(&[
            (r#"{"event": "a"}"#, None),
            (
                r#"{"event": "", "": "empty key", "s": "", "zero": 0, "neg": -1, "f": -0.0, "t": true, "n": null, "esc": "tab\there \u00e9", "arr": [1, {"b": null}]}"#,
                Some("1.0.0"),
            ),
            (&huge, Some("1.0.0")),
            (
                r#"{"event": "b", "level": "info", "timestamp": "1970-01-01T00:00:00Z"}"#,
                None,
            ),
            ("", None),
        ]);
        let mut encoder = LogEncoder::new(&[
            ("service.name".into(), "api".into()),
            ("service.version".into(), "configured".into()),
            ("".into(), "".into()),
        ]);
        let mut out = BytesMut::new();
        assert_eq!(encoder.encode(&batch, 0..5, &mut out).records, 5);
        let request = decode_canonical(&out);
        let unversioned = &request.resource_logs[0];
        assert_eq!(
            unversioned.resource.as_ref().unwrap().attributes[1].value,
            Some(AnyValue {
                value: Some(V::StringValue("configured".into()))
            }),
            "without a deployment the configured service.version stays"
        );
        let records = &request.resource_logs[1].scope_logs[0].log_records;
        let a = &records[0].attributes;
        assert_eq!(attr(a, "s"), Some(&s("")));
        assert_eq!(attr(a, "zero"), Some(&V::IntValue(0)));
        assert_eq!(attr(a, "neg"), Some(&V::IntValue(-1)));
        assert_eq!(attr(a, "t"), Some(&V::BoolValue(true)));
        assert_eq!(attr(a, "esc"), Some(&s("tab\there é")));
        assert_eq!(attr(a, "arr"), Some(&s(r#"[1, {"b": null}]"#)));
        assert_eq!(attr(a, ""), Some(&s("empty key")));
        assert_eq!(records[0].body.as_ref().unwrap().value, Some(s("")));
        assert_eq!(records[1].body.as_ref().unwrap().value, Some(s(&long)));
        assert_eq!(attr(&records[1].attributes, "n"), Some(&V::IntValue(-5)));
        // Appended to what `out` held: a second request, and the two decode as one.
        let before = out.len();
        encoder.encode(&batch, 2..3, &mut out);
        let merged = decode_canonical(&out);
        assert_eq!(merged.resource_logs.len(), 3);
        decode_canonical(&out[before..]);
    }

    #[test]
    fn lengths_at_every_varint_width() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut out = BytesMut::from(&[0xaau8][..]);
            let at = open(&mut out, FIELD1_LEN, 2);
            out.extend(std::iter::repeat_n(7u8, n));
            close(&mut out, at, 2);
            let mut expected = BytesMut::from(&[0xaa, FIELD1_LEN][..]);
            put_varint(&mut expected, n as u64);
            assert_eq!(out.len(), expected.len() + n, "{n}");
            assert_eq!(&out[..expected.len()], expected, "{n}");
            assert!(out[expected.len()..].iter().all(|b| *b == 7), "{n}");
            assert_eq!(varint_len(n as u64), expected.len() - 2, "{n}");
        }
        assert_eq!(varint_len(u64::MAX), 10);
    }
}
