//! Rule files: Prometheus / Loki ruler groups (`record`, `alert`, `expr`, `for`,
//! `keep_firing_for`, `labels`, `annotations`) plus sidewatch's `resolve_expr` and the
//! `verifications:` of deployments. Loading parses every expression and template and
//! reports each problem at its place in the file, `file:line:col: message`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::ast::Expr;
use super::parser;
use super::template::Template;
use crate::config::ConfigError;

/// The shortest group `interval` (and `rules.evaluation_interval`): anything shorter
/// would have the runner evaluating without pause.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Every group of every rule file, in file order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub groups: Vec<Group>,
    /// The files the set was loaded from (for reload and `check`).
    pub files: Vec<PathBuf>,
    /// `verifications:` of the rule files, validated, for deployment verification.
    pub verifications: Vec<serde_json::Value>,
    /// Worth telling, not errors: a pattern that matches no file.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub file: PathBuf,
    pub interval: Duration,
    /// Prometheus' group `limit`: a rule producing more series than this fails (0: none).
    pub limit: usize,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// The `record:` series name or the `alert:` name.
    pub name: String,
    pub kind: RuleKind,
    pub expr: Expr,
    pub expr_text: String,
    pub labels: Vec<(String, Template)>,
    pub annotations: Vec<(String, Template)>,
    pub hold: Duration,
    pub keep_firing_for: Duration,
    pub resolve: Option<Expr>,
    pub resolve_text: Option<String>,
    /// Where the rule is (`file:line`), for status and errors.
    pub line: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Record,
    Alert,
}

impl Rule {
    /// What identifies a rule across reloads: an unchanged rule keeps its state.
    pub fn signature(&self) -> String {
        format!(
            "{:?}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{}",
            self.kind,
            self.name,
            self.expr_text.trim(),
            self.hold,
            self.keep_firing_for,
            self.resolve_text.as_deref().unwrap_or("").trim()
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    verifications: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    limit: Option<usize>,
    /// Loki and Prometheus group keys sidewatch accepts and ignores (one tenant, no
    /// remote write): `source_tenants`, `query_offset`.
    #[serde(default)]
    #[allow(dead_code)]
    query_offset: Option<String>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<Spanned<String>>,
    alert: Option<Spanned<String>>,
    expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    hold: Option<Spanned<String>>,
    keep_firing_for: Option<Spanned<String>>,
    resolve_expr: Option<Spanned<String>>,
    #[serde(default)]
    labels: Pairs,
    #[serde(default)]
    annotations: Pairs,
}

/// A YAML mapping of names to scalars, in file order, with positions.
#[derive(Default)]
struct Pairs(Vec<(Spanned<String>, Spanned<Text>)>);

/// A scalar as text: label values may be written as numbers or booleans.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
            fn visit_unit<E>(self) -> Result<Pairs, E> {
                Ok(Pairs(Vec::new()))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Problems of one load, all of them.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, at: Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.path.to_path_buf(),
            line: at.line().max(1),
            column: at.column().max(1),
            message: message.into(),
            hint: None,
        });
    }

    /// An error at byte `offset` of the scalar that starts at `at`.
    fn error_in_scalar(&mut self, at: Location, offset: usize, message: String) {
        let (line, column) = scalar_position(self.text, at, offset);
        self.errors.push(ConfigError {
            file: self.path.to_path_buf(),
            line,
            column,
            message,
            hint: None,
        });
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, what: &str) -> Option<Duration> {
        let v = value.as_ref()?;
        match parse_duration(&v.value) {
            Some(d) => Some(d),
            None => {
                self.error(
                    v.referenced,
                    format!(
                        "invalid duration `{}` for `{what}` (write it like 30s, 5m, 1h)",
                        v.value
                    ),
                );
                None
            }
        }
    }

    fn expr(&mut self, value: &Spanned<String>) -> Option<Expr> {
        match parser::parse(&value.value) {
            Ok(expr) => Some(expr),
            Err(e) => {
                self.error_in_scalar(value.referenced, e.offset, e.to_string());
                None
            }
        }
    }

    fn templates(&mut self, pairs: &Pairs, check_name: bool) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (name, value) in &pairs.0 {
            if check_name && !is_label_name(&name.value) {
                self.error(
                    name.referenced,
                    format!(
                        "invalid label name `{}` (use letters, digits and _)",
                        name.value
                    ),
                );
                continue;
            }
            match Template::parse(&value.value.0) {
                Ok(t) => out.push((name.value.clone(), t)),
                Err(e) => self.error_in_scalar(value.referenced, e.offset, e.to_string()),
            }
        }
        out
    }
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(text).ok()
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Maps byte `offset` inside a YAML scalar starting at `at` to the file's line and
/// column: block scalars (`|`, `>`) start on the next line at their indentation,
/// quoted scalars one column after the quote.
pub fn scalar_position(text: &str, at: Location, offset: usize) -> (u64, u64) {
    let line_no = at.line().max(1);
    let col = at.column().max(1);
    let lines: Vec<&str> = text.lines().collect();
    let Some(first) = lines.get(line_no as usize - 1) else {
        return (line_no, col);
    };
    let rest = first
        .char_indices()
        .nth(col as usize - 1)
        .map(|(i, _)| &first[i..])
        .unwrap_or("");
    if rest.starts_with('|') || rest.starts_with('>') {
        // Block scalar: find the content's indentation, then walk the offset over its
        // lines (YAML keeps one content line per file line, blank lines included).
        let content = &lines[(line_no as usize).min(lines.len())..];
        let indent = content
            .iter()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .unwrap_or(0);
        let mut remaining = offset;
        for (i, l) in content.iter().enumerate() {
            let body = l.get(indent..).unwrap_or("");
            if remaining <= body.len() {
                let chars = body
                    .get(..remaining)
                    .map(|s| s.chars().count())
                    .unwrap_or(0);
                return (line_no + 1 + i as u64, (indent + chars + 1) as u64);
            }
            remaining -= body.len() + 1;
        }
        return (line_no + 1, indent as u64 + 1);
    }
    let quote = rest.starts_with('"') || rest.starts_with('\'');
    if !quote {
        // A plain scalar, or a block scalar whose position is its first content line:
        // both continue on the following lines at the same indentation.
        let indent = col as usize - 1;
        let mut remaining = offset;
        for (i, l) in lines[line_no as usize - 1..].iter().enumerate() {
            let body = l.get(indent..).unwrap_or("");
            if remaining <= body.len() || i + 1 == lines.len() - (line_no as usize - 1) {
                let chars = body
                    .get(..remaining.min(body.len()))
                    .map(|s| s.chars().count())
                    .unwrap_or(0);
                return (line_no + i as u64, (indent + chars + 1) as u64);
            }
            remaining -= body.len() + 1;
        }
        return (line_no, col);
    }
    let chars = rest
        .get(1..)
        .and_then(|s| s.get(..offset.min(s.len())))
        .map(|s| s.chars().count())
        .unwrap_or(offset) as u64;
    (line_no, col + 1 + chars)
}

/// Loads one rule file's text.
pub fn load_str(
    path: &Path,
    text: &str,
    default_interval: Duration,
) -> Result<RuleSet, Vec<ConfigError>> {
    let raw: RawFile = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(vec![crate::config::validate::yaml_error(path, &e)]),
    };
    let mut ctx = Ctx {
        path,
        text,
        errors: Vec::new(),
    };
    let mut set = RuleSet {
        files: vec![path.to_path_buf()],
        ..RuleSet::default()
    };
    let mut names = std::collections::HashSet::new();
    for group in raw.groups {
        let at = group.referenced;
        let group = group.value;
        let Some(name) = group.name.as_ref().filter(|n| !n.value.trim().is_empty()) else {
            ctx.error(at, "a group needs a `name`");
            continue;
        };
        if !names.insert(name.value.clone()) {
            ctx.error(
                name.referenced,
                format!("group name `{}` is used twice in this file", name.value),
            );
        }
        let interval = ctx
            .duration(&group.interval, "interval")
            .unwrap_or(default_interval);
        if interval < MIN_INTERVAL
            && let Some(v) = &group.interval
        {
            ctx.error(
                v.referenced,
                format!(
                    "`interval` must be at least {MIN_INTERVAL:?}: a group is evaluated this often"
                ),
            );
        }
        let mut rules = Vec::new();
        for rule in &group.rules {
            if let Some(rule) = load_rule(&mut ctx, rule) {
                rules.push(rule);
            }
        }
        set.groups.push(Group {
            name: name.value.clone(),
            file: path.to_path_buf(),
            interval: if interval < MIN_INTERVAL {
                default_interval
            } else {
                interval
            },
            limit: group.limit.unwrap_or(0),
            rules,
        });
    }
    if let Some(verifications) = raw.verifications {
        check_verifications(&mut ctx, &verifications);
        if let serde_json::Value::Array(items) = verifications.value {
            set.verifications.extend(items);
        }
    }
    if ctx.errors.is_empty() {
        Ok(set)
    } else {
        ctx.errors.sort_by_key(|e| (e.line, e.column));
        Err(ctx.errors)
    }
}

fn load_rule(ctx: &mut Ctx<'_>, rule: &Spanned<RawRule>) -> Option<Rule> {
    let at = rule.referenced;
    let raw = &rule.value;
    let (kind, name) = match (&raw.record, &raw.alert) {
        (Some(record), None) => {
            if !is_metric_name(&record.value) {
                ctx.error(
                    record.referenced,
                    format!(
                        "invalid series name `{}` for `record` (letters, digits, _ and :)",
                        record.value
                    ),
                );
            }
            for (key, present) in [
                ("for", raw.hold.is_some()),
                ("keep_firing_for", raw.keep_firing_for.is_some()),
                ("resolve_expr", raw.resolve_expr.is_some()),
                ("annotations", !raw.annotations.0.is_empty()),
            ] {
                if present {
                    ctx.error(
                        at,
                        format!("`{key}` is for alerting rules, not `record` rules"),
                    );
                }
            }
            (RuleKind::Record, record)
        }
        (None, Some(alert)) => {
            if alert.value.trim().is_empty() {
                ctx.error(alert.referenced, "`alert` needs a name");
            }
            (RuleKind::Alert, alert)
        }
        (Some(_), Some(alert)) => {
            ctx.error(
                alert.referenced,
                "a rule has either `record` or `alert`, not both",
            );
            return None;
        }
        (None, None) => {
            ctx.error(
                at,
                "a rule needs `record: <series name>` or `alert: <name>`",
            );
            return None;
        }
    };
    let Some(expr_text) = &raw.expr else {
        ctx.error(at, format!("rule `{}` needs an `expr`", name.value));
        return None;
    };
    let expr = ctx.expr(expr_text);
    let resolve = raw.resolve_expr.as_ref().and_then(|r| ctx.expr(r));
    let hold = ctx.duration(&raw.hold, "for").unwrap_or_default();
    let keep_firing_for = ctx
        .duration(&raw.keep_firing_for, "keep_firing_for")
        .unwrap_or_default();
    let labels = ctx.templates(&raw.labels, true);
    let annotations = ctx.templates(&raw.annotations, false);
    Some(Rule {
        name: name.value.clone(),
        kind,
        expr: expr?,
        expr_text: expr_text.value.clone(),
        labels,
        annotations,
        hold,
        keep_firing_for,
        resolve,
        resolve_text: raw.resolve_expr.as_ref().map(|r| r.value.clone()),
        line: at.line(),
    })
}

/// Checks every `verifications:` entry the way deployment verification reads it.
fn check_verifications(ctx: &mut Ctx<'_>, value: &Spanned<serde_json::Value>) {
    let serde_json::Value::Array(items) = &value.value else {
        ctx.error(value.referenced, "`verifications` must be a list");
        return;
    };
    if let Err(errors) = crate::deploy::Deployments::checks(items) {
        for e in errors {
            ctx.error(value.referenced, e);
        }
    }
}

/// Loads every file matching the patterns (relative patterns against `base`), in
/// sorted order. A pattern matching nothing is not an error (rules may come later).
pub fn load_files(
    patterns: &[String],
    base: &Path,
    default_interval: Duration,
) -> Result<RuleSet, Vec<ConfigError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let full = full.to_string_lossy().to_string();
        if !full.contains(['*', '?', '[']) {
            files.push(PathBuf::from(&full));
            continue;
        }
        match crate::sources::discovery::Discovery::new(std::slice::from_ref(&full)) {
            Ok(discovery) => {
                let mut found: Vec<PathBuf> = discovery.scan().into_iter().collect();
                if found.is_empty() {
                    warnings.push(format!("rules.files: `{full}` matches no file (yet)"));
                }
                found.sort();
                files.extend(found);
            }
            Err(e) => errors.push(ConfigError {
                file: PathBuf::from(&full),
                line: 1,
                column: 1,
                message: format!("invalid rule file pattern: {e}"),
                hint: None,
            }),
        }
    }
    files.dedup();
    let mut set = RuleSet {
        warnings,
        ..RuleSet::default()
    };
    for file in files {
        match fs_err::read_to_string(&file) {
            Ok(text) => match load_str(&file, &text, default_interval) {
                Ok(loaded) => {
                    set.groups.extend(loaded.groups);
                    set.verifications.extend(loaded.verifications);
                    set.files.push(file);
                }
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(ConfigError {
                file: file.clone(),
                line: 1,
                column: 1,
                message: format!("cannot read rule file: {}", e.kind()),
                hint: None,
            }),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}
