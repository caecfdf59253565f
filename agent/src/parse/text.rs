//! Plain-text lines, made useful without configuration for Python services: a level and
//! time at the start of the line are read (Python logging, uvicorn, gunicorn), uvicorn
//! and gunicorn access lines yield `method`, `path`, `status` and `client_ip`, and a
//! Python traceback is folded into the record before it (`Folder`), with the traceback
//! as the `exception` attribute and its class as `exception_type`.

use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::event::{Field, LogRecord, SeverityText, Span, Value, ValueKind};
use crate::parse::{severity_number, time};

const TRACEBACK_HEADER: &[u8] = b"Traceback (most recent call last):";

/// uvicorn: `INFO:     127.0.0.1:54321 - "GET /api/cart HTTP/1.1" 200 OK`
///
/// `status` is written to the JSON output as a number, unquoted, so it must be JSON's
/// number grammar: ASCII digits (`\d` would take any Unicode digit) and no leading zero.
static UVICORN_ACCESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:[A-Z]+:\s+)?(?P<client_ip>\[?[0-9A-Fa-f.:]+\]?):\d+ - "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>[1-9][0-9]{2})"#)
        .expect("uvicorn access regex is valid")
});

/// gunicorn's default access format: `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s ...`
/// (`status` as in `UVICORN_ACCESS`).
static GUNICORN_ACCESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?P<client_ip>[0-9A-Fa-f.:]+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>[1-9][0-9]{2}) "#)
        .expect("gunicorn access regex is valid")
});

/// A level word at the start: `ERROR:root:msg`, `[2026-…] [12] [INFO] msg`,
/// `2026-11-23 19:49:24,123 WARNING msg`.
static LEADING_LEVEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\[(?P<gtime>[^\]]+)\] \[\d+\] \[(?P<glevel>[A-Z]+)\]|(?P<atime>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?)\s+-?\s*(?P<alevel>[A-Z]+)\b|(?P<plevel>DEBUG|INFO|WARNING|ERROR|CRITICAL):)")
        .expect("level regex is valid")
});

/// Parses one text record (possibly several folded lines joined by `\n`).
pub fn parse_record(buf: &mut String, line: Span, fields: &mut Vec<Field>, record: &mut LogRecord) {
    // First find everything (the buffer is only read), then append the derived keys.
    let mut found: Vec<(&'static str, Value)> = Vec::new();
    {
        let text = &buf.as_bytes()[line.range()];
        let first_len = memchr::memchr(b'\n', text).unwrap_or(text.len());
        let base = line.start as usize;
        let first_text = &text[..first_len];
        record.body = Some(Value::text(Span::new(base, base + first_len)));
        let span_of = |m: regex::bytes::Match<'_>| Span::new(base + m.start(), base + m.end());

        if let Some(caps) = UVICORN_ACCESS
            .captures(first_text)
            .or_else(|| GUNICORN_ACCESS.captures(first_text))
        {
            for name in ["method", "path", "status", "client_ip"] {
                if let Some(m) = caps.name(name) {
                    let kind = if name == "status" {
                        ValueKind::Number
                    } else {
                        ValueKind::Text
                    };
                    found.push((
                        name,
                        Value {
                            span: span_of(m),
                            kind,
                        },
                    ));
                }
            }
            if let Some(t) = caps.name("time") {
                record.time_unix_nano = time::parse_clf(t.as_bytes());
            }
            record.severity_number = 9;
            record.severity_text = SeverityText::Static("info");
        }
        if let Some(caps) = LEADING_LEVEL.captures(first_text) {
            if let Some(level) = caps
                .name("glevel")
                .or(caps.name("alevel"))
                .or(caps.name("plevel"))
            {
                let number = severity_number(level.as_bytes());
                if number != 0 {
                    record.severity_number = number;
                    record.severity_text = SeverityText::In(Value::text(span_of(level)));
                }
            }
            if let Some(t) = caps.name("atime") {
                record.time_unix_nano = time::parse_iso8601(t.as_bytes());
            } else if let Some(t) = caps.name("gtime") {
                record.time_unix_nano = time::parse_spaced_offset(t.as_bytes());
            }
        }

        // A folded traceback: everything from its header on is the exception.
        if let Some(at) = memchr::memmem::find(text, TRACEBACK_HEADER) {
            let traceback = &text[at..];
            found.push((
                "exception",
                Value::text(Span::new(base + at, line.end as usize)),
            ));
            if let Some((start, end)) = exception_class(traceback) {
                found.push((
                    "exception_type",
                    Value::text(Span::new(base + at + start, base + at + end)),
                ));
            }
            if record.severity_number == 0 {
                record.severity_number = 17;
                record.severity_text = SeverityText::Static("error");
            }
        }
    }
    for (name, value) in found {
        let key_start = buf.len();
        buf.push_str(name);
        fields.push(Field {
            key: Span::new(key_start, buf.len()),
            key_escaped: false,
            value,
        });
    }
}

/// The exception class named by the traceback's last unindented line, without its
/// module path (`sqlalchemy.exc.OperationalError: …` → `OperationalError`), as a byte
/// range of `traceback`.
fn exception_class(traceback: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    let mut last = None;
    for line in traceback.split(|&c| c == b'\n') {
        if !line.is_empty() && !line.starts_with(b" ") && !line.starts_with(b"\t") {
            last = Some((line_start, line));
        }
        line_start += line.len() + 1;
    }
    let (line_start, line) = last?;
    let end = memchr::memchr(b':', line).unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() || name.contains(&b' ') {
        return None;
    }
    let start = memchr::memrchr(b'.', name).map(|p| p + 1).unwrap_or(0);
    Some((line_start + start, line_start + end))
}

/// Where fold state stands after a line, deciding whether the next line may continue
/// the same record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Folder {
    #[default]
    Normal,
    /// Inside `Traceback (most recent call last):`, before the exception line.
    InTraceback,
    /// After the exception line: a chained-exception note may follow.
    AfterException,
    /// After "During handling of the above exception…": a new traceback follows.
    Chained,
}

impl Folder {
    /// Returns `true` when `line` continues the current record, updating the state.
    pub fn continues(&mut self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let indented = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        let chain_note = line.starts_with(b"During handling of the above exception")
            || line.starts_with(b"The above exception was the direct cause");
        let (continues, next) = match *self {
            _ if line == TRACEBACK_HEADER => (true, Folder::InTraceback),
            Folder::Normal => (false, Folder::Normal),
            Folder::InTraceback if indented || line.is_empty() => (true, Folder::InTraceback),
            Folder::InTraceback => (true, Folder::AfterException),
            Folder::AfterException | Folder::Chained if chain_note => (true, Folder::Chained),
            Folder::AfterException | Folder::Chained if line.is_empty() => (true, *self),
            Folder::Chained => (false, Folder::Normal),
            Folder::AfterException => (false, Folder::Normal),
        };
        *self = if continues { next } else { Folder::Normal };
        continues
    }

    /// Whether the record cannot be complete yet (a traceback has not reached its
    /// exception line), so it must wait for more input rather than be emitted.
    pub fn expects_more(self) -> bool {
        matches!(self, Folder::InTraceback | Folder::Chained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Format;
    use crate::parse::tests::check;

    #[test]
    fn access_lines_yield_request_fields() {
        insta::assert_snapshot!(check(Format::Text, r#"INFO:     127.0.0.1:54321 - "GET /api/cart?x=1 HTTP/1.1" 200 OK"#), @r#"
        body=Some("INFO:     127.0.0.1:54321 - \"GET /api/cart?x=1 HTTP/1.1\" 200 OK") sev=9 "INFO" time=None trace=None span=None parse_error=false
          method=Str("GET") (Text)
          path=Str("/api/cart?x=1") (Text)
          status=Int(200) (Number)
          client_ip=Str("127.0.0.1") (Text)
        "#);
        insta::assert_snapshot!(check(Format::Text, r#"10.0.0.7 - - [23/Nov/2026:19:49:24 +0000] "POST /api/checkout HTTP/1.1" 502 12 "-" "curl/8.0""#), @r#"
        body=Some("10.0.0.7 - - [23/Nov/2026:19:49:24 +0000] \"POST /api/checkout HTTP/1.1\" 502 12 \"-\" \"curl/8.0\"") sev=9 "info" time=Some(1795463364000000000) trace=None span=None parse_error=false
          method=Str("POST") (Text)
          path=Str("/api/checkout") (Text)
          status=Int(502) (Number)
          client_ip=Str("10.0.0.7") (Text)
        "#);
    }

    #[test]
    fn levels_and_times_at_the_start_of_a_line() {
        let out = check(Format::Text, "2026-11-23 19:49:24,500 ERROR payment failed");
        assert!(
            out.contains(r#"sev=17 "ERROR" time=Some(1795463364500000000)"#),
            "{out}"
        );
        let out = check(
            Format::Text,
            "[2026-11-23 19:49:24 +0000] [7] [INFO] Booting worker",
        );
        assert!(
            out.contains(r#"sev=9 "INFO" time=Some(1795463364000000000)"#),
            "{out}"
        );
        let out = check(Format::Text, "just words");
        assert!(out.contains("sev=0"), "{out}");
    }

    #[test]
    fn a_folded_traceback_becomes_the_exception() {
        let record = "ERROR:app:payment failed\nTraceback (most recent call last):\n  File \"/app/x.py\", line 3, in f\n    pay()\nsqlalchemy.exc.OperationalError: timeout";
        insta::assert_snapshot!(check(Format::Text, record), @r#"
        body=Some("ERROR:app:payment failed") sev=17 "ERROR" time=None trace=None span=None parse_error=false
          exception=Str("Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in f\n    pay()\nsqlalchemy.exc.OperationalError: timeout") (Text)
          exception_type=Str("OperationalError") (Text)
        "#);
    }

    #[test]
    fn folder_keeps_tracebacks_with_their_record() {
        let lines = [
            ("ERROR:app:boom", false),
            ("Traceback (most recent call last):", true),
            ("  File \"a.py\", line 1, in <module>", true),
            ("ValueError: bad", true),
            ("", true),
            (
                "During handling of the above exception, another exception occurred:",
                true,
            ),
            ("", true),
            ("Traceback (most recent call last):", true),
            ("  File \"b.py\", line 2, in g", true),
            ("KeyError: 'x'", true),
            ("INFO:app:next record", false),
            ("  indented but not in a traceback", false),
        ];
        let mut folder = Folder::default();
        for (line, want) in lines {
            assert_eq!(folder.continues(line.as_bytes()), want, "{line:?}");
        }
        let mut folder = Folder::default();
        folder.continues(b"Traceback (most recent call last):");
        assert!(folder.expects_more());
        folder.continues(b"ValueError: x");
        assert!(!folder.expects_more());
    }
}
