//! Alertmanager's label matchers (`name="value"`, `name!=value`, `name=~"re.*"`,
//! `name!~re`) as routes, inhibit rules, silences and the CLI write them: parsing with
//! byte offsets for the config loader, matching, and the canonical text form.
//!
//! The syntax is Alertmanager 0.25's "classic" `ParseMatcher`: a Prometheus label name,
//! an operator, and a value that may be wrapped in double quotes. Inside the value the
//! OpenMetrics escapes apply (`\"`, `\n`, `\\`), and any other backslash is kept as a
//! literal backslash, so a regular expression such as `=~"\d+"` needs no doubling. That
//! is Alertmanager's rule rather than Go's full string escapes: it keeps regex matchers
//! written for Alertmanager working unchanged.

use std::fmt;

use crate::rules::labels::Labels;

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// `=~` and `!~`: the value is a regular expression.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }

    /// `=` and `=~`: a match selects the alert (rather than excluding it).
    pub fn is_equal(self) -> bool {
        matches!(self, MatchOp::Equal | MatchOp::Regex)
    }

    /// The operator from Alertmanager's API booleans (`isRegex`, `isEqual`).
    pub fn from_flags(is_regex: bool, is_equal: bool) -> MatchOp {
        match (is_regex, is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One label matcher. Equality (`PartialEq`) compares the name, operator and value; the
/// compiled regular expression follows from them.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// For `=~` / `!~`: the value compiled and anchored at both ends, `^(?:value)$`, as
    /// Prometheus and Alertmanager anchor label regexes.
    regex: Option<regex::Regex>,
}

/// A matcher that could not be parsed or built. `offset` is a byte offset into the text
/// given to `parse` / `parse_list` (0 for `Matcher::new`), so the config loader can turn
/// it into `file:line:col`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MatcherError {
    pub offset: usize,
    pub message: String,
}

impl MatcherError {
    fn new(offset: usize, message: impl Into<String>) -> MatcherError {
        MatcherError {
            offset,
            message: message.into(),
        }
    }

    fn shifted(self, by: usize) -> MatcherError {
        MatcherError {
            offset: self.offset + by,
            ..self
        }
    }
}

impl Matcher {
    /// Builds a matcher from its parts: the name must be a Prometheus label name and a
    /// regex value must compile. Errors carry offset 0 (there is no text to point into).
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        if !is_label_name(&name) {
            return Err(MatcherError::new(
                0,
                format!(
                    "invalid label name {name:?}: expected letters, digits, `_` or `:`, not starting with a digit"
                ),
            ));
        }
        let regex = if op.is_regex() {
            Some(compile_anchored(&value).map_err(|detail| {
                MatcherError::new(0, format!("invalid regular expression {value:?}: {detail}"))
            })?)
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// Parses one matcher: `name="value"`, `name != value`, `name=~"re.*"`, `name!~re`.
    /// Whitespace around each of the three parts is ignored; the value may be empty.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let bytes = text.as_bytes();
        let name_start = skip_blanks(bytes, 0);
        let mut at = name_start;
        match bytes.get(at) {
            Some(b) if is_name_start(*b) => at += 1,
            Some(_) => {
                let found = text[at..].chars().next().unwrap_or(' ');
                return Err(MatcherError::new(
                    at,
                    format!("expected a label name, found {found:?}"),
                ));
            }
            None => return Err(MatcherError::new(at, "expected a label name")),
        }
        while bytes.get(at).is_some_and(|b| is_name_char(*b)) {
            at += 1;
        }
        let name = &text[name_start..at];
        at = skip_blanks(bytes, at);
        let rest = &text[at..];
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return Err(MatcherError::new(
                at,
                format!("expected one of `=`, `!=`, `=~`, `!~` after the label name `{name}`"),
            ));
        };
        let value_start = skip_blanks(bytes, at + len);
        let mut value_end = bytes.len();
        while value_end > value_start && is_blank(bytes[value_end - 1]) {
            value_end -= 1;
        }
        let value = unquote(&text[value_start..value_end]).map_err(|e| e.shifted(value_start))?;
        Matcher::new(name, op, value).map_err(|e| e.shifted(value_start))
    }

    /// Parses a comma-separated list, with or without braces: `{a="b", c=~"d"}`,
    /// `a=b,c!=d`. Commas inside double quotes do not separate; a trailing comma and an
    /// empty list (`{}`, ``) are accepted, as in Alertmanager's `ParseMatchers`.
    pub fn parse_list(text: &str) -> Result<Vec<Matcher>, MatcherError> {
        let bytes = text.as_bytes();
        let mut start = skip_blanks(bytes, 0);
        let mut end = bytes.len();
        while end > start && is_blank(bytes[end - 1]) {
            end -= 1;
        }
        if bytes.get(start) == Some(&b'{') {
            start += 1;
        }
        if end > start && bytes[end - 1] == b'}' {
            end -= 1;
        }

        // Split on commas outside double quotes; a quote after a backslash does not open
        // or close a quoted part.
        let mut pieces = Vec::new();
        let mut piece_start = start;
        let mut inside_quotes = false;
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate().take(end).skip(start) {
            match b {
                b',' if !inside_quotes => {
                    pieces.push((piece_start, i));
                    piece_start = i + 1;
                    escaped = false;
                    continue;
                }
                b'"' if !escaped => inside_quotes = !inside_quotes,
                b'\\' => {
                    escaped = !escaped;
                    continue;
                }
                _ => {}
            }
            escaped = false;
        }
        let last = (piece_start, end);
        let mut matchers = Vec::with_capacity(pieces.len() + 1);
        for (from, to) in pieces {
            if text[from..to].trim().is_empty() {
                return Err(MatcherError::new(
                    skip_blanks(bytes, from),
                    "expected a matcher before the comma",
                ));
            }
            matchers.push(Matcher::parse(&text[from..to]).map_err(|e| e.shifted(from))?);
        }
        if !text[last.0..last.1].trim().is_empty() {
            matchers.push(Matcher::parse(&text[last.0..last.1]).map_err(|e| e.shifted(last.0))?);
        }
        Ok(matchers)
    }

    /// Whether the alert's labels satisfy the matcher; an absent label has the empty
    /// value, as in Alertmanager.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// Whether one label value satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            // `new` compiles every regex matcher, so a regex operator always has one.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    /// The canonical form `name="value"`, with `\`, newline and `"` escaped so that
    /// `Matcher::parse` reads back the same matcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op)?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '"' => f.write_str("\\\"")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Matchers are stored (silences in the state store) in their text form.
impl serde::Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Matcher, D::Error> {
        let text = String::deserialize(deserializer)?;
        Matcher::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid matcher {text:?}: {e}")))
    }
}

/// Go's `\s` in RE2 (what Alertmanager's matcher regex skips): ASCII blanks.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| is_blank(*b)) {
        at += 1;
    }
    at
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit()
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(|b| is_name_start(*b)) && bytes.iter().all(|b| is_name_char(*b))
}

/// The value as written after the operator (blanks trimmed), without its quotes and
/// escapes. Offsets in errors are relative to `raw`.
fn unquote(raw: &str) -> Result<String, MatcherError> {
    let (body, body_start, quoted) = match raw.strip_prefix('"') {
        Some(body) => (body, 1, true),
        None => (raw, 0, false),
    };
    let mut value = String::with_capacity(body.len());
    let mut closed = false;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                // Any other escape is a literal backslash, as Alertmanager reads it
                // (`=~"\d+"` means the regex `\d+`).
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            },
            '"' if quoted && i + 1 == body.len() => closed = true,
            '"' => {
                let message = if quoted {
                    "unexpected double quote inside the value: write \\\" for a quote"
                } else {
                    "unexpected double quote in the value: wrap the whole value in double quotes and write \\\" for a quote"
                };
                return Err(MatcherError::new(body_start + i, message));
            }
            c => value.push(c),
        }
    }
    if quoted && !closed {
        return Err(MatcherError::new(
            raw.len(),
            "expected a closing double quote at the end of the value",
        ));
    }
    Ok(value)
}

/// Compiles `^(?:value)$`. The value is first compiled on its own so that a value such
/// as `a)|(b` is refused instead of escaping the anchors.
fn compile_anchored(value: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(value).map_err(|e| regex_error_detail(&e))?;
    regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| regex_error_detail(&e))
}

/// The one-line reason from the regex crate's multi-line message ("unclosed group").
fn regex_error_detail(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled size exceeds the limit of {limit} bytes")
        }
        _ => "cannot be compiled".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and renders the result as the canonical form, or the error as
    /// `offset: message`.
    fn check(input: &str) -> String {
        match Matcher::parse(input) {
            Ok(m) => m.to_string(),
            Err(e) => format!("{}: {}", e.offset, e.message),
        }
    }

    #[test]
    fn parses_alertmanager_syntax() {
        let cases: &[(&str, &str)] = &[
            (r#"severity="page""#, r#"severity="page""#),
            ("severity=page", r#"severity="page""#),
            (r#"  env != "dev"  "#, r#"env!="dev""#),
            (r#"path=~"/api/.*""#, r#"path=~"/api/.*""#),
            ("path!~/health", r#"path!~"/health""#),
            ("a:b_c1=", r#"a:b_c1="""#),
            (r#"a="""#, r#"a="""#),
            // OpenMetrics escapes; any other backslash is literal.
            (r#"q="say \"hi\"\n""#, r#"q="say \"hi\"\n""#),
            (r#"n=~"\d+""#, r#"n=~"\\d+""#),
            (r#"n=~\d+"#, r#"n=~"\\d+""#),
            ("v=a b", r#"v="a b""#),
            ("v=trailing\\", r#"v="trailing\\""#),
            (r#"v="été""#, r#"v="été""#),
            // Errors point at the byte that is wrong.
            ("", "0: expected a label name"),
            ("  1a=b", "2: expected a label name, found '1'"),
            (
                "severity",
                "8: expected one of `=`, `!=`, `=~`, `!~` after the label name `severity`",
            ),
            (
                "sev ~= x",
                "4: expected one of `=`, `!=`, `=~`, `!~` after the label name `sev`",
            ),
            (
                r#"a="unterminated"#,
                "15: expected a closing double quote at the end of the value",
            ),
            (
                r#"a="x\""#,
                "6: expected a closing double quote at the end of the value",
            ),
            (
                r#"a="x"y""#,
                "4: unexpected double quote inside the value: write \\\" for a quote",
            ),
            (
                r#"a=x"y"#,
                "3: unexpected double quote in the value: wrap the whole value in double quotes and write \\\" for a quote",
            ),
            (
                r#"a=~"(x""#,
                r#"3: invalid regular expression "(x": unclosed group"#,
            ),
            (
                "a=~x)|(y",
                r#"3: invalid regular expression "x)|(y": unopened group"#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(check(input), *want, "input: {input}");
        }
    }

    #[test]
    fn canonical_form_parses_back_to_the_same_matcher() {
        for input in [
            r#"a="x""#,
            r#"q="say \"hi\"\n""#,
            r#"n=~"\d+|\\\\""#,
            r#"b!~"\\\"""#,
        ] {
            let m = Matcher::parse(input).unwrap();
            let again = Matcher::parse(&m.to_string()).unwrap();
            assert_eq!(again, m, "{input}");
            assert_eq!(again.to_string(), m.to_string());
        }
    }

    #[test]
    fn matches_with_absent_labels_as_empty_and_anchored_regexes() {
        let labels = Labels::from_pairs([("service", "checkout-api"), ("severity", "page")]);
        let cases: &[(&str, bool)] = &[
            (r#"severity="page""#, true),
            (r#"severity="pag""#, false),
            (r#"severity!="page""#, false),
            (r#"team!="a""#, true),
            // An absent label is the empty string.
            (r#"team="""#, true),
            (r#"team=~".*""#, true),
            (r#"team=~".+""#, false),
            (r#"team!~".+""#, true),
            // Anchored at both ends.
            (r#"service=~"checkout""#, false),
            (r#"service=~"checkout.*""#, true),
            (r#"service=~"api|checkout-api""#, true),
            (r#"service!~"checkout.*""#, false),
        ];
        for (text, want) in cases {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(m.matches(&labels), *want, "{text}");
        }
    }

    #[test]
    fn parses_lists_with_and_without_braces() {
        let render = |text: &str| match Matcher::parse_list(text) {
            Ok(list) => list
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("{}: {}", e.offset, e.message),
        };
        let cases: &[(&str, &str)] = &[
            (r#"{a="b", c=~"d"}"#, r#"a="b" c=~"d""#),
            ("a=b,c!=d", r#"a="b" c!="d""#),
            (
                r#" { foo = "bar", dings != "bums", } "#,
                r#"foo="bar" dings!="bums""#,
            ),
            (
                r#"{quote="She said: \"Hi, all\"", x="1,2"}"#,
                r#"quote="She said: \"Hi, all\"" x="1,2""#,
            ),
            (r#"alertname="X""#, r#"alertname="X""#),
            ("{}", ""),
            ("", ""),
            // Offsets are into the whole text.
            (r#"{a="b", 9c="d"}"#, "8: expected a label name, found '9'"),
            ("a=b,,c=d", "4: expected a matcher before the comma"),
            (
                r#"a="b", c"#,
                "8: expected one of `=`, `!=`, `=~`, `!~` after the label name `c`",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(render(input), *want, "input: {input}");
        }
    }

    #[test]
    fn new_validates_names_and_regexes_and_compares_by_text() {
        assert!(Matcher::new("severity", MatchOp::Equal, "page").is_ok());
        assert_eq!(
            Matcher::new("bad-name", MatchOp::Equal, "x")
                .unwrap_err()
                .message,
            "invalid label name \"bad-name\": expected letters, digits, `_` or `:`, not starting with a digit"
        );
        assert!(Matcher::new("a", MatchOp::Regex, "(").is_err());
        // `(` is fine as a plain value.
        assert!(Matcher::new("a", MatchOp::Equal, "(").is_ok());
        let a = Matcher::new("a", MatchOp::Regex, "x.*").unwrap();
        assert_eq!(a, Matcher::parse(r#"a=~"x.*""#).unwrap());
        assert_ne!(a, Matcher::parse(r#"a="x.*""#).unwrap());
        assert_eq!(MatchOp::from_flags(true, false), MatchOp::NotRegex);
        for op in [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex,
        ] {
            assert_eq!(MatchOp::from_flags(op.is_regex(), op.is_equal()), op);
        }
    }

    #[test]
    fn serializes_as_text() {
        let m = Matcher::parse(r#"path=~"/api/.*""#).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#""path=~\"/api/.*\"""#);
        assert_eq!(serde_json::from_str::<Matcher>(&json).unwrap(), m);
        let err = serde_json::from_str::<Matcher>(r#""nope""#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid matcher \"nope\": expected one of"),
            "{err}"
        );
    }
}
