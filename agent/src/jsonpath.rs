//! The JSONPath subset health probes use to read a response body: `$.status`,
//! `$.build.version`, `$["app-version"]`, `$.checks[0].ok`. One value per path (no
//! wildcards or filters): a probe condition compares one value, `version_from` reads one.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

/// Why a path does not parse, with the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPathError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for JsonPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at offset {})", self.message, self.offset)
    }
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        let err = |offset: usize, message: &str| JsonPathError {
            offset,
            message: message.to_string(),
        };
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'$') {
            return Err(err(0, "a JSONPath starts with `$`, like `$.status`"));
        }
        let mut steps = Vec::new();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && bytes[end] != b'.' && bytes[end] != b'[' {
                        end += 1;
                    }
                    if end == start {
                        return Err(err(start, "expected a key name after `.`"));
                    }
                    let key = &text[start..end];
                    if key == "*" || key.starts_with('.') {
                        return Err(err(
                            start,
                            "wildcards and recursive descent are not supported: name one value",
                        ));
                    }
                    steps.push(Step::Key(key.to_string()));
                    i = end;
                }
                b'[' => {
                    let close = text[i..]
                        .find(']')
                        .map(|p| p + i)
                        .ok_or_else(|| err(i, "`[` without a closing `]`"))?;
                    let inner = text[i + 1..close].trim();
                    if let Some(q) = inner.chars().next().filter(|c| *c == '"' || *c == '\'') {
                        let key = inner
                            .strip_prefix(q)
                            .and_then(|s| s.strip_suffix(q))
                            .ok_or_else(|| err(i + 1, "unterminated quoted key"))?;
                        steps.push(Step::Key(key.to_string()));
                    } else {
                        let index = inner.parse::<usize>().map_err(|_| {
                            err(
                                i + 1,
                                "expected an array index or a quoted key inside `[…]`",
                            )
                        })?;
                        steps.push(Step::Index(index));
                    }
                    i = close + 1;
                }
                _ => return Err(err(i, "expected `.key` or `[…]`")),
            }
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The value at the path, if the document has one there.
    pub fn find<'a>(&self, doc: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let mut at = doc;
        for step in &self.steps {
            at = match step {
                Step::Key(k) => at.get(k)?,
                Step::Index(i) => at.get(*i)?,
            };
        }
        Some(at)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value as text the way a version or a condition reads it: strings bare, everything
/// else as JSON.
pub fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_one_value() {
        let doc: serde_json::Value = serde_json::json!({
            "status": "ok", "build": {"version": "1.4.3"}, "app-version": 7,
            "checks": [{"ok": true}]
        });
        let get = |p: &str| JsonPath::parse(p).unwrap().find(&doc).map(value_text);
        assert_eq!(get("$.status").as_deref(), Some("ok"));
        assert_eq!(get("$.build.version").as_deref(), Some("1.4.3"));
        assert_eq!(get("$[\"app-version\"]").as_deref(), Some("7"));
        assert_eq!(get("$.checks[0].ok").as_deref(), Some("true"));
        assert_eq!(get("$.missing"), None);
        assert_eq!(get("$").as_deref().map(|s| s.starts_with('{')), Some(true));
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(JsonPath::parse("status").unwrap_err().offset, 0);
        assert_eq!(JsonPath::parse("$.").unwrap_err().offset, 2);
        assert_eq!(JsonPath::parse("$.a[x]").unwrap_err().offset, 4);
        assert_eq!(JsonPath::parse("$.a[0").unwrap_err().offset, 3);
        assert!(JsonPath::parse("$.*").is_err());
    }
}
