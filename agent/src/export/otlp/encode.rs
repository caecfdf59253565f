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

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::event::{Decoded, LogBatch, SeverityText};

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
    /// `deployment.environment.name`, `OTEL_RESOURCE_ATTRIBUTES`…).
    resource: Vec<KeyValue>,
    scope: InstrumentationScope,
    /// Reused across calls: one `ResourceLogs` per deployment of the chunk.
    request: ExportLogsServiceRequest,
}

impl LogEncoder {
    pub fn new(resource: &[(String, String)]) -> LogEncoder {
        LogEncoder {
            resource: resource
                .iter()
                .map(|(k, v)| key_value(k.clone(), string_value(v.clone())))
                .collect(),
            scope: InstrumentationScope {
                name: "sidewatch".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
            request: ExportLogsServiceRequest::default(),
        }
    }

    /// Appends the request for `batch.records[range]` to `out` as protobuf bytes.
    pub fn encode(
        &mut self,
        batch: &LogBatch,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> EncodeStats {
        let buf = batch.buf.as_str();
        let mut stats = EncodeStats::default();
        self.request.resource_logs.clear();
        // Which `ResourceLogs` holds which deployment: a chunk rarely has more than two.
        let mut versions: Vec<Option<String>> = Vec::new();
        for record in &batch.records[range] {
            let version = record.deployment.map(|v| v.as_str(buf).into_owned());
            let index = match versions.iter().position(|v| *v == version) {
                Some(i) => i,
                None => {
                    self.request
                        .resource_logs
                        .push(self.resource_logs(version.as_deref()));
                    versions.push(version);
                    versions.len() - 1
                }
            };
            let mut otlp = OtlpLogRecord {
                time_unix_nano: record.time_unix_nano.map_or(0, |t| t.max(0) as u64),
                observed_time_unix_nano: record.observed_unix_nano.max(0) as u64,
                severity_number: record.severity_number as i32,
                severity_text: match record.severity_text {
                    SeverityText::In(v) => v.as_str(buf).into_owned(),
                    SeverityText::Static(s) => s.to_string(),
                    SeverityText::None => String::new(),
                },
                body: record.body.map(|v| any_value(v.decode(buf))),
                ..Default::default()
            };
            let attrs = batch.attrs(record);
            otlp.attributes.reserve(attrs.len() + 4);
            for field in attrs {
                otlp.attributes.push(key_value(
                    field.key(buf).into_owned(),
                    any_value(field.value.decode(buf)),
                ));
            }
            otlp.attributes.push(key_value(
                "log.file.path".into(),
                string_value(batch.file_path(record).to_string()),
            ));
            otlp.attributes.push(key_value(
                "log.source".into(),
                string_value(batch.source.to_string()),
            ));
            if let Some(mark) = batch.file_mark(record) {
                otlp.attributes.push(key_value(
                    "sidewatch.file_id".into(),
                    string_value(mark.identity.file_id()),
                ));
            }
            otlp.attributes.push(key_value(
                "sidewatch.offset".into(),
                AnyValue {
                    value: Some(any_value::Value::IntValue(record.offset as i64)),
                },
            ));
            for (flag, key) in [
                (record.flags.parse_error, "sidewatch.parse_error"),
                (record.flags.truncated, "sidewatch.truncated"),
                (record.flags.invalid_utf8, "sidewatch.invalid_utf8"),
            ] {
                if flag {
                    otlp.attributes.push(key_value(
                        key.into(),
                        AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        },
                    ));
                }
            }
            if let Some(id) = record.trace_id {
                match hex_bytes::<16>(id.raw(buf)) {
                    Some(bytes) => otlp.trace_id = bytes.to_vec(),
                    None => stats.invalid_ids += 1,
                }
            }
            if let Some(id) = record.span_id {
                match hex_bytes::<8>(id.raw(buf)) {
                    Some(bytes) => otlp.span_id = bytes.to_vec(),
                    None => stats.invalid_ids += 1,
                }
            }
            self.request.resource_logs[index].scope_logs[0]
                .log_records
                .push(otlp);
            stats.records += 1;
        }
        out.reserve(self.request.encoded_len());
        // Encoding into a `Vec` cannot fail: it grows as needed.
        let _ = self.request.encode(out);
        stats
    }

    fn resource_logs(&self, version: Option<&str>) -> ResourceLogs {
        let mut attributes = self.resource.clone();
        if let Some(version) = version {
            attributes.retain(|kv| kv.key != "service.version");
            attributes.push(key_value(
                "service.version".into(),
                string_value(version.to_string()),
            ));
        }
        ResourceLogs {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(self.scope.clone()),
                log_records: Vec::new(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

fn key_value(key: String, value: AnyValue) -> KeyValue {
    KeyValue {
        key,
        value: Some(value),
        ..Default::default()
    }
}

fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn any_value(decoded: Decoded<'_>) -> AnyValue {
    use any_value::Value as V;
    AnyValue {
        value: match decoded {
            Decoded::Str(s) => Some(V::StringValue(s.into_owned())),
            Decoded::Int(i) => Some(V::IntValue(i)),
            Decoded::Double(f) => Some(V::DoubleValue(f)),
            Decoded::Bool(b) => Some(V::BoolValue(b)),
            Decoded::Null => None,
            Decoded::Json(s) => Some(V::StringValue(s.to_string())),
        },
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
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(text[2 * i])? << 4 | digit(text[2 * i + 1])?;
    }
    (out != [0u8; N]).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileIdentity, FileMark, LogRecord, Span, Value, ValueKind};
    use crate::parse::{Format, LineParser};
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;

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
        let mut out = Vec::new();
        let stats = encoder.encode(&batch, 0..3, &mut out);
        assert_eq!(
            stats,
            EncodeStats {
                records: 3,
                invalid_ids: 1
            }
        );
        let request = ExportLogsServiceRequest::decode(out.as_slice()).unwrap();
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
        let mut out = Vec::new();
        assert_eq!(encoder.encode(&batch, 1..3, &mut out).records, 2);
        let request = ExportLogsServiceRequest::decode(out.as_slice()).unwrap();
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
        let again = ExportLogsServiceRequest::decode(out.as_slice()).unwrap();
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
}
