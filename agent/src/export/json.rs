//! Writes a record as one JSON object in the shape SPEC gives for the `file` and `stdout`
//! outputs. JSON-sourced values are copied as they were (they were validated by the
//! parser), so nothing is decoded and re-encoded; plain text is escaped.

use crate::event::{LogBatch, LogRecord, SeverityText, Value, ValueKind};
use crate::parse::time::write_rfc3339;

/// Appends `record` as one line of JSON (with the newline) to `out`.
pub fn write_record(
    out: &mut Vec<u8>,
    batch: &LogBatch,
    record: &LogRecord,
    deployment: Option<&str>,
) {
    let buf = batch.buf.as_bytes();
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(out, record.time());
    out.extend_from_slice(b"\",\"source\":");
    write_text(out, batch.source.as_bytes());
    out.extend_from_slice(b",\"file\":");
    write_text(out, batch.file_path(record).as_bytes());
    out.extend_from_slice(b",\"file_id\":");
    match batch.file_mark(record) {
        Some(mark) => write_text(out, mark.identity.file_id().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"severity_text\":");
    match record.severity_text {
        SeverityText::In(v) => write_value(out, buf, v),
        SeverityText::Static(s) => write_text(out, s.as_bytes()),
        SeverityText::None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"severity_number\":");
    write_u64(out, record.severity_number as u64);
    out.extend_from_slice(b",\"body\":");
    match record.body {
        Some(v) => write_value(out, buf, v),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"attributes\":{");
    for (i, field) in batch.attrs(record).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if field.key_escaped {
            out.push(b'"');
            out.extend_from_slice(&buf[field.key.range()]);
            out.push(b'"');
        } else {
            write_text(out, &buf[field.key.range()]);
        }
        out.push(b':');
        write_value(out, buf, field.value);
    }
    out.extend_from_slice(b"},\"trace_id\":");
    write_opt(out, buf, record.trace_id);
    out.extend_from_slice(b",\"span_id\":");
    write_opt(out, buf, record.span_id);
    out.extend_from_slice(b",\"deployment\":");
    match deployment {
        Some(d) => write_text(out, d.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"parse_error\":");
    write_bool(out, record.flags.parse_error);
    out.extend_from_slice(b",\"truncated\":");
    write_bool(out, record.flags.truncated);
    out.extend_from_slice(b",\"invalid_utf8\":");
    write_bool(out, record.flags.invalid_utf8);
    out.extend_from_slice(b",\"offset\":");
    write_u64(out, record.offset);
    out.extend_from_slice(b"}\n");
}

fn write_opt(out: &mut Vec<u8>, buf: &[u8], value: Option<Value>) {
    match value {
        Some(v) => write_value(out, buf, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_value(out: &mut Vec<u8>, buf: &[u8], value: Value) {
    let raw = &buf[value.span.range()];
    match value.kind {
        ValueKind::Str | ValueKind::StrEscaped => {
            out.push(b'"');
            out.extend_from_slice(raw);
            out.push(b'"');
        }
        ValueKind::Text => write_text(out, raw),
        ValueKind::True => out.extend_from_slice(b"true"),
        ValueKind::False => out.extend_from_slice(b"false"),
        ValueKind::Null => out.extend_from_slice(b"null"),
        ValueKind::Number | ValueKind::Object | ValueKind::Array => out.extend_from_slice(raw),
    }
}

fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes UTF-8 text as a JSON string, escaping quotes, backslashes and controls.
pub fn write_text(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in text.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&text[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileIdentity, FileMark, Span};
    use crate::parse::{Format, LineParser};

    fn render(format: Format, line: &str) -> serde_json::Value {
        let parser = LineParser::new(format, format.default_field_names());
        let mut batch = LogBatch::new("app".into());
        batch.files.push(FileMark {
            source: "app".into(),
            path: "/var/log/app.log".into(),
            identity: FileIdentity {
                dev: 1,
                ino: 2,
                fingerprint_len: 0,
                fingerprint: 0,
                complete: false,
            },
            checkpoint: 0,
            closed: false,
        });
        batch.buf.push_str(line);
        let mut record = LogRecord {
            offset: 42,
            observed_unix_nano: 1,
            ..LogRecord::default()
        };
        parser.parse(
            &mut batch.buf,
            Span::new(0, line.len()),
            &mut batch.fields,
            &mut record,
        );
        let mut out = Vec::new();
        write_record(&mut out, &batch, &record, Some("1.4.2"));
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).expect("output is valid JSON")
    }

    #[test]
    fn structlog_record_in_spec_shape() {
        let v = render(
            Format::Structlog,
            r#"{"event": "req \"x\"", "level": "error", "timestamp": "2026-11-23T19:49:24.5Z", "status": 500, "ctx": {"a": [1]}, "trace_id": "0123456789abcdef0123456789abcdef"}"#,
        );
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-11-23T19:49:24.500000Z", "source": "app", "file": "/var/log/app.log",
                "file_id": "2-0000000000000000",
                "severity_text": "error", "severity_number": 17, "body": "req \"x\"",
                "attributes": {"status": 500, "ctx": {"a": [1]}},
                "trace_id": "0123456789abcdef0123456789abcdef", "span_id": null,
                "deployment": "1.4.2", "parse_error": false, "truncated": false,
                "invalid_utf8": false, "offset": 42
            })
        );
    }

    #[test]
    fn text_is_escaped() {
        let v = render(Format::Structlog, "not json \"quoted\" \\ \u{1} tab\t");
        assert_eq!(v["body"], "not json \"quoted\" \\ \u{1} tab\t");
        assert_eq!(v["parse_error"], true);
    }
}
