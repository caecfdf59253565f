//! The tokens of the rule expression language: identifiers, numbers, durations, quoted
//! strings (with Go/PromQL escapes) and operators, each with its byte span in the text.

use super::parser::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// `[a-zA-Z_:][a-zA-Z0-9_:.]*`: metric, label, field and function names and keywords.
    /// Dots are lexed into identifiers so that field names such as `http.method` are one
    /// token; the parser rejects them where PromQL does not allow them.
    Ident,
    Number(f64),
    /// `5m`, `1h30m`: only the shape is checked here, the parser validates the units.
    Duration,
    /// A quoted string, unescaped.
    Str(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `=`
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    /// `|`
    Pipe,
    /// `|=`
    PipeEq,
    /// `|~`
    PipeRe,
    Eof,
    /// Lexing stopped here; the parser reports `Lexed::error` when it reaches this token,
    /// so an earlier syntax error is still reported first.
    Invalid,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) start: usize,
    pub(super) end: usize,
}

pub(super) struct Lexed {
    /// Never empty: it always ends with `Tok::Eof` or `Tok::Invalid`.
    pub(super) tokens: Vec<Token>,
    /// The error behind a trailing `Tok::Invalid`.
    pub(super) error: Option<ParseError>,
}

/// The letters a duration may contain (`ms s m h d w y`).
const DURATION_LETTERS: &[u8] = b"mshdwy";

pub(super) fn lex(text: &str) -> Lexed {
    let mut tokens = Vec::new();
    let mut lexer = Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    loop {
        match lexer.next_token() {
            Ok(Some(token)) => tokens.push(token),
            Ok(None) => {
                // End of input: the end-of-expression token sits right after the last
                // real token, so an error about it points at the end of the expression
                // and not at trailing blank lines or comments.
                let end = tokens.last().map_or(0, |t: &Token| t.end);
                tokens.push(Token {
                    tok: Tok::Eof,
                    start: end,
                    end,
                });
                return Lexed {
                    tokens,
                    error: None,
                };
            }
            Err(error) => {
                tokens.push(Token {
                    tok: Tok::Invalid,
                    start: error.offset,
                    end: error.offset,
                });
                return Lexed {
                    tokens,
                    error: Some(error),
                };
            }
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    /// The character at a byte offset; `pos` only ever stops at character boundaries.
    fn char_at(&self, at: usize) -> Option<char> {
        self.text.get(at..).and_then(|s| s.chars().next())
    }

    fn skip_blanks_and_comments(&mut self) {
        while let Some(b) = self.byte(self.pos) {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if b == b'#' {
                while let Some(b) = self.byte(self.pos) {
                    if b == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, ParseError> {
        self.skip_blanks_and_comments();
        let start = self.pos;
        let Some(b) = self.byte(start) else {
            return Ok(None);
        };
        let next = self.byte(start + 1);
        let (tok, len) = match b {
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'%' => (Tok::Percent, 1),
            b'^' => (Tok::Caret, 1),
            b'=' => match next {
                Some(b'=') => (Tok::EqEq, 2),
                Some(b'~') => (Tok::Re, 2),
                _ => (Tok::Assign, 1),
            },
            b'!' => match next {
                Some(b'=') => (Tok::Ne, 2),
                Some(b'~') => (Tok::NotRe, 2),
                _ => return Err(self.unexpected_char(start)),
            },
            b'>' if next == Some(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'<' if next == Some(b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'|' => match next {
                Some(b'=') => (Tok::PipeEq, 2),
                Some(b'~') => (Tok::PipeRe, 2),
                _ => (Tok::Pipe, 1),
            },
            b'"' | b'\'' | b'`' => return self.string(start, b).map(Some),
            b'0'..=b'9' => return self.number(start).map(Some),
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                return self.number(start).map(Some);
            }
            b if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {
                let mut end = start + 1;
                while self
                    .byte(end)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'.'))
                {
                    end += 1;
                }
                (Tok::Ident, end - start)
            }
            _ => return Err(self.unexpected_char(start)),
        };
        self.pos = start + len;
        Ok(Some(Token {
            tok,
            start,
            end: self.pos,
        }))
    }

    fn unexpected_char(&self, at: usize) -> ParseError {
        let shown = self.char_at(at).map_or_else(String::new, |c| c.to_string());
        ParseError::new(at, format!("unexpected character {shown:?}"))
    }

    /// A number (`12`, `0.5`, `1e3`, `0x1f`) or a duration (`5m`, `1h30m`). The whole
    /// run of letters, digits and dots is taken first and then classified, so `5x`
    /// is one bad token rather than a number followed by a metric name.
    fn number(&mut self, start: usize) -> Result<Token, ParseError> {
        let hex =
            self.byte(start) == Some(b'0') && matches!(self.byte(start + 1), Some(b'x' | b'X'));
        let mut end = start;
        while let Some(c) = self.byte(end) {
            let exponent_sign = matches!(c, b'+' | b'-')
                && !hex
                && end > start
                && matches!(self.byte(end - 1), Some(b'e' | b'E'));
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exponent_sign {
                end += 1;
            } else {
                break;
            }
        }
        self.pos = end;
        let run = self.text.get(start..end).unwrap_or_default();
        let token = |tok| Ok(Token { tok, start, end });
        if hex {
            let digits = run.get(2..).unwrap_or_default();
            if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_hexdigit()) {
                // Accumulated as a float: a literal too long for u64 is still a number.
                let value = digits
                    .chars()
                    .filter_map(|c| c.to_digit(16))
                    .fold(0.0, |acc, d| acc * 16.0 + f64::from(d));
                return token(Tok::Number(value));
            }
        } else if run
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            if let Ok(value) = run.parse::<f64>() {
                return token(Tok::Number(value));
            }
        } else if run
            .bytes()
            .all(|c| c.is_ascii_digit() || DURATION_LETTERS.contains(&c))
        {
            return token(Tok::Duration);
        }
        if run.bytes().any(|c| DURATION_LETTERS.contains(&c)) && !hex {
            return Err(ParseError::new(start, format!("invalid duration {run:?}"))
                .with_hint("write whole numbers of units, like 1h30m or 1500ms"));
        }
        Err(ParseError::new(start, format!("invalid number {run:?}")))
    }

    /// A string in double or single quotes with Go escapes, or a raw string in
    /// backticks. Besides Go's escapes, `\u{…}` and a lone `\0` are accepted because
    /// that is how `Debug` (and so the canonical printing in `ast.rs`) writes them.
    fn string(&mut self, start: usize, quote: u8) -> Result<Token, ParseError> {
        let unterminated = || ParseError::new(start, "unterminated string");
        if quote == b'`' {
            let body_start = start + 1;
            let len = self
                .bytes
                .get(body_start..)
                .and_then(|rest| rest.iter().position(|&c| c == b'`'))
                .ok_or_else(unterminated)?;
            let body = self
                .text
                .get(body_start..body_start + len)
                .ok_or_else(unterminated)?;
            self.pos = body_start + len + 1;
            return Ok(Token {
                tok: Tok::Str(body.to_string()),
                start,
                end: self.pos,
            });
        }
        let mut out: Vec<u8> = Vec::new();
        let mut i = start + 1;
        loop {
            let Some(c) = self.byte(i) else {
                return Err(unterminated());
            };
            match c {
                b'\n' => {
                    return Err(unterminated().with_hint(
                        "a quoted string ends on its line; use a raw `…` string for text with line breaks",
                    ));
                }
                b'\\' => i = self.escape(i, &mut out)?,
                c if c == quote => break,
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        self.pos = i + 1;
        let value = String::from_utf8(out)
            .map_err(|_| ParseError::new(start, "string is not valid utf-8 after its escapes"))?;
        Ok(Token {
            tok: Tok::Str(value),
            start,
            end: self.pos,
        })
    }

    /// Decodes the escape at `at` (a backslash) into `out`; returns the offset after it.
    fn escape(&self, at: usize, out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let Some(c) = self.byte(at + 1) else {
            return Err(ParseError::new(at, "unterminated string"));
        };
        let simple = match c {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'\'' | b'"' | b'`' => Some(c),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            return Ok(at + 2);
        }
        let invalid = || {
            // Shown as written, except that a control character after the backslash is
            // escaped so the message stays on one line.
            let shown: String = self
                .char_at(at + 1)
                .map_or_else(String::new, |c| c.escape_debug().collect());
            ParseError::new(at, format!("invalid escape sequence \"\\{shown}\"")).with_hint(
                "a backslash starts an escape: write \\\\ for a backslash, or use a raw `…` string for regular expressions",
            )
        };
        match c {
            b'x' => {
                let value = self.hex_digits(at + 2, 2).ok_or_else(invalid)?;
                out.push(u8::try_from(value).map_err(|_| invalid())?);
                Ok(at + 4)
            }
            b'0'..=b'7' => {
                let octal = self
                    .bytes
                    .get(at + 1..at + 4)
                    .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
                match octal {
                    Some(digits) => {
                        let value = digits
                            .iter()
                            .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                        out.push(u8::try_from(value).map_err(|_| invalid())?);
                        Ok(at + 4)
                    }
                    // `\0` alone is how Rust's `Debug` writes NUL.
                    None if c == b'0' => {
                        out.push(0);
                        Ok(at + 2)
                    }
                    None => Err(invalid()),
                }
            }
            b'u' if self.byte(at + 2) == Some(b'{') => {
                let digits_start = at + 3;
                let len = (0..7)
                    .find(|&n| self.byte(digits_start + n) == Some(b'}'))
                    .filter(|&n| n > 0)
                    .ok_or_else(invalid)?;
                let value = self.hex_digits(digits_start, len).ok_or_else(invalid)?;
                push_char(out, value).ok_or_else(invalid)?;
                Ok(digits_start + len + 1)
            }
            b'u' | b'U' => {
                let len = if c == b'u' { 4 } else { 8 };
                let value = self.hex_digits(at + 2, len).ok_or_else(invalid)?;
                push_char(out, value).ok_or_else(invalid)?;
                Ok(at + 2 + len)
            }
            _ => Err(invalid()),
        }
    }

    /// Exactly `len` hex digits at `at`.
    fn hex_digits(&self, at: usize, len: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at + len)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            let digit = char::from(d).to_digit(16)?;
            acc.checked_mul(16)?.checked_add(digit)
        })
    }
}

/// Appends a Unicode code point as UTF-8; `None` for surrogates and values past U+10FFFF.
fn push_char(out: &mut Vec<u8>, value: u32) -> Option<()> {
    let c = char::from_u32(value)?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok> {
        lex(text).tokens.into_iter().map(|t| t.tok).collect()
    }

    fn string(text: &str) -> Result<String, String> {
        let lexed = lex(text);
        match (lexed.error, lexed.tokens.first().map(|t| &t.tok)) {
            (Some(e), _) => Err(format!("{}: {e}", e.offset)),
            (None, Some(Tok::Str(s))) => Ok(s.clone()),
            (None, other) => Err(format!("not a string: {other:?}")),
        }
    }

    #[test]
    fn operators_take_the_longest_match() {
        assert_eq!(
            kinds("= == =~ != !~ > >= < <= | |= |~"),
            vec![
                Tok::Assign,
                Tok::EqEq,
                Tok::Re,
                Tok::Ne,
                Tok::NotRe,
                Tok::Gt,
                Tok::Ge,
                Tok::Lt,
                Tok::Le,
                Tok::Pipe,
                Tok::PipeEq,
                Tok::PipeRe,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers_durations_and_names() {
        assert_eq!(
            kinds("1 0.5 .5 1e3 1E-2 0x1f 5m 1h30m 250ms http:errors:ratio5m http.method # note"),
            vec![
                Tok::Number(1.0),
                Tok::Number(0.5),
                Tok::Number(0.5),
                Tok::Number(1000.0),
                Tok::Number(0.01),
                Tok::Number(31.0),
                Tok::Duration,
                Tok::Duration,
                Tok::Duration,
                Tok::Ident,
                Tok::Ident,
                Tok::Eof
            ]
        );
        let lexed = lex("1 + 5x");
        assert_eq!(
            lexed.error.map(|e| (e.offset, e.message)),
            Some((4, "invalid number \"5x\"".to_string()))
        );
    }

    #[test]
    fn end_of_input_sits_after_the_last_token() {
        let lexed = lex("sum(\n  # trailing comment\n\n");
        assert_eq!(
            lexed.tokens.last().map(|t| (t.start, &t.tok)),
            Some((4, &Tok::Eof))
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(string(r#""a\"b\\c\n\t""#), Ok("a\"b\\c\n\t".to_string()));
        assert_eq!(
            string(r"'it\'s \x41\101\u00e9\U0001F600'"),
            Ok("it's AAé😀".to_string())
        );
        assert_eq!(
            string(r#""\u{301}\0x\012""#),
            Ok("\u{301}\0x\n".to_string())
        );
        assert_eq!(string(r"`raw \d+ \n`"), Ok(r"raw \d+ \n".to_string()));
        assert_eq!(string(r#""\d+""#), Err(r#"1: invalid escape sequence "\d" (a backslash starts an escape: write \\ for a backslash, or use a raw `…` string for regular expressions)"#.to_string()));
        assert_eq!(
            string(r#""\xff""#),
            Err("0: string is not valid utf-8 after its escapes".to_string())
        );
        assert_eq!(
            string(r#""\ud800""#).map_err(|e| e.starts_with("1: invalid escape")),
            Err(true)
        );
        assert_eq!(string("\"abc"), Err("0: unterminated string".to_string()));
        assert_eq!(string("\"a\\"), Err("2: unterminated string".to_string()));
        assert_eq!(string("`abc"), Err("0: unterminated string".to_string()));
        assert_eq!(string("\"é\\é\""), Err("3: invalid escape sequence \"\\é\" (a backslash starts an escape: write \\\\ for a backslash, or use a raw `…` string for regular expressions)".to_string()));
    }
}
