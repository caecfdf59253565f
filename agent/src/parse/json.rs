//! A validating JSON scanner for one log line: it finds the top-level keys and values of
//! an object and records where they are, without building a tree or decoding strings.
//!
//! This is the hot path of the agent (see BENCHMARKS.md): it touches each byte once,
//! skips string bodies with `memchr`, and allocates nothing. It accepts exactly RFC 8259
//! JSON (strings without raw control characters, valid escapes, the number grammar, the
//! three literals) without lone surrogates in `\u` escapes, as serde_json does, with
//! nesting limited to `MAX_DEPTH` so hostile input cannot exhaust the stack or the heap.

use crate::event::{Field, Span, Value, ValueKind};

/// Deeper nesting than this is rejected as a parse error.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError;

/// Scans `buf[line]` as a JSON object. Each top-level member is passed to `on_field`
/// with spans relative to `buf`. Returns an error if the line is not exactly one JSON
/// object (surrounding whitespace allowed).
pub fn scan_object(
    buf: &[u8],
    line: Span,
    mut on_field: impl FnMut(Field),
) -> Result<(), JsonError> {
    let mut s = Scanner {
        b: &buf[..line.end as usize],
        i: line.start as usize,
    };
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.skip_ws();
            s.expect(b'"')?;
            let (key, key_escaped) = s.string_body()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            let value = s.value()?;
            on_field(Field {
                key,
                key_escaped,
                value,
            });
            s.skip_ws();
            match s.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(JsonError),
            }
        }
    }
    s.skip_ws();
    if s.i == s.b.len() {
        Ok(())
    } else {
        Err(JsonError)
    }
}

/// The position of the first byte that ends a run of plain string content: `"`, `\\`
/// or a control character (< 0x20). Eight bytes at a time with SWAR bit tricks: log
/// strings are mostly short, where this beats a SIMD `memchr` call's setup, and it
/// checks for control characters in the same pass.
#[inline]
fn find_special(bytes: &[u8]) -> Option<usize> {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = 0x2222_2222_2222_2222;
    const BACKSLASHES: u64 = 0x5c5c_5c5c_5c5c_5c5c;
    // Exact per-byte tests, no carries between bytes: a byte's high bit in the result is
    // set iff that byte is zero (`zero`) or below 0x20 (`below_space`).
    #[inline]
    fn zero(x: u64) -> u64 {
        !(((x & LO7).wrapping_add(LO7)) | x) & HI
    }
    #[inline]
    fn below_space(x: u64) -> u64 {
        !(((x & LO7).wrapping_add(0x6060_6060_6060_6060)) | x) & HI
    }
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(word);
        let hits = zero(x ^ QUOTES) | zero(x ^ BACKSLASHES) | below_space(x);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(JsonError)
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Scans a string whose opening quote has been consumed. Returns the span of its
    /// contents and whether it holds escapes.
    #[inline]
    fn string_body(&mut self) -> Result<(Span, bool), JsonError> {
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += find_special(&self.b[self.i..]).ok_or(JsonError)?;
            match self.b[self.i] {
                b'"' => {
                    let span = Span::new(start, self.i);
                    self.i += 1;
                    return Ok((span, escaped));
                }
                b'\\' => {}
                // Raw control characters are not allowed inside JSON strings.
                _ => return Err(JsonError),
            }
            escaped = true;
            self.i += 1;
            match self.next() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                Some(b'u') => {
                    // A surrogate must be a high one followed by a low one: a lone
                    // surrogate is no character, serde_json (and so the consumers of the
                    // JSON output, which copies strings as they are) reject it.
                    match self.hex4()? {
                        0xD800..=0xDBFF => {
                            if self.b.get(self.i..self.i + 2) != Some(&b"\\u"[..]) {
                                return Err(JsonError);
                            }
                            self.i += 2;
                            if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                return Err(JsonError);
                            }
                        }
                        0xDC00..=0xDFFF => return Err(JsonError),
                        _ => {}
                    }
                }
                _ => return Err(JsonError),
            }
        }
    }

    /// The four hex digits of a `\u` escape, as a UTF-16 code unit.
    #[inline]
    fn hex4(&mut self) -> Result<u16, JsonError> {
        let hex = self.b.get(self.i..self.i + 4).ok_or(JsonError)?;
        let mut unit = 0u16;
        for &c in hex {
            let digit = (c as char).to_digit(16).ok_or(JsonError)?;
            unit = unit << 4 | digit as u16;
        }
        self.i += 4;
        Ok(unit)
    }

    /// Scans any value and returns its span and kind. Nested containers are validated
    /// without recursion, with an explicit stack bounded by `MAX_DEPTH`.
    fn value(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        match self.peek().ok_or(JsonError)? {
            b'"' => {
                self.i += 1;
                let (span, escaped) = self.string_body()?;
                let kind = if escaped {
                    ValueKind::StrEscaped
                } else {
                    ValueKind::Str
                };
                Ok(Value { span, kind })
            }
            b'{' | b'[' => {
                let kind = if self.b[self.i] == b'{' {
                    ValueKind::Object
                } else {
                    ValueKind::Array
                };
                self.container()?;
                Ok(Value {
                    span: Span::new(start, self.i),
                    kind,
                })
            }
            b't' => self.literal(b"true", ValueKind::True, start),
            b'f' => self.literal(b"false", ValueKind::False, start),
            b'n' => self.literal(b"null", ValueKind::Null, start),
            _ => {
                let kind = match self.number()? {
                    true => ValueKind::Number,
                    // `1e999` is valid JSON but no double: it is kept as its text, a
                    // string, which every consumer of the JSON output and OTLP can take.
                    false => ValueKind::Str,
                };
                Ok(Value {
                    span: Span::new(start, self.i),
                    kind,
                })
            }
        }
    }

    fn literal(&mut self, word: &[u8], kind: ValueKind, start: usize) -> Result<Value, JsonError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(Value {
                span: Span::new(start, self.i),
                kind,
            })
        } else {
            Err(JsonError)
        }
    }

    /// Scans a number; true if it is within a double's range. Only a number with an
    /// exponent or over 300 digits can be out of it, so only those are converted.
    fn number(&mut self) -> Result<bool, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.one_or_more_digits()?;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.one_or_more_digits()?;
        }
        if !exponent && self.i - start <= 300 {
            return Ok(true);
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("");
        Ok(text.parse::<f64>().is_ok_and(f64::is_finite))
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), JsonError> {
        let before = self.i;
        self.digits();
        if self.i == before {
            Err(JsonError)
        } else {
            Ok(())
        }
    }

    /// Validates one object or array starting at `{`/`[`, including everything nested.
    fn container(&mut self) -> Result<(), JsonError> {
        // The stack of open containers: `true` for an object. A fixed array keeps this
        // allocation-free; `MAX_DEPTH` bounds it.
        let mut stack = [false; MAX_DEPTH];
        let mut depth = 0usize;
        // Open the first container.
        let mut opening = true;
        loop {
            if opening {
                let is_object = self.next() == Some(b'{');
                if depth == MAX_DEPTH {
                    return Err(JsonError);
                }
                stack[depth] = is_object;
                depth += 1;
                self.skip_ws();
                let close = if is_object { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.i += 1;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                    opening = false;
                    // Fall through to "after a value" handling below.
                } else {
                    opening = self.member(is_object)?;
                    if opening {
                        continue;
                    }
                }
            }
            // After a value inside the container at `depth - 1`.
            self.skip_ws();
            let is_object = stack[depth - 1];
            match self.next() {
                Some(b',') => {
                    opening = self.member(is_object)?;
                }
                Some(b'}') if is_object => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b']') if !is_object => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => return Err(JsonError),
            }
        }
    }

    /// Scans one member of a container (a `"key": value` pair for an object). Returns
    /// `true` when the value is itself a container that the caller must open.
    fn member(&mut self, in_object: bool) -> Result<bool, JsonError> {
        self.skip_ws();
        if in_object {
            self.expect(b'"')?;
            self.string_body()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
        }
        match self.peek() {
            Some(b'{' | b'[') => Ok(true),
            _ => {
                self.value()?;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &str) -> Result<Vec<(String, String, ValueKind)>, JsonError> {
        let mut out = Vec::new();
        let b = s.as_bytes();
        scan_object(b, Span::new(0, b.len()), |f| {
            out.push((
                s[f.key.range()].to_string(),
                s[f.value.span.range()].to_string(),
                f.value.kind,
            ))
        })?;
        Ok(out)
    }

    #[test]
    fn accepts_what_serde_json_accepts_and_rejects_the_rest() {
        let cases = [
            r#"{}"#,
            r#" { "a" : 1 } "#,
            r#"{"a":"x\"y","b":-0.5e+10,"c":[1,{"d":[]},"e"],"f":{"g":null},"h":true,"i":false}"#,
            r#"{"a":"\u00e9\n"}"#,
            r#"{"a":[[[[]]]]}"#,
            r#"{"a":{}}"#,
            r#"{"a":[]}"#,
            r#"{"a":[1,2,[3,{"b":{"c":[{}]}}]],"z":0}"#,
            "{\"a\":1}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":\"\t\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":tru}",
            "{\"a\" 1}",
            "{\"a\":[1,]}",
            "{\"a\":[1 2]}",
            "{\"a\":{\"b\"}}",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "[1]",
            "\"s\"",
            "{\"a\":\"unterminated}",
            "",
            "{",
            "{\"a\":[}",
            "{\"a\":{]}",
            "{\"a\":-}",
            "{\"a\":1e}",
        ];
        for case in cases {
            let ours = scan(case).is_ok();
            let reference = matches!(
                serde_json::from_str::<serde_json::Value>(case),
                Ok(serde_json::Value::Object(_))
            );
            assert_eq!(ours, reference, "disagreement on {case:?}");
        }
    }

    #[test]
    fn reports_top_level_members_with_kinds() {
        let got = scan(r#"{"event":"hi","n":3,"o":{"x":[1]},"e":"a\"b","t":true}"#).unwrap();
        assert_eq!(
            got,
            vec![
                ("event".into(), "hi".into(), ValueKind::Str),
                ("n".into(), "3".into(), ValueKind::Number),
                ("o".into(), r#"{"x":[1]}"#.into(), ValueKind::Object),
                ("e".into(), r#"a\"b"#.into(), ValueKind::StrEscaped),
                ("t".into(), "true".into(), ValueKind::True),
            ]
        );
    }

    #[test]
    fn find_special_agrees_with_a_plain_search() {
        let mut input: Vec<u8> = (0u8..=255).collect();
        input.extend_from_slice(b"plain text without anything special in it at all");
        for start in 0..input.len() {
            for end in start..(start + 40).min(input.len()) {
                let slice = &input[start..end];
                let want = slice
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
                assert_eq!(find_special(slice), want, "{slice:?}");
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(scan(&deep).is_err());
        let ok = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(scan(&ok).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_serde_json_on_arbitrary_input(s in "\\PC{0,64}") {
            let ours = scan(&s).is_ok();
            let reference = matches!(
                serde_json::from_str::<serde_json::Value>(&s),
                Ok(serde_json::Value::Object(_))
            );
            proptest::prop_assert_eq!(ours, reference);
        }

        #[test]
        fn agrees_with_serde_json_on_json_like_input(s in r#"\{("[a-z\\"]{0,3}":[\[\]{}0-9.eE+\-,"a-z :tn]{0,12},?){0,4}\}"#) {
            let ours = scan(&s).is_ok();
            let reference = matches!(
                serde_json::from_str::<serde_json::Value>(&s),
                Ok(serde_json::Value::Object(_))
            );
            proptest::prop_assert_eq!(ours, reference, "input {:?}", s);
        }
    }
}
