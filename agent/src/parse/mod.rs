//! Parsers turn one line (or, for `text`, one folded multi-line record) into a
//! `LogRecord` whose strings are spans into the batch buffer. Pure: no IO, no clock
//! (the caller stamps `observed_unix_nano`).
//!
//! - `structlog` (default) and `json`: one JSON object per line, scanned by `json`.
//! - `logfmt`: `key=value key="quoted value"`.
//! - `text`: plain lines; Python tracebacks folded into the record before them, uvicorn
//!   and gunicorn access lines split into `method`, `path`, `status`, `client_ip`.
//!
//! A line that is not valid for its format is kept as a text record with
//! `parse_error = true`: nothing is dropped for being malformed.

pub mod json;
pub mod logfmt;
pub mod text;
pub mod time;

use crate::event::{Field, LogRecord, SeverityText, Span, Value, ValueKind};

/// The log formats a source can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Structlog,
    Json,
    Logfmt,
    Text,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["structlog", "json", "logfmt", "text"];

    pub fn name(self) -> &'static str {
        match self {
            Format::Structlog => "structlog",
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Text => "text",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "structlog" => Format::Structlog,
            "json" => Format::Json,
            "logfmt" => Format::Logfmt,
            "text" => Format::Text,
            _ => return None,
        })
    }

    /// The keys a format reads its well-known fields from, unless the config says
    /// otherwise.
    pub fn default_field_names(self) -> FieldNames {
        let (message, time) = match self {
            Format::Structlog => ("event", "timestamp"),
            Format::Json => ("message", "time"),
            Format::Logfmt => ("msg", "time"),
            Format::Text => ("message", "time"),
        };
        FieldNames {
            message: message.into(),
            level: "level".into(),
            time: time.into(),
            trace_id: "trace_id".into(),
            span_id: "span_id".into(),
        }
    }
}

/// Which record keys hold the message, level, time and trace correlation.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldNames {
    pub message: String,
    pub level: String,
    pub time: String,
    pub trace_id: String,
    pub span_id: String,
}

/// What a parser made of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Parsed,
    /// Not valid for the format: kept as a text record flagged `parse_error`.
    Malformed,
}

/// A configured parser for one source.
#[derive(Clone, Debug)]
pub struct LineParser {
    format: Format,
    names: FieldNames,
    /// Bit `n` is set when a well-known key is `n` bytes long: most attribute keys are
    /// rejected by one AND before any byte comparison (keys of 64+ bytes always compare).
    special_lengths: u64,
}

impl LineParser {
    pub fn new(format: Format, names: FieldNames) -> LineParser {
        let special_lengths = [
            &names.message,
            &names.level,
            &names.time,
            &names.trace_id,
            &names.span_id,
        ]
        .iter()
        .fold(0u64, |mask, name| mask | length_bit(name.len()));
        LineParser {
            format,
            names,
            special_lengths,
        }
    }

    #[inline]
    fn may_be_special(&self, key: &[u8]) -> bool {
        self.special_lengths & length_bit(key.len()) != 0
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Parses `buf[line]` into `record`, pushing attributes onto `fields`. Derived text
    /// (a decoded logfmt value) may be appended to `buf`; existing spans stay valid.
    pub fn parse(
        &self,
        buf: &mut String,
        line: Span,
        fields: &mut Vec<Field>,
        record: &mut LogRecord,
    ) -> Outcome {
        record.line = line;
        let attrs_start = fields.len();
        let outcome = match self.format {
            Format::Structlog | Format::Json => {
                self.parse_json(buf.as_bytes(), line, fields, record)
            }
            Format::Logfmt => self.parse_logfmt(buf, line, fields, record),
            Format::Text => {
                text::parse_record(buf, line, fields, record);
                Outcome::Parsed
            }
        };
        if outcome == Outcome::Malformed {
            fields.truncate(attrs_start);
            *record = LogRecord {
                file: record.file,
                offset: record.offset,
                observed_unix_nano: record.observed_unix_nano,
                flags: record.flags,
                ..LogRecord::default()
            };
            record.line = line;
            // A stray non-JSON line is usually a Python warning or a traceback printed
            // to the same file: the text parser still finds its level and time.
            text::parse_record(buf, line, fields, record);
            record.flags.parse_error = true;
        }
        record.attrs = attrs_start as u32..fields.len() as u32;
        outcome
    }

    fn parse_json(
        &self,
        buf: &[u8],
        line: Span,
        fields: &mut Vec<Field>,
        record: &mut LogRecord,
    ) -> Outcome {
        let names = &self.names;
        let result = json::scan_object(buf, line, |field| {
            let key = &buf[field.key.range()];
            if !field.key_escaped
                && self.may_be_special(key)
                && take_special(names, key, field.value, buf, record)
            {
                return;
            }
            fields.push(field);
        });
        match result {
            Ok(()) => Outcome::Parsed,
            Err(_) => Outcome::Malformed,
        }
    }

    fn parse_logfmt(
        &self,
        buf: &mut String,
        line: Span,
        fields: &mut Vec<Field>,
        record: &mut LogRecord,
    ) -> Outcome {
        let start = fields.len();
        if logfmt::scan(buf, line, fields).is_err() || fields.len() == start {
            return Outcome::Malformed;
        }
        // Move the well-known keys out of the attributes.
        let mut kept = start;
        for i in start..fields.len() {
            let field = fields[i];
            let bytes = buf.as_bytes();
            let key = &bytes[field.key.range()];
            if !take_special(&self.names, key, field.value, bytes, record) {
                fields[kept] = field;
                kept += 1;
            }
        }
        fields.truncate(kept);
        Outcome::Parsed
    }
}

/// The bit for a key length in `LineParser::special_lengths` (all lengths of 63 and
/// more share the top bit).
#[inline]
fn length_bit(len: usize) -> u64 {
    1u64 << len.min(63)
}

/// If `key` is one of the well-known keys, stores the value in `record` and returns
/// `true`. Values of an unexpected type stay attributes.
#[inline]
fn take_special(
    names: &FieldNames,
    key: &[u8],
    value: Value,
    buf: &[u8],
    record: &mut LogRecord,
) -> bool {
    let is_string = matches!(
        value.kind,
        ValueKind::Str | ValueKind::StrEscaped | ValueKind::Text
    );
    if key == names.message.as_bytes() {
        record.body = Some(value);
        true
    } else if key == names.level.as_bytes() && is_string {
        record.severity_text = SeverityText::In(value);
        record.severity_number = severity_number(&buf[value.span.range()]);
        true
    } else if key == names.time.as_bytes() {
        let raw = &buf[value.span.range()];
        let parsed = match value.kind {
            ValueKind::Number => std::str::from_utf8(raw).ok().and_then(time::parse_epoch),
            _ if is_string => time::parse_iso8601(raw),
            _ => None,
        };
        match parsed {
            Some(nanos) => {
                record.time_unix_nano = Some(nanos);
                true
            }
            // An unreadable time stays an attribute so nothing is lost.
            None => false,
        }
    } else if (key == names.trace_id.as_bytes() || key == names.span_id.as_bytes())
        && value.kind == ValueKind::Str
        && is_hex_id(&buf[value.span.range()])
    {
        if key == names.trace_id.as_bytes() {
            record.trace_id = Some(value);
        } else {
            record.span_id = Some(value);
        }
        true
    } else {
        false
    }
}

/// A W3C trace id (32 hex digits) or span id (16). Branch-free over the bytes: the
/// early-exit `all(is_ascii_hexdigit)` was a visible share of the hot path.
fn is_hex_id(raw: &[u8]) -> bool {
    const HEX: [u8; 256] = {
        let mut table = [0u8; 256];
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            if b.is_ascii_hexdigit() {
                table[c] = 1;
            }
            c += 1;
        }
        table
    };
    (raw.len() == 32 || raw.len() == 16) && raw.iter().fold(1u8, |ok, &c| ok & HEX[c as usize]) == 1
}

/// Maps a level name (structlog's, Python logging's, or common aliases; any case) to
/// the OpenTelemetry severity number. Unknown names map to 0 (unspecified).
pub fn severity_number(level: &[u8]) -> u8 {
    const LEVELS: &[(&str, u8)] = &[
        ("trace", 1),
        ("debug", 5),
        ("info", 9),
        ("notice", 10),
        ("warning", 13),
        ("warn", 13),
        ("error", 17),
        ("exception", 17),
        ("err", 17),
        ("critical", 21),
        ("fatal", 21),
        ("crit", 21),
        ("alert", 22),
        ("emergency", 23),
    ];
    LEVELS
        .iter()
        .find(|(name, _)| level.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, number)| *number)
        .unwrap_or(0)
}

/// The canonical lowercase name of a severity number, for metrics labels.
pub fn severity_label(number: u8) -> &'static str {
    match number {
        0 => "unknown",
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warning",
        17..=20 => "error",
        _ => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogBatch;

    /// Parses `line` with `format` and renders what came out, for table-driven checks.
    pub(crate) fn check(format: Format, line: &str) -> String {
        let parser = LineParser::new(format, format.default_field_names());
        let mut batch = LogBatch::default();
        batch.buf.push_str(line);
        let mut record = LogRecord::default();
        let span = Span::new(0, line.len());
        parser.parse(&mut batch.buf, span, &mut batch.fields, &mut record);
        let buf = &batch.buf;
        let mut out = String::new();
        let show = |v: &Option<Value>| v.map(|v| v.as_str(buf).into_owned());
        out += &format!(
            "body={:?} sev={} {:?} time={:?} trace={:?} span={:?} parse_error={}\n",
            show(&record.body),
            record.severity_number,
            match record.severity_text {
                SeverityText::In(v) => v.as_str(buf).into_owned(),
                SeverityText::Static(s) => s.to_string(),
                SeverityText::None => String::new(),
            },
            record.time_unix_nano,
            show(&record.trace_id),
            show(&record.span_id),
            record.flags.parse_error,
        );
        for field in batch.attrs(&record) {
            out += &format!(
                "  {}={:?} ({:?})\n",
                field.key(buf),
                field.value.decode(buf),
                field.value.kind
            );
        }
        out
    }

    #[test]
    fn structlog_line_from_the_corpus() {
        let line = r#"{"logger": "service.api", "version": "1.4.2", "request_id": "a1", "trace_id": "0123456789abcdef0123456789abcdef", "span_id": "0123456789abcdef", "method": "GET", "path": "/api/cart", "status": 200, "duration_ms": 35.2, "event": "request finished", "level": "info", "timestamp": "2026-11-23T19:49:24.123456Z"}"#;
        insta::assert_snapshot!(check(Format::Structlog, line), @r#"
        body=Some("request finished") sev=9 "info" time=Some(1795463364123456000) trace=Some("0123456789abcdef0123456789abcdef") span=Some("0123456789abcdef") parse_error=false
          logger=Str("service.api") (Str)
          version=Str("1.4.2") (Str)
          request_id=Str("a1") (Str)
          method=Str("GET") (Str)
          path=Str("/api/cart") (Str)
          status=Int(200) (Number)
          duration_ms=Double(35.2) (Number)
        "#);
    }

    #[test]
    fn hex_ids() {
        assert!(is_hex_id(b"0123456789abcdefABCDEF0123456789"));
        assert!(is_hex_id(b"0123456789abcdef"));
        assert!(!is_hex_id(b"0123456789abcdeg"));
        assert!(!is_hex_id(b"0123456789abcde"));
        assert!(!is_hex_id(b"0123456789abcdef0123456789abcde\xff"));
    }

    #[test]
    fn structlog_levels_map_to_otel_severity() {
        for (level, number) in [
            ("debug", 5),
            ("info", 9),
            ("warning", 13),
            ("error", 17),
            ("critical", 21),
            ("exception", 17),
            ("WARNING", 13),
            ("bogus", 0),
        ] {
            let line = format!(r#"{{"event":"x","level":"{level}"}}"#);
            let out = check(Format::Structlog, &line);
            assert!(out.contains(&format!("sev={number} ")), "{level}: {out}");
        }
    }

    #[test]
    fn epoch_times_and_odd_types_are_handled() {
        let out = check(
            Format::Structlog,
            r#"{"event":{"nested":1},"level":5,"timestamp":1795463364.5,"trace_id":"xyz"}"#,
        );
        insta::assert_snapshot!(out, @r#"
        body=Some("{\"nested\":1}") sev=0 "" time=Some(1795463364500000000) trace=None span=None parse_error=false
          level=Int(5) (Number)
          trace_id=Str("xyz") (Str)
        "#);
    }

    #[test]
    fn malformed_json_becomes_a_flagged_text_record() {
        let out = check(Format::Structlog, r#"{"event": "cut off", "lev"#);
        assert!(
            out.contains(r#"body=Some("{\"event\": \"cut off\", \"lev")"#),
            "{out}"
        );
        assert!(out.contains("parse_error=true"), "{out}");
        let out = check(Format::Structlog, "WARNING: something printed by a library");
        assert!(out.contains("sev=13"), "{out}");
        assert!(out.contains("parse_error=true"), "{out}");
    }
}
