//! logfmt: `level=info msg="request finished" status=200 cached`. Keys are bare words;
//! values are bare words or double-quoted strings with backslash escapes; a key with no
//! `=` is a boolean flag (`true`), as in Go's logfmt.

use crate::event::{Field, Span, Value, ValueKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogfmtError;

/// Scans `buf[line]`, pushing one field per pair. Quoted values with escapes are
/// decoded and appended to `buf` so every value is plain text.
pub fn scan(buf: &mut String, line: Span, fields: &mut Vec<Field>) -> Result<(), LogfmtError> {
    let mut i = line.start as usize;
    let end = line.end as usize;
    loop {
        let bytes = buf.as_bytes();
        while i < end && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= end {
            return Ok(());
        }
        let key_start = i;
        while i < end && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() && bytes[i] != b'"' {
            i += 1;
        }
        if i == key_start {
            return Err(LogfmtError);
        }
        let key = Span::new(key_start, i);
        if i >= end || bytes[i] != b'=' {
            if i < end && bytes[i] == b'"' {
                return Err(LogfmtError);
            }
            fields.push(Field {
                key,
                key_escaped: false,
                value: Value {
                    span: Span::new(i, i),
                    kind: ValueKind::True,
                },
            });
            continue;
        }
        i += 1;
        let value = if i < end && bytes[i] == b'"' {
            i += 1;
            let value_start = i;
            let mut has_escape = false;
            while i < end && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    has_escape = true;
                    i += 1;
                }
                i += 1;
            }
            if i >= end {
                return Err(LogfmtError);
            }
            let raw = Span::new(value_start, i);
            i += 1;
            if has_escape {
                Value::text(decode_into(buf, raw))
            } else {
                Value::text(raw)
            }
        } else {
            let value_start = i;
            while i < end && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'"' {
                    return Err(LogfmtError);
                }
                i += 1;
            }
            Value::text(Span::new(value_start, i))
        };
        fields.push(Field {
            key,
            key_escaped: false,
            value,
        });
    }
}

/// Decodes backslash escapes of `buf[raw]` onto the end of `buf`; returns the new span.
fn decode_into(buf: &mut String, raw: Span) -> Span {
    let start = buf.len();
    let text = buf[raw.range()].to_string();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            buf.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => buf.push('\n'),
            Some('t') => buf.push('\t'),
            Some('r') => buf.push('\r'),
            Some(other) => buf.push(other),
            None => buf.push('\\'),
        }
    }
    Span::new(start, buf.len())
}

#[cfg(test)]
mod tests {
    use crate::parse::Format;
    use crate::parse::tests::check;

    #[test]
    fn logfmt_lines() {
        insta::assert_snapshot!(check(Format::Logfmt, r#"time=2026-11-23T19:49:24Z level=warn msg="slow \"query\"" rows=5 cached"#), @r#"
        body=Some("slow \"query\"") sev=13 "warn" time=Some(1795463364000000000) trace=None span=None parse_error=false
          rows=Str("5") (Text)
          cached=Bool(true) (True)
        "#);
        let out = check(Format::Logfmt, r#"msg="unterminated"#);
        assert!(out.contains("parse_error=true"), "{out}");
        let out = check(Format::Logfmt, "   ");
        assert!(out.contains("parse_error=true"), "{out}");
    }
}
