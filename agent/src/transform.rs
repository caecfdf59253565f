//! A log source's `drop` and `redact` (SPEC), applied to each batch in the source's own
//! thread right after parsing: a dropped record and a redacted value never reach an
//! output, the OTLP queue or the rules. Pure: no IO, no clock.
//!
//! Records are spans into the batch's buffer, so a redacted value is not edited in
//! place: its replacement is appended to the buffer and the value points there. The
//! record's `line` (what line filters read) is rebuilt the same way, with the
//! redacted values spliced out and the patterns applied, so no rule can match a secret.

use std::borrow::Cow;
use std::ops::Range;

use regex::{Regex, RegexSet};

use crate::config::{LogSourceConfig, RedactTarget};
use crate::event::{LogBatch, LogRecord, Span, Value, ValueKind};
use crate::export::json::write_text;
use crate::parse::FieldNames;
use crate::rules::logs::RecordFilter;

/// What `apply` did to one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransformTally {
    pub dropped: u64,
    /// Records with at least one value rewritten.
    pub redacted: u64,
}

/// The `drop` filter and `redact` rules of one source.
#[derive(Debug)]
pub struct SourceTransform {
    drop: Option<RecordFilter>,
    /// `(field name, replacement)`.
    fields: Vec<(String, String)>,
    patterns: Vec<(Regex, String)>,
    /// All patterns at once: a record whose line matches none is left alone.
    any_pattern: Option<RegexSet>,
    /// The source's message field: `{ field: event }` redacts the body.
    message: String,
    edits: Vec<Edit>,
}

/// One value of the record being redacted, and its new text.
#[derive(Debug)]
struct Edit {
    at: Target,
    /// Where the old value is in the buffer.
    old: Range<usize>,
    old_kind: ValueKind,
    new: String,
    new_kind: ValueKind,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Body,
    /// An index into `batch.fields`.
    Attr(usize),
}

impl SourceTransform {
    /// `None` when the source has neither `drop` nor `redact`.
    pub fn new(config: &LogSourceConfig) -> Option<SourceTransform> {
        if config.drop.is_none() && config.redact.is_empty() {
            return None;
        }
        Some(Self::build(
            config.drop.as_ref().map(|d| &d.stages[..]),
            config,
        ))
    }

    fn build(
        drop: Option<&[crate::rules::ast::Stage]>,
        config: &LogSourceConfig,
    ) -> SourceTransform {
        let names: &FieldNames = &config.fields;
        let mut fields = Vec::new();
        let mut patterns = Vec::new();
        for rule in &config.redact {
            match &rule.target {
                RedactTarget::Field(name) => fields.push((name.clone(), rule.replace.clone())),
                RedactTarget::Pattern(re) => patterns.push((re.clone(), rule.replace.clone())),
            }
        }
        let any_pattern = (!patterns.is_empty())
            .then(|| RegexSet::new(patterns.iter().map(|(re, _)| re.as_str())).ok())
            .flatten();
        SourceTransform {
            drop: drop.map(|stages| RecordFilter::new(stages, names)),
            fields,
            patterns,
            any_pattern,
            message: names.message.clone(),
            edits: Vec::new(),
        }
    }

    /// Drops the records the filter selects and redacts the rest, in place.
    pub fn apply(&mut self, batch: &mut LogBatch) -> TransformTally {
        let mut tally = TransformTally::default();
        let mut records = std::mem::take(&mut batch.records);
        if let Some(filter) = &mut self.drop {
            let before = records.len();
            records.retain(|record| !filter.matches(batch, record));
            tally.dropped = (before - records.len()) as u64;
        }
        if !self.fields.is_empty() || !self.patterns.is_empty() {
            for record in &mut records {
                if self.redact(batch, record) {
                    tally.redacted += 1;
                }
            }
        }
        batch.records = records;
        tally
    }

    /// Redacts one record; `true` if anything changed.
    fn redact(&mut self, batch: &mut LogBatch, record: &mut LogRecord) -> bool {
        self.edits.clear();
        let line = batch.buf.get(record.line.range()).unwrap_or("");
        let line_hit = self
            .any_pattern
            .as_ref()
            .is_some_and(|set| set.is_match(line));
        if let Some(body) = record.body {
            let replace = self.field_replacement(&self.message);
            self.consider(&batch.buf, Target::Body, body, replace, line_hit);
        }
        for i in record.attrs.start as usize..record.attrs.end as usize {
            let Some(field) = batch.fields.get(i).copied() else {
                continue;
            };
            let replace = if self.fields.is_empty() {
                None
            } else {
                self.field_replacement(&field.key(&batch.buf))
            };
            self.consider(&batch.buf, Target::Attr(i), field.value, replace, line_hit);
        }
        if self.edits.is_empty() && !line_hit {
            return false;
        }
        // The line, with every redacted value replaced and the patterns applied.
        let mut edits = std::mem::take(&mut self.edits);
        edits.sort_by_key(|e| e.old.start);
        let range = record.line.range();
        let mut spliced = String::with_capacity(range.len());
        let mut at = range.start;
        for edit in &edits {
            if edit.old.start < at || edit.old.end > range.end {
                continue; // outside the line (a decoded copy): nothing to splice
            }
            spliced.push_str(&batch.buf[at..edit.old.start]);
            splice_value(&mut spliced, edit);
            at = edit.old.end;
        }
        spliced.push_str(&batch.buf[at..range.end]);
        let line = self.replace_patterns(&spliced).into_owned();
        let start = batch.buf.len();
        batch.buf.push_str(&line);
        record.line = Span::new(start, batch.buf.len());
        for edit in edits.drain(..) {
            let start = batch.buf.len();
            batch.buf.push_str(&edit.new);
            let value = Value {
                span: Span::new(start, batch.buf.len()),
                kind: edit.new_kind,
            };
            match edit.at {
                Target::Body => record.body = Some(value),
                Target::Attr(i) => batch.fields[i].value = value,
            }
        }
        self.edits = edits;
        true
    }

    fn field_replacement(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|(field, _)| field == name)
    }

    /// Decides a value's new text, if it has one, and records the edit.
    fn consider(
        &mut self,
        buf: &str,
        at: Target,
        value: Value,
        replace: Option<usize>,
        line_hit: bool,
    ) {
        let old = value.span.range();
        let (new, new_kind) = if let Some(i) = replace {
            (self.fields[i].1.clone(), ValueKind::Text)
        } else {
            match value.kind {
                ValueKind::Str | ValueKind::Text | ValueKind::StrEscaped => {
                    // Escapes can hide a match from the line check: decode those always.
                    if !line_hit && value.kind != ValueKind::StrEscaped {
                        return;
                    }
                    let text = value.as_str(buf);
                    match self.replace_patterns(&text) {
                        Cow::Owned(new) => (new, ValueKind::Text),
                        Cow::Borrowed(_) => return,
                    }
                }
                ValueKind::Object | ValueKind::Array => {
                    let raw = value.raw(buf);
                    if !line_hit && (self.fields.is_empty() || !raw.contains('"')) {
                        return;
                    }
                    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(raw) else {
                        return;
                    };
                    if !self.redact_json(&mut json) {
                        return;
                    }
                    (json.to_string(), value.kind)
                }
                _ => return,
            }
        };
        self.edits.push(Edit {
            at,
            old,
            old_kind: value.kind,
            new,
            new_kind,
        });
    }

    /// Redacts named keys and matching strings anywhere inside a nested value.
    fn redact_json(&self, value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => match self.replace_patterns(s) {
                Cow::Owned(new) => {
                    *s = new;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            serde_json::Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_json(item) | changed),
            serde_json::Value::Object(map) => {
                let mut changed = false;
                for (key, item) in map.iter_mut() {
                    if let Some(i) = self.field_replacement(key) {
                        *item = serde_json::Value::String(self.fields[i].1.clone());
                        changed = true;
                    } else {
                        changed |= self.redact_json(item);
                    }
                }
                changed
            }
            _ => false,
        }
    }

    fn replace_patterns<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (re, replace) in &self.patterns {
            if let Cow::Owned(new) = re.replace_all(&out, replace.as_str()) {
                out = Cow::Owned(new);
            }
        }
        out
    }
}

/// Writes an edit's new text where the old value was in the line: inside the quotes of
/// a JSON string (escaped), as a JSON string where a number or literal was, as it is in
/// a text line.
fn splice_value(out: &mut String, edit: &Edit) {
    match (edit.old_kind, edit.new_kind) {
        (_, ValueKind::Object | ValueKind::Array) => out.push_str(&edit.new),
        (ValueKind::Str | ValueKind::StrEscaped, _) => {
            let mut quoted = Vec::with_capacity(edit.new.len() + 2);
            write_text(&mut quoted, edit.new.as_bytes());
            let quoted = String::from_utf8(quoted).unwrap_or_default();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
        (ValueKind::Text, _) => out.push_str(&edit.new),
        _ => {
            let mut quoted = Vec::with_capacity(edit.new.len() + 2);
            write_text(&mut quoted, edit.new.as_bytes());
            out.push_str(&String::from_utf8(quoted).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DropFilter, RedactRule};
    use crate::event::FileMark;
    use crate::export::json::write_record;
    use crate::parse::{Format, LineParser};

    fn source(drop: Option<&str>, redact: Vec<RedactRule>) -> LogSourceConfig {
        let mut config = LogSourceConfig::defaults("app", vec!["x".into()]);
        config.drop = drop.map(|text| DropFilter {
            text: text.into(),
            stages: crate::rules::parser::parse_pipeline(text).expect("filter parses"),
        });
        config.redact = redact;
        config
    }

    fn field(name: &str) -> RedactRule {
        RedactRule {
            target: RedactTarget::Field(name.into()),
            replace: crate::config::REDACTED.into(),
        }
    }

    fn pattern(re: &str, replace: &str) -> RedactRule {
        RedactRule {
            target: RedactTarget::Pattern(Regex::new(re).unwrap()),
            replace: replace.into(),
        }
    }

    fn batch(format: Format, lines: &[&str]) -> LogBatch {
        let parser = LineParser::new(format, format.default_field_names());
        let mut batch = LogBatch::new("app".into());
        batch.files.push(FileMark::unchecked("app".into(), "/l"));
        for (i, line) in lines.iter().enumerate() {
            let start = batch.buf.len();
            batch.buf.push_str(line);
            let span = Span::new(start, batch.buf.len());
            let mut record = LogRecord {
                offset: i as u64,
                ..LogRecord::default()
            };
            parser.parse(&mut batch.buf, span, &mut batch.fields, &mut record);
            batch.records.push(record);
        }
        batch
    }

    fn output(batch: &LogBatch) -> Vec<serde_json::Value> {
        batch
            .records
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                write_record(&mut out, batch, r, None);
                serde_json::from_slice(&out).expect("valid JSON")
            })
            .collect()
    }

    fn lines(batch: &LogBatch) -> Vec<&str> {
        batch
            .records
            .iter()
            .map(|r| &batch.buf[r.line.range()])
            .collect()
    }

    #[test]
    fn drop_removes_matching_records_only() {
        let mut t = SourceTransform::new(&source(
            Some(r#"| level="debug" or path="/health""#),
            vec![],
        ))
        .unwrap();
        let mut b = batch(
            Format::Structlog,
            &[
                r#"{"event":"a","level":"debug"}"#,
                r#"{"event":"b","level":"info","path":"/health"}"#,
                r#"{"event":"c","level":"info","path":"/pay"}"#,
                "not json at all",
            ],
        );
        let tally = t.apply(&mut b);
        assert_eq!(tally.dropped, 2);
        let kept: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
        assert_eq!(
            kept,
            [2, 3],
            "the info /pay record and the text record stay"
        );
    }

    #[test]
    fn drop_with_a_line_filter() {
        let mut t = SourceTransform::new(&source(Some(r#"|= "GET /health""#), vec![])).unwrap();
        let mut b = batch(Format::Text, &["INFO GET /health 200", "INFO GET /pay 200"]);
        assert_eq!(t.apply(&mut b).dropped, 1);
        assert_eq!(lines(&b), ["INFO GET /pay 200"]);
    }

    #[test]
    fn field_redaction_everywhere_the_field_is() {
        let mut t =
            SourceTransform::new(&source(None, vec![field("password"), field("token")])).unwrap();
        let mut b = batch(
            Format::Structlog,
            &[
                r#"{"event":"login","password":"hunter2","user":"ann","ctx":{"token":"s3cr3t","n":1},"list":[{"password":"p2"}]}"#,
                r#"{"event":"plain","user":"bob"}"#,
            ],
        );
        let tally = t.apply(&mut b);
        assert_eq!(tally.redacted, 1);
        let out = output(&b);
        assert_eq!(out[0]["attributes"]["password"], "[REDACTED]");
        assert_eq!(out[0]["attributes"]["ctx"]["token"], "[REDACTED]");
        assert_eq!(out[0]["attributes"]["ctx"]["n"], 1);
        assert_eq!(out[0]["attributes"]["list"][0]["password"], "[REDACTED]");
        assert_eq!(out[0]["attributes"]["user"], "ann");
        assert_eq!(out[1]["attributes"]["user"], "bob");
        for secret in ["hunter2", "s3cr3t", "p2"] {
            assert!(!lines(&b)[0].contains(secret), "{secret} left in the line");
            assert!(!out[0].to_string().contains(secret));
        }
        // The rebuilt line is still the record as JSON.
        let line: serde_json::Value = serde_json::from_str(lines(&b)[0]).unwrap();
        assert_eq!(line["password"], "[REDACTED]");
    }

    #[test]
    fn pattern_redaction_in_body_strings_and_escaped_values() {
        let mut t = SourceTransform::new(&source(
            None,
            vec![pattern("(?i)bearer [a-z0-9._-]+", "Bearer ***")],
        ))
        .unwrap();
        let mut b = batch(
            Format::Structlog,
            &[
                r#"{"event":"auth bearer abc.def","header":"Bearer xyz","n":5}"#,
                // The escape hides the match from the raw line.
                r#"{"event":"x","header":"Bearer\u0020q1w2"}"#,
                r#"{"event":"nothing to see"}"#,
            ],
        );
        assert_eq!(t.apply(&mut b).redacted, 2);
        let out = output(&b);
        assert_eq!(out[0]["body"], "auth Bearer ***");
        assert_eq!(out[0]["attributes"]["header"], "Bearer ***");
        assert_eq!(out[0]["attributes"]["n"], 5);
        assert_eq!(out[1]["attributes"]["header"], "Bearer ***");
        assert_eq!(out[2]["body"], "nothing to see");
        assert!(!lines(&b)[0].contains("abc.def"));
    }

    #[test]
    fn pattern_groups_and_replacements_with_quotes_stay_valid_json() {
        let mut t = SourceTransform::new(&source(
            None,
            vec![pattern(r"card=(\d{4})\d+", "card=$1\"…"), field("email")],
        ))
        .unwrap();
        let mut b = batch(
            Format::Structlog,
            &[r#"{"event":"paid card=4242424242424242","email":"a@b.c","level":"info"}"#],
        );
        t.apply(&mut b);
        let out = output(&b);
        assert_eq!(out[0]["body"], "paid card=4242\"…");
        assert_eq!(out[0]["severity_text"], "info");
        let line: serde_json::Value = serde_json::from_str(lines(&b)[0]).expect("line is JSON");
        assert_eq!(line["email"], "[REDACTED]");
    }

    #[test]
    fn logfmt_and_text_records_are_redacted() {
        let mut t = SourceTransform::new(&source(
            None,
            vec![field("password"), pattern("secret-[0-9]+", "***")],
        ))
        .unwrap();
        let mut b = batch(Format::Logfmt, &["msg=hi password=abc other=secret-42"]);
        t.apply(&mut b);
        let out = output(&b);
        assert_eq!(out[0]["attributes"]["password"], "[REDACTED]");
        assert_eq!(out[0]["attributes"]["other"], "***");
        assert_eq!(lines(&b)[0], "msg=hi password=[REDACTED] other=***");
        let mut b = batch(Format::Structlog, &["oops secret-7 leaked"]);
        t.apply(&mut b);
        assert_eq!(output(&b)[0]["body"], "oops *** leaked");
    }

    #[test]
    fn a_field_named_like_the_message_redacts_the_body() {
        let mut t = SourceTransform::new(&source(None, vec![field("event")])).unwrap();
        let mut b = batch(Format::Structlog, &[r#"{"event":"card 4242","n":1}"#]);
        t.apply(&mut b);
        assert_eq!(output(&b)[0]["body"], "[REDACTED]");
    }

    #[test]
    fn drop_sees_the_values_before_redaction() {
        let mut t =
            SourceTransform::new(&source(Some(r#"| user="root""#), vec![field("user")])).unwrap();
        let mut b = batch(
            Format::Structlog,
            &[
                r#"{"event":"a","user":"root"}"#,
                r#"{"event":"b","user":"ann"}"#,
            ],
        );
        let tally = t.apply(&mut b);
        assert_eq!((tally.dropped, tally.redacted), (1, 1));
        assert_eq!(output(&b)[0]["attributes"]["user"], "[REDACTED]");
    }

    #[test]
    fn nothing_configured_is_no_transform() {
        assert!(SourceTransform::new(&source(None, vec![])).is_none());
    }
}
