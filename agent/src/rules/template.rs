//! Alert templates: the part of Prometheus's Go `text/template` language that the
//! `labels:` and `annotations:` of alert rules are written in, parsed once when the rule
//! file loads and rendered for every alert without failing.
//!
//! # What is supported
//! - text with `{{ … }}` actions; `{{- ` and ` -}}` trim the whitespace before and after
//!   as in Go; `{{/* comments */}}`;
//! - operands: `$value` / `.Value` (the alert's value), `$labels.name` / `.Labels.name`
//!   (a label, `""` when absent), `$labels` (the whole set, printed `{a="1", b="2"}`),
//!   `$externalLabels.name` / `$externalURL` (accepted, always empty: sidewatch has
//!   neither), string literals `"…"` (Go escapes) and `` `…` ``, numbers, `true`/`false`,
//!   and parenthesised pipelines;
//! - pipelines: `{{ $value | humanizePercentage }}`, `{{ humanize $value }}`, the piped
//!   value going last as in Go;
//! - Prometheus's functions `humanize`, `humanize1024`, `humanizeDuration`,
//!   `humanizePercentage`, `humanizeTimestamp`, `title`, `toUpper`, `toLower`, `match`,
//!   `reReplaceAll`, and Go's `printf` (verbs `%v %s %d %f %F %e %E %g %G %t %%`, flags
//!   `+ - 0` and space, width and precision). Outputs match Prometheus byte for byte,
//!   including Go's float formatting (`{{ $value }}` of 1e6 prints `1e+06`, as it does in
//!   Prometheus).
//!
//! # Where it differs from Prometheus, and why
//! Prometheus finds most template mistakes only when an alert fires, and then sends the
//! alert with the annotation replaced by an error. Here every mistake is found when the
//! rule file loads, so `render` cannot fail:
//! - `if`, `range`, `with`, `define`, variables (`$x := …`) and the query functions are
//!   rejected with a clear error rather than half supported;
//! - argument counts and types are checked at parse time: `toUpper $value`,
//!   `printf "%d" $value` (Go would print `%!d(float64=…)`) and a `printf` whose verb
//!   count differs from its argument count are errors;
//! - the format of `printf` and the patterns of `match` / `reReplaceAll` must be string
//!   literals, so they are checked (and the regexes compiled) once. Patterns use the Rust
//!   `regex` syntax, which is RE2's apart from `\d`, `\w`, `\s` and `\b` being Unicode;
//! - the only value that can still be wrong at render time is a label value given to a
//!   number function (`{{ $labels.le | humanize }}`): when it is not a number it is
//!   printed unchanged instead of failing the whole annotation;
//! - `humanizeTimestamp` of a time outside the years 1677–2262 (where Go's nanosecond
//!   clock overflows and Prometheus errors) prints the number the way it prints NaN.
//!
//! An action that names neither the value nor a label (`{{ "x" | toUpper }}`) is
//! evaluated once at parse time, so `is_constant` is true for every template whose output
//! cannot change between alerts.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

use super::labels::Labels;
use crate::config::validate::did_you_mean;

/// A parsed alert template. Rendering never fails.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

/// A problem found while parsing a template, at a byte offset into its text.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

fn error(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        offset,
        message: message.into(),
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts: Vec<Part> = Vec::new();
        let mut pos = 0;
        let mut trim_start = false;
        loop {
            let open = text[pos..].find("{{").map(|i| pos + i);
            let mut segment = &text[pos..open.unwrap_or(text.len())];
            if trim_start {
                segment = segment.trim_start_matches(is_go_space);
            }
            let Some(open) = open else {
                push_text(&mut parts, segment);
                break;
            };
            let mut inner = open + 2;
            if has_left_trim(&text[inner..]) {
                segment = segment.trim_end_matches(is_go_space);
                inner += 2;
            }
            push_text(&mut parts, segment);
            let action = parse_action(text, open, inner)?;
            match action.expr {
                Some(Typed {
                    expr: Expr::Const(lit),
                    ..
                }) => push_text(&mut parts, &lit.to_text()),
                Some(typed) => parts.push(Part::Expr(typed.expr)),
                None => {}
            }
            pos = action.end;
            trim_start = action.trim_after;
        }
        Ok(Template { parts })
    }

    pub fn render(&self, labels: &Labels, value: f64) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => write_val(&mut out, &eval(expr, labels, value)),
            }
        }
        out
    }

    /// Every label named as `$labels.x` or `.Labels.x`, sorted and without repeats: the
    /// evaluator keeps those record fields as labels so the template can print them.
    pub fn label_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for part in &self.parts {
            if let Part::Expr(expr) = part {
                collect_labels(expr, &mut names);
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Whether the output is the same for every alert: no actions, or only actions that
    /// name neither the value nor a label (comments, `{{ "literal" }}`).
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(Expr),
}

/// Appends text, merging it into the previous text part so constant templates end up
/// as a single part.
fn push_text(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Part::Text(last)) = parts.last_mut() {
        last.push_str(text);
    } else {
        parts.push(Part::Text(text.to_string()));
    }
}

#[derive(Clone, Debug)]
enum Expr {
    Const(Lit),
    /// `$value`, `.Value`.
    Value,
    /// `$labels.name`, `.Labels.name`.
    Label(String),
    /// `$labels`, `.Labels`.
    Labels,
    Call(Box<Call>),
}

#[derive(Clone, Debug)]
struct Call {
    func: Func,
    args: Vec<Expr>,
}

#[derive(Clone, Debug)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizeDuration,
    HumanizePercentage,
    HumanizeTimestamp,
    ToUpper,
    ToLower,
    Title,
    /// The pattern, compiled at parse time; the one argument is the text.
    Match(Regex),
    /// The pattern; the arguments are the replacement and the text.
    ReReplaceAll(Regex),
    /// The parsed format; the arguments are the values.
    Printf(Vec<Piece>),
}

/// A constant, Go's types reduced to the ones a template can meet.
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Float(f64),
    Int(i64),
    Str(String),
    Bool(bool),
    Labels(Labels),
}

impl Lit {
    fn val(&self) -> Val<'_> {
        match self {
            Lit::Float(v) => Val::Float(*v),
            Lit::Int(v) => Val::Int(*v),
            Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Labels(l) => Val::Labels(l),
        }
    }

    fn to_text(&self) -> String {
        let mut out = String::new();
        write_val(&mut out, &self.val());
        out
    }

    fn ty(&self) -> Ty {
        match self {
            Lit::Float(_) => Ty::Float,
            Lit::Int(_) => Ty::Int,
            Lit::Str(_) => Ty::Str,
            Lit::Bool(_) => Ty::Bool,
            Lit::Labels(_) => Ty::Labels,
        }
    }
}

/// A value while rendering.
enum Val<'a> {
    Float(f64),
    Int(i64),
    Str(Cow<'a, str>),
    Bool(bool),
    Labels(&'a Labels),
}

impl Val<'_> {
    fn into_lit(self) -> Lit {
        match self {
            Val::Float(v) => Lit::Float(v),
            Val::Int(v) => Lit::Int(v),
            Val::Str(s) => Lit::Str(s.into_owned()),
            Val::Bool(b) => Lit::Bool(b),
            Val::Labels(l) => Lit::Labels(l.clone()),
        }
    }
}

/// The static type of an expression, checked at parse time so rendering cannot meet a
/// value it has no use for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Float,
    Int,
    Str,
    Bool,
    Labels,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Float => "a float",
            Ty::Int => "an integer",
            Ty::Str => "a string",
            Ty::Bool => "a boolean",
            Ty::Labels => "a label set",
        }
    }
}

/// Prints a value the way Go's `fmt.Fprint` does (a label set as `{a="1"}`).
fn write_val(out: &mut String, val: &Val<'_>) {
    match val {
        Val::Float(v) => out.push_str(&format_float(*v, b'g', -1)),
        Val::Int(v) => out.push_str(&v.to_string()),
        Val::Str(s) => out.push_str(s),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Labels(l) => out.push_str(&l.to_string()),
    }
}

fn text_of<'a>(val: &'a Val<'a>) -> Cow<'a, str> {
    match val {
        Val::Str(s) => Cow::Borrowed(s),
        other => {
            let mut out = String::new();
            write_val(&mut out, other);
            Cow::Owned(out)
        }
    }
}

fn eval<'a>(expr: &'a Expr, labels: &'a Labels, value: f64) -> Val<'a> {
    match expr {
        Expr::Const(lit) => lit.val(),
        Expr::Value => Val::Float(value),
        Expr::Label(name) => Val::Str(Cow::Borrowed(labels.get(name).unwrap_or(""))),
        Expr::Labels => Val::Labels(labels),
        Expr::Call(call) => {
            let args: Vec<Val<'a>> = call.args.iter().map(|a| eval(a, labels, value)).collect();
            apply(&call.func, &args)
        }
    }
}

fn apply<'a>(func: &Func, args: &[Val<'a>]) -> Val<'a> {
    // Arity and types were checked at parse time; the fallbacks below (an empty string,
    // a value printed as text) only keep rendering total without a panic path.
    let arg = |i: usize| args.get(i).map(text_of).unwrap_or_default();
    let number = |f: fn(f64) -> String| -> Val<'a> {
        let text = match args.first() {
            Some(Val::Float(v)) => f(*v),
            Some(Val::Int(v)) => f(*v as f64),
            Some(other) => {
                let text = text_of(other);
                match parse_go_float(&text) {
                    Some(v) => f(v),
                    // A label value that is not a number: shown as it is (see module doc).
                    None => text.into_owned(),
                }
            }
            None => String::new(),
        };
        Val::Str(Cow::Owned(text))
    };
    match func {
        Func::Humanize => number(humanize),
        Func::Humanize1024 => number(humanize1024),
        Func::HumanizeDuration => number(humanize_duration),
        Func::HumanizePercentage => number(humanize_percentage),
        Func::HumanizeTimestamp => number(humanize_timestamp),
        Func::ToUpper => Val::Str(Cow::Owned(map_chars(&arg(0), char::to_uppercase))),
        Func::ToLower => Val::Str(Cow::Owned(map_chars(&arg(0), char::to_lowercase))),
        Func::Title => Val::Str(Cow::Owned(title(&arg(0)))),
        Func::Match(re) => Val::Bool(re.is_match(&arg(0))),
        Func::ReReplaceAll(re) => {
            let replacement = arg(0);
            Val::Str(Cow::Owned(
                re.replace_all(&arg(1), &*replacement).into_owned(),
            ))
        }
        Func::Printf(pieces) => Val::Str(Cow::Owned(sprintf(pieces, args))),
    }
}

fn collect_labels(expr: &Expr, names: &mut Vec<String>) {
    match expr {
        Expr::Label(name) => names.push(name.clone()),
        Expr::Call(call) => {
            for arg in &call.args {
                collect_labels(arg, names);
            }
        }
        Expr::Const(_) | Expr::Value | Expr::Labels => {}
    }
}

// ---------------------------------------------------------------------------------
// Lexing

/// Go's `text/template` whitespace.
fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `{{- ` trims: the `-` must be followed by whitespace, or `{{-3}}` would not be -3.
fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_go_space(b[1] as char)
}

/// ` -}}` trims, with whitespace before the `-` for the same reason.
fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 4 && is_go_space(b[0] as char) && b[1] == b'-' && &b[2..4] == b"}}"
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

const FUNCTIONS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "title",
    "toUpper",
    "toLower",
    "match",
    "reReplaceAll",
    "printf",
];

/// Functions of Prometheus and Go templates that sidewatch knows but does not offer:
/// named in the error so a user does not hunt for a typo.
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "args",
    "tmpl",
    "safeHtml",
    "graphLink",
    "tableLink",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "toTime",
    "toDuration",
    "now",
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "println",
    "html",
    "js",
    "urlquery",
    "call",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
];

const VARIABLES: &[&str] = &["$labels", "$value", "$externalLabels", "$externalURL"];
const FIELDS: &[&str] = &[".Labels", ".Value", ".ExternalLabels", ".ExternalURL"];

/// How deep parenthesised pipelines may nest, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// Widths and precisions above this are refused rather than allocated.
const MAX_WIDTH: usize = 1000;

#[derive(Clone, Debug)]
enum TokKind {
    Str(String),
    Num(Lit),
    Ident(String),
    /// `$name` and the fields chained to it, each with the offset of its `.`.
    Var(String, Vec<(String, usize)>),
    /// `.Name.other`: fields of the template data.
    Field(Vec<(String, usize)>),
    Dot,
    Pipe,
    LParen,
    RParen,
    Declare,
    Comma,
}

#[derive(Clone, Debug)]
struct Tok {
    kind: TokKind,
    start: usize,
    end: usize,
}

struct Action {
    expr: Option<Typed>,
    /// Just past the closing `}}`.
    end: usize,
    trim_after: bool,
}

/// Parses the action opened at `open`, whose content starts at `inner`.
fn parse_action(text: &str, open: usize, inner: usize) -> Result<Action, TemplateError> {
    if text[inner..].starts_with("/*") {
        let Some(close) = text[inner + 2..].find("*/") else {
            return Err(error(open, "unclosed comment"));
        };
        let after = inner + 2 + close + 2;
        let rest = &text[after..];
        return if rest.starts_with("}}") {
            Ok(Action {
                expr: None,
                end: after + 2,
                trim_after: false,
            })
        } else if has_right_trim(rest) {
            Ok(Action {
                expr: None,
                end: after + 4,
                trim_after: true,
            })
        } else {
            Err(error(after, "comment ends before closing delimiter"))
        };
    }
    let (toks, close, end, trim_after) = lex_action(text, open, inner)?;
    let mut parser = Parser {
        text,
        toks,
        i: 0,
        close,
    };
    let expr = parser.pipeline(0, None)?;
    Ok(Action {
        expr: Some(expr),
        end,
        trim_after,
    })
}

/// Returns the tokens, the offset of the closing delimiter, the offset just past it and
/// whether it trims.
fn lex_action(
    text: &str,
    open: usize,
    mut pos: usize,
) -> Result<(Vec<Tok>, usize, usize, bool), TemplateError> {
    let mut toks = Vec::new();
    loop {
        let rest = &text[pos..];
        let Some(c) = rest.chars().next() else {
            return Err(error(open, "unclosed action"));
        };
        if rest.starts_with("}}") {
            return Ok((toks, pos, pos + 2, false));
        }
        if is_go_space(c) {
            if has_right_trim(rest) {
                return Ok((toks, pos, pos + 4, true));
            }
            pos += 1;
            continue;
        }
        let start = pos;
        let next = rest[c.len_utf8()..].chars().next();
        let kind = match c {
            '"' => {
                let (s, end) = lex_quoted(text, start)?;
                pos = end;
                TokKind::Str(s)
            }
            '`' => {
                let Some(len) = rest[1..].find('`') else {
                    return Err(error(start, "unterminated raw quoted string"));
                };
                pos = start + 1 + len + 1;
                // Go drops carriage returns from raw strings.
                TokKind::Str(rest[1..1 + len].replace('\r', ""))
            }
            '|' | '(' | ')' | ',' => {
                pos += 1;
                match c {
                    '|' => TokKind::Pipe,
                    '(' => TokKind::LParen,
                    ')' => TokKind::RParen,
                    _ => TokKind::Comma,
                }
            }
            ':' if next == Some('=') => {
                pos += 2;
                TokKind::Declare
            }
            '=' => {
                pos += 1;
                TokKind::Declare
            }
            '$' => {
                let (name, end) = lex_ident(text, start + 1);
                let (fields, end) = lex_fields(text, end);
                pos = end;
                check_terminator(text, start, pos)?;
                TokKind::Var(name, fields)
            }
            '.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                let (lit, end) = lex_number(text, start)?;
                pos = end;
                TokKind::Num(lit)
            }
            '.' => {
                let (fields, end) = lex_fields(text, start);
                pos = end;
                if fields.is_empty() {
                    pos = start + 1;
                    TokKind::Dot
                } else {
                    check_terminator(text, start, pos)?;
                    TokKind::Field(fields)
                }
            }
            '0'..='9' => {
                let (lit, end) = lex_number(text, start)?;
                pos = end;
                TokKind::Num(lit)
            }
            '+' | '-'
                if next.is_some_and(|n| n.is_ascii_digit())
                    || (next == Some('.')
                        && rest[2..].chars().next().is_some_and(|n| n.is_ascii_digit())) =>
            {
                let (lit, end) = lex_number(text, start)?;
                pos = end;
                TokKind::Num(lit)
            }
            '\'' => return Err(error(start, "character constants are not supported")),
            c if is_ident_char(c) => {
                let (name, end) = lex_ident(text, start);
                pos = end;
                check_terminator(text, start, pos)?;
                TokKind::Ident(name)
            }
            c => {
                return Err(error(
                    start,
                    format!("unexpected \"{}\" in action", c.escape_debug()),
                ));
            }
        };
        toks.push(Tok {
            kind,
            start,
            end: pos,
        });
    }
}

fn lex_ident(text: &str, start: usize) -> (String, usize) {
    let len = text[start..]
        .find(|c: char| !is_ident_char(c))
        .unwrap_or(text.len() - start);
    (text[start..start + len].to_string(), start + len)
}

fn lex_fields(text: &str, mut pos: usize) -> (Vec<(String, usize)>, usize) {
    let mut fields = Vec::new();
    while text[pos..].starts_with('.')
        && text[pos + 1..]
            .chars()
            .next()
            .is_some_and(|c| is_ident_char(c) && !c.is_ascii_digit())
    {
        let (name, end) = lex_ident(text, pos + 1);
        fields.push((name, pos));
        pos = end;
    }
    (fields, pos)
}

/// Go insists that a name is followed by a space, a delimiter or punctuation; the check
/// turns `$value*100` into an error about the `*` rather than a puzzling one later.
fn check_terminator(text: &str, start: usize, end: usize) -> Result<(), TemplateError> {
    let rest = &text[end..];
    match rest.chars().next() {
        None => Ok(()),
        Some(c) if is_go_space(c) || matches!(c, '|' | '(' | ')' | ',' | ':' | '=') => Ok(()),
        Some(_) if rest.starts_with("}}") => Ok(()),
        Some(c) => Err(error(
            end,
            format!(
                "unexpected \"{}\" after {}: sidewatch templates have no operators",
                c.escape_debug(),
                &text[start..end]
            ),
        )),
    }
}

/// Lexes a `"…"` string at `start`; returns its value and the offset past it.
fn lex_quoted(text: &str, start: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    let at = |i: usize| start + 1 + i;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, at(i) + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(s) = simple {
                    out.push(s);
                    continue;
                }
                let (radix, digits) = match e {
                    'x' => (16, 2),
                    'u' => (16, 4),
                    'U' => (16, 8),
                    '0'..='7' => (8, 2),
                    '\n' => break,
                    _ => {
                        return Err(error(
                            at(i),
                            format!("unknown escape sequence \\{}", e.escape_debug()),
                        ));
                    }
                };
                let mut code = if e.is_ascii_digit() {
                    e.to_digit(8).unwrap_or(0)
                } else {
                    0
                };
                for _ in 0..digits {
                    let d = chars.next().and_then(|(_, d)| d.to_digit(radix));
                    let Some(d) = d else {
                        return Err(error(at(i), "invalid escape sequence in string"));
                    };
                    code = code.saturating_mul(radix).saturating_add(d);
                }
                // \x and octal escapes are bytes in Go; only ASCII ones are characters.
                let byte_escape = e == 'x' || e.is_ascii_digit();
                match char::from_u32(code) {
                    Some(ch) if !byte_escape || ch.is_ascii() => out.push(ch),
                    Some(_) => {
                        return Err(error(
                            at(i),
                            "\\x and octal escapes above \\x7f are bytes, not characters: write the character itself or use \\u",
                        ));
                    }
                    None => {
                        return Err(error(
                            at(i),
                            "escape sequence is not a valid unicode character",
                        ));
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(error(start, "unterminated quoted string"))
}

/// Lexes a number the way Go's template lexer does: ints are `int`, anything with a
/// `.`, `e` or `p` is `float64` (so `printf "%d" 1.0` is an error, as it is in Go).
fn lex_number(text: &str, start: usize) -> Result<(Lit, usize), TemplateError> {
    let bytes = text.as_bytes();
    let mut end = start;
    if matches!(bytes[end], b'+' | b'-') {
        end += 1;
    }
    while end < bytes.len() {
        let b = bytes[end];
        let after_exponent = end > start && matches!(bytes[end - 1], b'e' | b'E' | b'p' | b'P');
        if b.is_ascii_alphanumeric()
            || b == b'_'
            || b == b'.'
            || (after_exponent && matches!(b, b'+' | b'-'))
        {
            end += 1;
        } else {
            break;
        }
    }
    let raw = &text[start..end];
    let bad = || error(start, format!("bad number syntax: \"{raw}\""));
    let cleaned = raw.replace('_', "");
    let (negative, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, &cleaned[..]),
    };
    let radix_body = |prefix: [&str; 2], radix: u32| {
        prefix
            .iter()
            .find_map(|p| body.strip_prefix(p))
            .map(|digits| (digits, radix))
    };
    let int = if let Some((digits, radix)) = radix_body(["0x", "0X"], 16)
        .or_else(|| radix_body(["0o", "0O"], 8))
        .or_else(|| radix_body(["0b", "0B"], 2))
    {
        Some(i64::from_str_radix(digits, radix).map_err(|_| bad())?)
    } else if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() {
        // Go reads a leading 0 as octal: `{{ 017 }}` prints 15.
        let radix = if body.len() > 1 && body.starts_with('0') {
            8
        } else {
            10
        };
        let too_large = || error(start, format!("integer too large: \"{raw}\""));
        Some(
            i64::from_str_radix(body, radix).map_err(|e| match e.kind() {
                std::num::IntErrorKind::PosOverflow => too_large(),
                _ => bad(),
            })?,
        )
    } else {
        None
    };
    if let Some(v) = int {
        return Ok((Lit::Int(if negative { -v } else { v }), end));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(bad());
    }
    match body.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok((Lit::Float(if negative { -v } else { v }), end)),
        _ => Err(bad()),
    }
}

// ---------------------------------------------------------------------------------
// Parsing and type checking

/// An expression with its static type and where it is in the text.
#[derive(Clone, Debug)]
struct Typed {
    expr: Expr,
    ty: Ty,
    start: usize,
    end: usize,
}

enum Operand {
    /// An identifier: a function, called with the rest of the command.
    Func {
        name: String,
        start: usize,
    },
    Expr(Typed),
}

impl Operand {
    fn start(&self) -> usize {
        match self {
            Operand::Func { start, .. } => *start,
            Operand::Expr(t) => t.start,
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    i: usize,
    /// Offset of the closing `}}`, where "missing …" errors point.
    close: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn peek_start(&self) -> usize {
        self.peek().map_or(self.close, |t| t.start)
    }

    /// Source text of a span, shortened for messages.
    fn snippet(&self, start: usize, end: usize) -> String {
        let s = self.text.get(start..end).unwrap_or("");
        if s.chars().count() > 40 {
            let cut: String = s.chars().take(37).collect();
            format!("{cut}...")
        } else {
            s.to_string()
        }
    }

    /// `command ('|' command)*`, up to the end of the action or, inside parentheses
    /// opened at `paren`, up to and including the `)`.
    fn pipeline(&mut self, depth: usize, paren: Option<usize>) -> Result<Typed, TemplateError> {
        if let (
            Some(Tok {
                kind: TokKind::Var(..),
                start,
                ..
            }),
            Some(Tok {
                kind: TokKind::Declare | TokKind::Comma,
                ..
            }),
        ) = (self.toks.get(self.i), self.toks.get(self.i + 1))
        {
            return Err(error(
                *start,
                "variable declarations are not supported in sidewatch templates",
            ));
        }
        let mut acc: Option<Typed> = None;
        let mut stage = 0;
        loop {
            stage += 1;
            let mut operands = Vec::new();
            while let Some(tok) = self.peek() {
                if matches!(tok.kind, TokKind::Pipe | TokKind::RParen) {
                    break;
                }
                operands.push(self.operand(depth)?);
            }
            if operands.is_empty() {
                let message = match (stage, paren) {
                    (1, Some(_)) => "missing value in parentheses",
                    (1, None) => "missing value for command",
                    _ => "missing command after \"|\"",
                };
                return Err(error(self.peek_start(), message));
            }
            acc = Some(self.command(operands, acc, stage)?);
            if matches!(
                self.peek(),
                Some(Tok {
                    kind: TokKind::Pipe,
                    ..
                })
            ) {
                self.i += 1;
            } else {
                break;
            }
        }
        let Some(mut typed) = acc else {
            return Err(error(self.peek_start(), "missing value for command"));
        };
        match (paren, self.peek()) {
            (
                Some(_),
                Some(
                    tok @ Tok {
                        kind: TokKind::RParen,
                        ..
                    },
                ),
            ) => {
                typed.end = tok.end;
                self.i += 1;
            }
            (Some(open), _) => return Err(error(open, "unclosed left parenthesis")),
            (None, Some(tok)) => return Err(error(tok.start, "unexpected \")\"")),
            (None, None) => {}
        }
        if let Some(open) = paren {
            typed.start = open;
        }
        Ok(typed)
    }

    fn operand(&mut self, depth: usize) -> Result<Operand, TemplateError> {
        let Some(tok) = self.toks.get(self.i).cloned() else {
            return Err(error(self.close, "missing value for command"));
        };
        self.i += 1;
        let typed = |expr: Expr, ty: Ty| {
            Ok(Operand::Expr(Typed {
                expr,
                ty,
                start: tok.start,
                end: tok.end,
            }))
        };
        match tok.kind {
            TokKind::Str(s) => typed(Expr::Const(Lit::Str(s)), Ty::Str),
            TokKind::Num(lit) => {
                let ty = lit.ty();
                typed(Expr::Const(lit), ty)
            }
            TokKind::Ident(name) => match name.as_str() {
                "true" | "false" => typed(Expr::Const(Lit::Bool(name == "true")), Ty::Bool),
                "nil" => Err(error(
                    tok.start,
                    "nil is not a value in sidewatch templates",
                )),
                k if KEYWORDS.contains(&k) => Err(error(
                    tok.start,
                    format!("`{k}` is not supported in sidewatch templates"),
                )),
                _ => Ok(Operand::Func {
                    name,
                    start: tok.start,
                }),
            },
            TokKind::Var(name, fields) => {
                let (expr, ty) = self.variable(&format!("${name}"), tok.start, &fields)?;
                typed(expr, ty)
            }
            TokKind::Field(fields) => {
                let (root, rest) = fields
                    .split_first()
                    .map_or(("", &[][..]), |(f, rest)| (f.0.as_str(), rest));
                let root = format!(".{root}");
                let var = match root.as_str() {
                    ".Labels" => "$labels",
                    ".Value" => "$value",
                    ".ExternalLabels" => "$externalLabels",
                    ".ExternalURL" => "$externalURL",
                    _ => {
                        let hint = did_you_mean(&root, FIELDS)
                            .map(|s| format!(" (did you mean \"{s}\"?)"))
                            .unwrap_or_default();
                        return Err(error(tok.start, format!("unknown field \"{root}\"{hint}")));
                    }
                };
                let (expr, ty) = self.variable_named(var, &root, tok.start, rest)?;
                typed(expr, ty)
            }
            TokKind::Dot => Err(error(
                tok.start,
                "\".\" (the whole alert) cannot be used: use .Value or .Labels.name",
            )),
            TokKind::LParen => {
                if depth >= MAX_DEPTH {
                    return Err(error(tok.start, "parentheses nested too deeply"));
                }
                Ok(Operand::Expr(self.pipeline(depth + 1, Some(tok.start))?))
            }
            TokKind::Declare => Err(error(
                tok.start,
                "variable declarations are not supported in sidewatch templates",
            )),
            TokKind::Comma => Err(error(tok.start, "unexpected \",\"")),
            TokKind::Pipe | TokKind::RParen => Err(error(
                tok.start,
                format!("unexpected \"{}\"", &self.text[tok.start..tok.end]),
            )),
        }
    }

    fn variable(
        &self,
        name: &str,
        start: usize,
        fields: &[(String, usize)],
    ) -> Result<(Expr, Ty), TemplateError> {
        if name == "$" {
            return Err(error(
                start,
                "\"$\" (the whole alert) cannot be used: use $value or $labels.name",
            ));
        }
        if !VARIABLES.contains(&name) {
            let hint = did_you_mean(name, VARIABLES)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return Err(error(start, format!("undefined variable \"{name}\"{hint}")));
        }
        self.variable_named(name, name, start, fields)
    }

    /// Resolves one of the four names (`written` is how the text spelled it) with the
    /// fields chained to it.
    fn variable_named(
        &self,
        var: &str,
        written: &str,
        start: usize,
        fields: &[(String, usize)],
    ) -> Result<(Expr, Ty), TemplateError> {
        let no_field = |base: &str, ty: Ty, (field, at): &(String, usize)| {
            Err(error(
                *at,
                format!("{base} is {} and has no field \"{field}\"", ty.describe()),
            ))
        };
        match (var, fields) {
            ("$labels", []) => Ok((Expr::Labels, Ty::Labels)),
            ("$labels", [(name, _)]) => Ok((Expr::Label(name.clone()), Ty::Str)),
            ("$externalLabels", []) => Ok((Expr::Const(Lit::Labels(Labels::new())), Ty::Labels)),
            ("$externalLabels", [_]) => Ok((Expr::Const(Lit::Str(String::new())), Ty::Str)),
            ("$labels" | "$externalLabels", [first, second, ..]) => {
                let base = format!("{written}.{}", first.0);
                no_field(&base, Ty::Str, second)
            }
            ("$value", []) => Ok((Expr::Value, Ty::Float)),
            ("$value", [first, ..]) => no_field(written, Ty::Float, first),
            ("$externalURL", []) => Ok((Expr::Const(Lit::Str(String::new())), Ty::Str)),
            (_, [first, ..]) => no_field(written, Ty::Str, first),
            (_, []) => Err(error(start, format!("undefined variable \"{written}\""))),
        }
    }

    /// A command: a function call with its operands (and the piped value last), or a
    /// single value.
    fn command(
        &self,
        operands: Vec<Operand>,
        piped: Option<Typed>,
        stage: usize,
    ) -> Result<Typed, TemplateError> {
        let mut operands = operands.into_iter();
        let Some(first) = operands.next() else {
            return Err(error(self.close, "missing value for command"));
        };
        match first {
            Operand::Func { name, start } => {
                let mut args = Vec::new();
                let mut end = start + name.len();
                for op in operands {
                    let arg = match op {
                        // A name as an argument calls that function with no arguments,
                        // as in Go; every function here needs some, so this reports it.
                        Operand::Func { name, start } => self.call(&name, start, Vec::new())?,
                        Operand::Expr(t) => t,
                    };
                    end = arg.end;
                    args.push(arg);
                }
                let call_start = piped.as_ref().map_or(start, |p| p.start);
                if let Some(p) = piped {
                    end = end.max(p.end);
                    args.push(p);
                }
                let mut typed = self.call(&name, start, args)?;
                typed.start = call_start;
                typed.end = end;
                Ok(typed)
            }
            Operand::Expr(value) => {
                if let Some(next) = operands.next() {
                    return Err(error(
                        next.start(),
                        format!(
                            "{} is not a function and cannot take arguments",
                            self.snippet(value.start, value.end)
                        ),
                    ));
                }
                if piped.is_some() {
                    return Err(error(
                        value.start,
                        format!(
                            "{} is not a function and cannot follow \"|\" (pipeline stage {stage})",
                            self.snippet(value.start, value.end)
                        ),
                    ));
                }
                Ok(value)
            }
        }
    }

    /// Checks a call's arguments and builds it; a call on constants is evaluated now.
    fn call(&self, name: &str, start: usize, args: Vec<Typed>) -> Result<Typed, TemplateError> {
        let arity = |want: usize, params: &str| -> Result<(), TemplateError> {
            if args.len() == want {
                Ok(())
            } else {
                let plural = if want == 1 { "" } else { "s" };
                Err(error(
                    start,
                    format!(
                        "{name} takes {want} argument{plural} ({params}), got {}",
                        args.len()
                    ),
                ))
            }
        };
        let (func, ty, args) = match name {
            "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
            | "humanizeTimestamp" => {
                arity(1, "a number")?;
                let args = vec![self.number_arg(name, args.into_iter().next())?];
                let func = match name {
                    "humanize" => Func::Humanize,
                    "humanize1024" => Func::Humanize1024,
                    "humanizeDuration" => Func::HumanizeDuration,
                    "humanizePercentage" => Func::HumanizePercentage,
                    _ => Func::HumanizeTimestamp,
                };
                (func, Ty::Str, args)
            }
            "toUpper" | "toLower" | "title" => {
                arity(1, "a string")?;
                self.string_arg(name, &args[0])?;
                let func = match name {
                    "toUpper" => Func::ToUpper,
                    "toLower" => Func::ToLower,
                    _ => Func::Title,
                };
                (func, Ty::Str, args)
            }
            "match" => {
                arity(2, "pattern, text")?;
                let re = self.regex_arg(name, &args[0])?;
                self.string_arg(name, &args[1])?;
                (
                    Func::Match(re),
                    Ty::Bool,
                    args.into_iter().skip(1).collect(),
                )
            }
            "reReplaceAll" => {
                arity(3, "pattern, replacement, text")?;
                let re = self.regex_arg(name, &args[0])?;
                self.string_arg(name, &args[1])?;
                self.string_arg(name, &args[2])?;
                (
                    Func::ReReplaceAll(re),
                    Ty::Str,
                    args.into_iter().skip(1).collect(),
                )
            }
            "printf" => {
                let Some(format) = args.first() else {
                    return Err(error(start, "printf needs a format string"));
                };
                let Expr::Const(Lit::Str(f)) = &format.expr else {
                    return Err(error(
                        format.start,
                        "the format of printf must be a string literal",
                    ));
                };
                let pieces = parse_format(f).map_err(|m| error(format.start, m))?;
                let verbs: Vec<&Spec> = pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Verb(spec) => Some(spec),
                        Piece::Text(_) => None,
                    })
                    .collect();
                let values = &args[1..];
                if verbs.len() != values.len() {
                    let plural = |n: usize, word: &str| {
                        format!("{n} {word}{}", if n == 1 { "" } else { "s" })
                    };
                    return Err(error(
                        format.start,
                        format!(
                            "the printf format has {} but is given {}",
                            plural(verbs.len(), "verb"),
                            plural(values.len(), "argument")
                        ),
                    ));
                }
                for (spec, arg) in verbs.iter().zip(values) {
                    self.check_verb(spec, arg)?;
                }
                (
                    Func::Printf(pieces),
                    Ty::Str,
                    args.into_iter().skip(1).collect(),
                )
            }
            k if KEYWORDS.contains(&k) => {
                return Err(error(
                    start,
                    format!("`{k}` is not supported in sidewatch templates"),
                ));
            }
            f if UNSUPPORTED_FUNCTIONS.contains(&f) => {
                return Err(error(
                    start,
                    format!("`{f}` is not supported in sidewatch templates"),
                ));
            }
            _ => {
                let hint = did_you_mean(name, FUNCTIONS)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                return Err(error(start, format!("unknown function \"{name}\"{hint}")));
            }
        };
        let end = args
            .iter()
            .map(|a| a.end)
            .max()
            .unwrap_or(start + name.len());
        let constant = args.iter().all(|a| matches!(a.expr, Expr::Const(_)));
        let call = Call {
            func,
            args: args.into_iter().map(|a| a.expr).collect(),
        };
        let expr = if constant {
            // Nothing in it can change between alerts: evaluate it once now.
            let empty = Labels::new();
            let lit = apply(
                &call.func,
                &call
                    .args
                    .iter()
                    .map(|a| eval(a, &empty, 0.0))
                    .collect::<Vec<_>>(),
            )
            .into_lit();
            Expr::Const(lit)
        } else {
            Expr::Call(Box::new(call))
        };
        Ok(Typed {
            expr,
            ty,
            start,
            end,
        })
    }

    fn type_error(&self, name: &str, want: &str, arg: &Typed) -> TemplateError {
        error(
            arg.start,
            format!(
                "{name} needs {want}, got {} ({})",
                self.snippet(arg.start, arg.end),
                arg.ty.describe()
            ),
        )
    }

    /// Numbers, and strings holding one, as Prometheus's `convertToFloat` takes them. A
    /// constant string is converted now so a bad one is an error here.
    fn number_arg(&self, name: &str, arg: Option<Typed>) -> Result<Typed, TemplateError> {
        let Some(mut arg) = arg else {
            return Err(error(self.close, format!("{name} needs a number")));
        };
        match (&arg.expr, arg.ty) {
            (_, Ty::Float | Ty::Int) => Ok(arg),
            (Expr::Const(Lit::Str(s)), _) => match parse_go_float(s) {
                Some(v) => {
                    arg.expr = Expr::Const(Lit::Float(v));
                    arg.ty = Ty::Float;
                    Ok(arg)
                }
                None => Err(error(
                    arg.start,
                    format!("{name} needs a number, and {s:?} is not one"),
                )),
            },
            (_, Ty::Str) => Ok(arg),
            (_, Ty::Bool | Ty::Labels) => Err(self.type_error(name, "a number", &arg)),
        }
    }

    fn string_arg(&self, name: &str, arg: &Typed) -> Result<(), TemplateError> {
        if arg.ty == Ty::Str {
            Ok(())
        } else {
            Err(self.type_error(name, "a string", arg))
        }
    }

    fn regex_arg(&self, name: &str, arg: &Typed) -> Result<Regex, TemplateError> {
        let Expr::Const(Lit::Str(pattern)) = &arg.expr else {
            return Err(error(
                arg.start,
                format!("the pattern of {name} must be a string literal"),
            ));
        };
        Regex::new(pattern).map_err(|e| {
            // The regex crate's message spans lines with a caret; keep its last line.
            let full = e.to_string();
            let short = full
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or(full.trim())
                .to_string();
            error(arg.start, format!("invalid pattern in {name}: {short}"))
        })
    }

    fn check_verb(&self, spec: &Spec, arg: &Typed) -> Result<(), TemplateError> {
        let (ok, want, hint) = match spec.verb {
            'v' => (true, "", ""),
            's' => (
                matches!(arg.ty, Ty::Str | Ty::Labels),
                "a string",
                if matches!(arg.ty, Ty::Float | Ty::Int) {
                    "; use %v or %g"
                } else {
                    ""
                },
            ),
            'd' => (
                arg.ty == Ty::Int,
                "an integer",
                if arg.ty == Ty::Float {
                    "; use %.0f for a float without decimals"
                } else {
                    ""
                },
            ),
            't' => (arg.ty == Ty::Bool, "a boolean", ""),
            _ => (
                arg.ty == Ty::Float,
                "a float",
                if arg.ty == Ty::Int {
                    "; write the number with a decimal point or use %d"
                } else {
                    ""
                },
            ),
        };
        if ok {
            return Ok(());
        }
        Err(error(
            arg.start,
            format!(
                "printf %{} needs {want}, got {} ({}){hint}",
                spec.verb,
                self.snippet(arg.start, arg.end),
                arg.ty.describe()
            ),
        ))
    }
}

/// Go's `strconv.ParseFloat`, near enough: Rust's parser accepts the same decimal forms
/// and `Inf`/`NaN` spellings (not Go's hex floats or `_` separators).
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

// ---------------------------------------------------------------------------------
// Prometheus's functions

/// `%.4g`, the format every Prometheus humanizer ends with.
fn g4(v: f64) -> String {
    format_float(v, b'g', 4)
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    // "ki", lower-case, is what Prometheus prints.
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        // Whole seconds from a minute up, as Prometheus (`int64(v)` truncates).
        let duration = v as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", g4(v))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

fn humanize_percentage(v: f64) -> String {
    format!("{}%", g4(v * 100.0))
}

/// Go's `time.Time.String()` in UTC of the Unix time `v`, truncated to milliseconds
/// as Prometheus's `model.Time` does: `2015-06-23 13:19:44.128 +0000 UTC`.
fn humanize_timestamp(v: f64) -> String {
    let nanos = v * 1e9;
    if !v.is_finite() || nanos >= i64::MAX as f64 || nanos < i64::MIN as f64 {
        return g4(v);
    }
    let millis = (nanos as i64) / 1_000_000;
    let secs = millis.div_euclid(1000);
    let milli = millis.rem_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    let fraction = if milli == 0 {
        String::new()
    } else {
        format!(".{milli:03}").trim_end_matches('0').to_string()
    };
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}{fraction} +0000 UTC",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go maps case one rune to one rune (`ToUpper("ß")` is `"ß"`); Rust's full mappings
/// can expand, so a rune whose mapping is not a single rune stays as it is.
fn map_case<I: Iterator<Item = char> + ExactSizeIterator>(c: char, mapped: I) -> char {
    let mut mapped = mapped;
    if mapped.len() == 1 {
        mapped.next().unwrap_or(c)
    } else {
        c
    }
}

fn map_chars<I>(s: &str, f: fn(char) -> I) -> String
where
    I: Iterator<Item = char> + ExactSizeIterator,
{
    s.chars().map(|c| map_case(c, f(c))).collect()
}

/// Go's `strings.Title`: upper-cases the first letter of every word and leaves the rest
/// alone (`"aa bb CC"` → `"Aa Bb CC"`).
fn title(s: &str) -> String {
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphanumeric() {
            return false;
        }
        c.is_whitespace()
    }
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_separator(prev) {
                map_case(c, c.to_uppercase())
            } else {
                c
            };
            prev = c;
            out
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// printf and Go's number formatting

#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Verb(Spec),
}

#[derive(Clone, Copy, Debug, Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
    verb: char,
}

fn parse_format(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => {
                    spec.minus = true;
                    // Go pads with zeros only on the left.
                    spec.zero = false;
                }
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                '#' => return Err("the printf flag # is not supported".into()),
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        match chars.peek() {
            Some('[') => return Err("printf argument indexes (%[n]) are not supported".into()),
            Some('*') => return Err("printf * widths are not supported".into()),
            _ => {}
        }
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            if chars.peek() == Some(&'*') {
                return Err("printf * precisions are not supported".into());
            }
            spec.prec = Some(number(&mut chars).unwrap_or(0));
        }
        if spec.width.max(spec.prec).is_some_and(|n| n > MAX_WIDTH) {
            return Err(format!(
                "printf widths and precisions above {MAX_WIDTH} are not supported"
            ));
        }
        match chars.next() {
            None => return Err("the printf format ends in the middle of a verb".into()),
            Some('%') => text.push('%'),
            Some(verb @ ('v' | 's' | 'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 't')) => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                spec.verb = verb;
                pieces.push(Piece::Verb(spec));
            }
            Some(other) => {
                return Err(format!(
                    "printf verb %{} is not supported (use %v, %s, %d, %f, %e, %g or %t)",
                    other.escape_debug()
                ));
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn sprintf(pieces: &[Piece], args: &[Val<'_>]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Verb(spec) => match args.next() {
                Some(Val::Float(v)) => out.push_str(&fmt_float(spec, *v)),
                Some(Val::Int(v)) => out.push_str(&fmt_int(spec, *v)),
                Some(Val::Bool(b)) => pad(&mut out, spec, if *b { "true" } else { "false" }),
                Some(other) => {
                    let text = text_of(other);
                    let text: Cow<'_, str> = match spec.prec {
                        Some(p) => Cow::Owned(text.chars().take(p).collect()),
                        None => text,
                    };
                    pad(&mut out, spec, &text);
                }
                None => {}
            },
        }
    }
    out
}

/// Pads to the width with spaces, on the left unless `-`.
fn pad(out: &mut String, spec: &Spec, s: &str) {
    let n = s.chars().count();
    let fill = spec.width.unwrap_or(0).saturating_sub(n);
    if spec.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(s);
    }
}

/// Go's `fmt` for a float: the number from `format_float`, then sign flags and padding.
fn fmt_float(spec: &Spec, v: f64) -> String {
    let prec = spec.prec.map(|p| p as i32);
    let num = match spec.verb {
        'e' | 'E' | 'g' | 'G' => format_float(
            v,
            spec.verb as u8,
            prec.unwrap_or(if matches!(spec.verb, 'e' | 'E') {
                6
            } else {
                -1
            }),
        ),
        'f' | 'F' => format_float(v, b'f', prec.unwrap_or(6)),
        _ => format_float(v, b'g', prec.unwrap_or(-1)),
    };
    let mut num = if num.starts_with(['-', '+']) {
        num
    } else {
        format!("+{num}")
    };
    if spec.space && num.starts_with('+') && !spec.plus {
        num.replace_range(0..1, " ");
    }
    let mut out = String::new();
    if v.is_nan() || v.is_infinite() {
        // Not padded with zeros, and NaN gets a sign only when asked for.
        if v.is_nan() && !spec.space && !spec.plus {
            num.remove(0);
        }
        pad(
            &mut out,
            &Spec {
                zero: false,
                ..*spec
            },
            &num,
        );
        return out;
    }
    if spec.plus || !num.starts_with('+') {
        let width = spec.width.unwrap_or(0);
        if spec.zero && width > num.len() {
            out.push_str(&num[..1]);
            out.extend(std::iter::repeat_n('0', width - num.len()));
            out.push_str(&num[1..]);
        } else {
            pad(&mut out, spec, &num);
        }
    } else if spec.zero && spec.width.unwrap_or(0) > num.len() - 1 {
        out.extend(std::iter::repeat_n(
            '0',
            spec.width.unwrap_or(0) - (num.len() - 1),
        ));
        out.push_str(&num[1..]);
    } else {
        pad(&mut out, spec, &num[1..]);
    }
    out
}

/// Go's `fmt` for an integer: precision is a minimum digit count; `0` pads after the
/// sign.
fn fmt_int(spec: &Spec, v: i64) -> String {
    let mut digits = v.unsigned_abs().to_string();
    let sign = if v < 0 {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let min_digits = match spec.prec {
        Some(0) if v == 0 => {
            digits.clear();
            0
        }
        Some(p) => p,
        None if spec.zero && !spec.minus => spec.width.unwrap_or(0).saturating_sub(sign.len()),
        None => 0,
    };
    if digits.len() < min_digits {
        digits.insert_str(0, &"0".repeat(min_digits - digits.len()));
    }
    let mut out = String::new();
    pad(&mut out, spec, &format!("{sign}{digits}"));
    out
}

/// The decimal digits of a float (no leading or trailing zeros; empty for zero) and the
/// position of the decimal point: the value is `0.d₁d₂… × 10^dp`.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

/// Reads Rust's `{:e}` output (`1.2345e3`) into `Digits`.
fn digits_of(exp_form: &str) -> Digits {
    let (mantissa, exponent) = exp_form.split_once('e').unwrap_or((exp_form, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mut d: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits {
        d,
        dp: exponent + 1,
    }
}

/// Go's `strconv.FormatFloat(v, verb, prec, 64)` for `e`, `E`, `f`, `g`, `G`, with
/// `prec` -1 meaning the shortest digits that read back as `v`. Rust supplies correctly
/// rounded digits (shortest with `{:e}`, fixed with `{:.N e}`, the same round-half-even
/// on the exact value as Go); this lays them out by Go's rules, where `%g` switches to
/// an exponent when it is below -4 or at least the precision (6 for shortest, so
/// `1e+06`), and exponents have at least two digits.
fn format_float(v: f64, verb: u8, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let neg = v.is_sign_negative();
    let a = v.abs();
    let sign = if neg { "-" } else { "" };
    let shortest = prec < 0;
    match verb {
        b'f' | b'F' => {
            if shortest {
                let d = digits_of(&format!("{a:e}"));
                let p = (d.d.len() as i32 - d.dp).max(0);
                fmt_f(neg, &d, p)
            } else {
                format!("{sign}{:.*}", prec as usize, a)
            }
        }
        b'e' | b'E' => {
            let (d, p) = if shortest {
                let d = digits_of(&format!("{a:e}"));
                let p = d.d.len() as i32 - 1;
                (d, p)
            } else {
                (digits_of(&format!("{:.*e}", prec as usize, a)), prec)
            };
            fmt_e(neg, &d, p, verb)
        }
        _ => {
            let upper = verb == b'G';
            let (d, mut prec) = if shortest {
                let d = digits_of(&format!("{a:e}"));
                let n = d.d.len() as i32;
                (d, n)
            } else {
                let p = prec.max(1);
                (digits_of(&format!("{:.*e}", (p - 1) as usize, a)), p)
            };
            let nd = d.d.len() as i32;
            let mut eprec = prec;
            if eprec > nd && nd >= d.dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = d.dp - 1;
            if exp < -4 || exp >= eprec {
                if prec > nd {
                    prec = nd;
                }
                return fmt_e(neg, &d, prec - 1, if upper { b'E' } else { b'e' });
            }
            if prec > d.dp {
                prec = nd;
            }
            fmt_f(neg, &d, (prec - d.dp).max(0))
        }
    }
}

/// `-d.ddde±dd`
fn fmt_e(neg: bool, d: &Digits, prec: i32, verb: u8) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push(d.d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        out.push('.');
        let m = d.d.len().min(prec as usize + 1);
        let mut i = 1;
        if i < m {
            out.extend(d.d[i..m].iter().map(|&c| c as char));
            i = m;
        }
        while i <= prec as usize {
            out.push('0');
            i += 1;
        }
    }
    out.push(if verb == b'E' { 'E' } else { 'e' });
    let exp = if d.d.is_empty() { 0 } else { d.dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let exp = exp.unsigned_abs();
    if exp < 10 {
        out.push('0');
    }
    out.push_str(&exp.to_string());
    out
}

/// `-ddd.ddd`
fn fmt_f(neg: bool, d: &Digits, prec: i32) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if d.dp > 0 {
        let m = d.d.len().min(d.dp as usize);
        out.extend(d.d[..m].iter().map(|&c| c as char));
        out.extend(std::iter::repeat_n('0', d.dp as usize - m));
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = d.dp + i - 1;
            let c = if j >= 0 && (j as usize) < d.d.len() {
                d.d[j as usize] as char
            } else {
                '0'
            };
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let template = Template::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        template.render(&Labels::from_pairs(labels.iter().copied()), value)
    }

    /// The error drawn under the template, for snapshots.
    fn show_error(text: &str) -> String {
        let e = Template::parse(text).expect_err(text);
        let column = text[..e.offset].chars().count();
        format!("{text}\n{}^ {}", " ".repeat(column), e.message)
    }

    #[test]
    fn spec_example() {
        assert_eq!(
            render(
                "{{ $labels.path }} fails {{ $value | humanizePercentage }} of requests",
                &[("path", "/api/cart")],
                1.0 / 3.0
            ),
            "/api/cart fails 33.33% of requests"
        );
    }

    #[test]
    fn values_print_like_go() {
        let cases: &[(f64, &str)] = &[
            (0.05, "0.05"),
            (1e21, "1e+21"),
            (1.0 / 3.0, "0.3333333333333333"),
            (3.0, "3"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-2.5, "-2.5"),
            (123456.0, "123456"),
            // Go's %v switches to an exponent at 1e6, which is why Prometheus alerts
            // say "1e+06".
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
        ];
        for (v, want) in cases {
            assert_eq!(render("{{ $value }}", &[], *v), *want, "value {v:e}");
            assert_eq!(render("{{ .Value }}", &[], *v), *want, "value {v:e}");
        }
    }

    #[test]
    fn every_function() {
        let labels = [
            ("path", "/api/cart"),
            ("code", "503"),
            ("job", "checkout api"),
        ];
        let cases: &[(&str, f64, &str)] = &[
            // humanize: SI prefixes with %.4g (Prometheus's own test values first).
            ("{{ humanize $value }}", 0.0, "0"),
            ("{{ humanize $value }}", 1.0, "1"),
            ("{{ humanize $value }}", 1234567.0, "1.235M"),
            ("{{ humanize $value }}", 0.12, "120m"),
            ("{{ humanize $value }}", 1234.0, "1.234k"),
            ("{{ humanize $value }}", 0.001234, "1.234m"),
            ("{{ humanize $value }}", -1234.0, "-1.234k"),
            ("{{ humanize $value }}", 1e30, "1e+06Y"),
            ("{{ humanize $value }}", 999.95, "1000"),
            ("{{ $value | humanize }}", f64::INFINITY, "+Inf"),
            ("{{ humanize $value }}", f64::NAN, "NaN"),
            // humanize1024: binary prefixes; |v| <= 1 is printed plainly.
            ("{{ humanize1024 $value }}", 0.0, "0"),
            ("{{ humanize1024 $value }}", 1.0, "1"),
            ("{{ humanize1024 $value }}", 1048576.0, "1Mi"),
            ("{{ humanize1024 $value }}", 0.12, "0.12"),
            ("{{ humanize1024 $value }}", 1536.0, "1.5ki"),
            ("{{ humanize1024 $value }}", -2048.0, "-2ki"),
            ("{{ humanize1024 $value }}", f64::NEG_INFINITY, "-Inf"),
            // humanizeDuration: whole d/h/m/s from a minute up, %.4g seconds below,
            // SI-prefixed seconds under one.
            ("{{ humanizeDuration $value }}", 0.0, "0s"),
            ("{{ humanizeDuration $value }}", 1.0, "1s"),
            ("{{ humanizeDuration $value }}", 60.0, "1m 0s"),
            ("{{ humanizeDuration $value }}", 90.0, "1m 30s"),
            ("{{ humanizeDuration $value }}", 3600.0, "1h 0m 0s"),
            ("{{ humanizeDuration $value }}", 3661.0, "1h 1m 1s"),
            ("{{ humanizeDuration $value }}", 86400.0, "1d 0h 0m 0s"),
            ("{{ humanizeDuration $value }}", 172800.0, "2d 0h 0m 0s"),
            ("{{ humanizeDuration $value }}", 90000.0, "1d 1h 0m 0s"),
            (
                "{{ humanizeDuration $value }}",
                -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
                "-2d 3h 4m 5s",
            ),
            ("{{ humanizeDuration $value }}", 899.99, "14m 59s"),
            ("{{ humanizeDuration $value }}", 0.5, "500ms"),
            ("{{ humanizeDuration $value }}", 0.1, "100ms"),
            ("{{ humanizeDuration $value }}", 0.0001, "100us"),
            ("{{ humanizeDuration $value }}", 0.12345, "123.5ms"),
            ("{{ humanizeDuration $value }}", 2.5e-8, "25ns"),
            ("{{ humanizeDuration $value }}", 60.5, "1m 0s"),
            ("{{ humanizeDuration $value }}", 1.2345, "1.234s"),
            ("{{ humanizeDuration $value }}", 12.345, "12.35s"),
            ("{{ humanizeDuration $value }}", -0.25, "-250ms"),
            ("{{ humanizeDuration $value }}", f64::NAN, "NaN"),
            // humanizePercentage: %.4g of v*100.
            ("{{ humanizePercentage $value }}", -0.22222, "-22.22%"),
            ("{{ humanizePercentage $value }}", 0.0, "0%"),
            ("{{ humanizePercentage $value }}", 0.1234567, "12.35%"),
            ("{{ humanizePercentage $value }}", 1.23456, "123.5%"),
            ("{{ humanizePercentage $value }}", 0.05, "5%"),
            // humanizeTimestamp: Go's time.Time String in UTC, millisecond precision.
            (
                "{{ humanizeTimestamp $value }}",
                1435065584.128,
                "2015-06-23 13:19:44.128 +0000 UTC",
            ),
            (
                "{{ humanizeTimestamp $value }}",
                0.0,
                "1970-01-01 00:00:00 +0000 UTC",
            ),
            (
                "{{ humanizeTimestamp $value }}",
                1.5,
                "1970-01-01 00:00:01.5 +0000 UTC",
            ),
            (
                "{{ humanizeTimestamp $value }}",
                -1.5,
                "1969-12-31 23:59:58.5 +0000 UTC",
            ),
            (
                "{{ humanizeTimestamp $value }}",
                951782400.0,
                "2000-02-29 00:00:00 +0000 UTC",
            ),
            ("{{ humanizeTimestamp $value }}", 1e10, "1e+10"),
            ("{{ humanizeTimestamp $value }}", f64::INFINITY, "+Inf"),
            // Number functions take label values that hold numbers, as Prometheus does;
            // one that does not is printed unchanged.
            ("{{ $labels.code | humanize }}", 0.0, "503"),
            ("{{ humanize1024 $labels.code }}", 0.0, "503"),
            ("{{ humanize $labels.path }}", 0.0, "/api/cart"),
            ("{{ humanize \"2048\" }}", 0.0, "2.048k"),
            ("{{ humanize 1234 }}", 0.0, "1.234k"),
            // Strings.
            ("{{ $labels.path | toUpper }}", 0.0, "/API/CART"),
            ("{{ toLower \"aA bB CC\" }}", 0.0, "aa bb cc"),
            ("{{ \"aa bb CC\" | title }}", 0.0, "Aa Bb CC"),
            ("{{ title $labels.job }}", 0.0, "Checkout Api"),
            (
                "{{ title \"hello-world foo_bar\" }}",
                0.0,
                "Hello-World Foo_bar",
            ),
            ("{{ toUpper \"straße\" }}", 0.0, "STRAßE"),
            (
                "{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}",
                0.0,
                "true false",
            ),
            ("{{ match \"^/api\" $labels.path }}", 0.0, "true"),
            ("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", 0.0, "xa"),
            (
                "{{ reReplaceAll \"/api/(.*)\" \"$1\" $labels.path }}",
                0.0,
                "cart",
            ),
            (
                "{{ $labels.path | reReplaceAll \"/\" \"_\" }}",
                0.0,
                "_api_cart",
            ),
            ("{{ reReplaceAll \"a\" \"$$\" \"banana\" }}", 0.0, "b$n$n$"),
            // printf.
            ("{{ printf \"%.2f\" $value }}", 1.0 / 3.0, "0.33"),
            ("{{ $value | printf \"%.1f%%\" }}", 12.345, "12.3%"),
            ("{{ printf \"%s=%v\" $labels.code $value }}", 0.5, "503=0.5"),
            ("{{ printf \"%d\" 42 }}", 0.0, "42"),
            (
                "{{ printf \"%5d|%-5d|%05d|%+d\" 42 42 42 42 }}",
                0.0,
                "   42|42   |00042|+42",
            ),
            ("{{ printf \"%.3d\" -7 }}", 0.0, "-007"),
            ("{{ printf \"%f\" $value }}", 3.0, "3.000000"),
            (
                "{{ printf \"%8.3f|%-8.3f|%08.3f|%+.1f\" $value $value $value $value }}",
                1.23456,
                "   1.235|1.235   |0001.235|+1.2",
            ),
            ("{{ printf \"%08.3f\" $value }}", -1.23456, "-001.235"),
            ("{{ printf \"%e\" $value }}", 1234.5678, "1.234568e+03"),
            ("{{ printf \"%.2E\" $value }}", 0.000123, "1.23E-04"),
            ("{{ printf \"%g\" $value }}", 1e6, "1e+06"),
            ("{{ printf \"%g\" $value }}", 100000.0, "100000"),
            ("{{ printf \"%.3g\" $value }}", 1234.5, "1.23e+03"),
            ("{{ printf \"%.3g\" $value }}", 0.5, "0.5"),
            ("{{ printf \"%G\" $value }}", 1e-7, "1E-07"),
            ("{{ printf \"%v\" $value }}", 0.1, "0.1"),
            ("{{ printf \"%.2v\" $value }}", 1.0 / 3.0, "0.33"),
            ("{{ printf \"%6.2f\" $value }}", f64::INFINITY, "  +Inf"),
            ("{{ printf \"%06.2f\" $value }}", f64::NAN, "   NaN"),
            ("{{ printf \"%f\" $value }}", f64::NEG_INFINITY, "-Inf"),
            (
                "{{ printf \"%s|%6s|%-6s|%.2s\" $labels.code $labels.code $labels.code $labels.code }}",
                0.0,
                "503|   503|503   |50",
            ),
            (
                "{{ printf \"%t %v\" (match \"5..\" $labels.code) true }}",
                0.0,
                "true true",
            ),
            (
                "{{ printf \"%v\" $labels }}",
                0.0,
                "{code=\"503\", job=\"checkout api\", path=\"/api/cart\"}",
            ),
            ("{{ printf \"%d%%\" 5 }}", 0.0, "5%"),
            (
                "{{ printf \"%s is %s\" $labels.job ($value | humanize) }}",
                2e6,
                "checkout api is 2M",
            ),
        ];
        for (text, value, want) in cases {
            assert_eq!(render(text, &labels, *value), *want, "{text} with {value}");
        }
    }

    #[test]
    fn operands_and_syntax() {
        let labels = [("path", "/api/cart"), ("__name__", "up")];
        let cases: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("", ""),
            ("{{ 1 }}", "1"),
            ("{{ 1.0 }}", "1"),
            ("{{ 1e3 }}", "1000"),
            ("{{ -2.5 }}", "-2.5"),
            ("{{ 0x1F }} {{ 017 }} {{ 1_000 }}", "31 15 1000"),
            ("{{ \"<b>\" }}", "<b>"),
            ("{{ `raw \\n` }}", "raw \\n"),
            ("{{ \"tab\\there\\u00e9\\x41\\101\" }}", "tab\thereéAA"),
            ("{{ true }} {{ false }}", "true false"),
            (
                "{{ .Labels.path }}|{{ $labels.missing }}|{{ .Labels.__name__ }}",
                "/api/cart||up",
            ),
            ("{{ $labels }}", "{__name__=\"up\", path=\"/api/cart\"}"),
            ("{{ .Labels }}", "{__name__=\"up\", path=\"/api/cart\"}"),
            (
                "[{{ $externalLabels.cluster }}][{{ .ExternalLabels.x }}][{{ $externalURL }}][{{ $externalLabels }}]",
                "[][][][{}]",
            ),
            ("{{$value}}", "0.5"),
            ("{{$value|humanizePercentage}}", "50%"),
            ("a {{- $value }} b", "a0.5 b"),
            ("a {{ $value -}} b", "a 0.5b"),
            ("a \n\t {{- $value -}} \n b", "a0.5b"),
            ("{{-3}}", "-3"),
            ("x {{/* a comment */}} y", "x  y"),
            ("x {{- /* a comment */ -}} y", "xy"),
            ("{{ humanize (printf \"%f\" $value) }}", "500m"),
            ("{{ ((($value))) }}", "0.5"),
            ("{{ $value | humanize | toUpper }}", "500M"),
            ("{{ \"}}\" }}", "}}"),
            ("}} {{ \"x\" }}", "}} x"),
            ("{{ \"multi\\nline\" | toUpper }}", "MULTI\nLINE"),
        ];
        for (text, want) in cases {
            assert_eq!(render(text, &labels, 0.5), *want, "{text}");
        }
    }

    #[test]
    fn label_names_and_constants() {
        let t = Template::parse(
            "{{ $labels.path }} {{ .Labels.code | toUpper }} {{ printf \"%s\" $labels.path }} {{ $value }}",
        )
        .unwrap();
        assert_eq!(
            t.label_names(),
            vec!["code".to_string(), "path".to_string()]
        );
        assert!(!t.is_constant());

        for text in [
            "plain",
            "",
            "a {{/* note */}} b",
            "{{ \"x\" | toUpper }}",
            "{{ humanize 1234 }}",
        ] {
            let t = Template::parse(text).unwrap();
            assert!(t.is_constant(), "{text}");
            assert!(t.label_names().is_empty());
        }
        assert_eq!(
            Template::parse("{{ humanize 1234 }}!")
                .unwrap()
                .render(&Labels::new(), 0.0),
            "1.234k!"
        );
        for text in ["{{ $value }}", "{{ $labels }}", "{{ $labels.x }}"] {
            assert!(!Template::parse(text).unwrap().is_constant(), "{text}");
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            "{{ $value | humanizePercent }}",
            "{{ humanise $value }}",
            "{{ if gt $value 0.5 }}high{{ end }}",
            "{{ range $labels }}x{{ end }}",
            "{{ with $labels.path }}{{ . }}{{ end }}",
            "{{ $x := $value }}",
            "{{ query \"up\" | first | value }}",
            "{{ $lables.path }}",
            "{{ .labels.path }}",
            "{{ $labels.path.x }}",
            "{{ $value.x }}",
            "{{ . }}",
            "{{ $ }}",
            "{{ $value",
            "{{ }}",
            "{{ $value | }}",
            "{{ \"unterminated }}",
            "{{ `unterminated }}",
            "{{ humanize }}",
            "{{ humanize $value $value }}",
            "{{ $value | humanize 3 }}",
            "{{ toUpper $value }}",
            "{{ $value | title }}",
            "{{ humanize \"abc\" }}",
            "{{ humanize $labels }}",
            "{{ match $labels.re $labels.path }}",
            "{{ match \"(a\" $labels.path }}",
            "{{ reReplaceAll \"a\" \"b\" }}",
            "{{ printf \"%d\" $value }}",
            "{{ printf \"%s\" $value }}",
            "{{ printf \"%f\" 3 }}",
            "{{ printf \"%f\" $labels.code }}",
            "{{ printf \"%s %s\" $labels.path }}",
            "{{ printf \"%s\" $labels.path $value }}",
            "{{ printf \"%x\" $value }}",
            "{{ printf \"%#v\" $value }}",
            "{{ printf \"%[1]d\" 1 }}",
            "{{ printf \"%*d\" 3 1 }}",
            "{{ printf \"100%\" }}",
            "{{ printf $labels.fmt $value }}",
            "{{ printf }}",
            "{{ $value*100 }}",
            "{{ $value 3 }}",
            "{{ $value | $value }}",
            "{{ (humanize $value }}",
            "{{ humanize $value) }}",
            "{{ 1x }}",
            "{{ 99999999999999999999 }}",
            "{{ 'a' }}",
            "{{ nil }}",
            "{{ \"\\q\" }}",
            "{{ \"\\xff\" }}",
            "{{/* unclosed }}",
            "{{/* comment */ x }}",
            "{{ # }}",
            "{{ humanize toUpper }}",
            "line one\n  {{ $value | humanizePercentag }}",
        ];
        let mut out = String::new();
        for text in cases {
            out.push_str(&show_error(text));
            out.push_str("\n\n");
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn error_display_is_the_message() {
        let e = Template::parse("{{ humanizePercent $value }}").unwrap_err();
        assert_eq!(e.offset, 3);
        assert_eq!(
            e.to_string(),
            "unknown function \"humanizePercent\" (did you mean \"humanizePercentage\"?)"
        );
    }

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, u8, i32, &str)] = &[
            (0.0, b'g', 4, "0"),
            (100000.0, b'g', 4, "1e+05"),
            (1000.0, b'g', 4, "1000"),
            (12.5, b'g', 4, "12.5"),
            (0.0001234, b'g', 4, "0.0001234"),
            (0.00001234, b'g', 4, "1.234e-05"),
            (9999.5, b'g', 4, "1e+04"),
            (0.5, b'g', 0, "0.5"),
            (2.5, b'f', 0, "2"),
            (0.125, b'f', 2, "0.12"),
            (-0.001, b'f', 2, "-0.00"),
            (1.0, b'e', 0, "1e+00"),
            (1e-100, b'e', 2, "1.00e-100"),
            (123.0, b'e', -1, "1.23e+02"),
            (0.0, b'e', 3, "0.000e+00"),
            (1e20, b'g', -1, "1e+20"),
            (123456789.0, b'f', -1, "123456789"),
        ];
        for (v, verb, prec, want) in cases {
            assert_eq!(
                format_float(*v, *verb, *prec),
                *want,
                "{v} {} {prec}",
                *verb as char
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,64}") {
            if let Ok(t) = Template::parse(&text) {
                let _ = t.render(&Labels::from_pairs([("a", "1.5"), ("b", "x")]), 0.25);
            }
        }

        #[test]
        fn parse_never_panics_on_template_like_input(
            text in r#"([a-z ]{0,3}\{\{-? ?([$.]?[a-zA-Z]{1,8}(\.[a-z]{1,3})?|"[%a-z.0-9 \\]{0,6}"|`[^`]{0,4}`|[-+]?[0-9.eEx_]{1,5}|[|()]|/\*|\*/|:=| ){0,6} ?-?\}\}){0,3}"#,
            value in proptest::num::f64::ANY,
        ) {
            if let Ok(t) = Template::parse(&text) {
                let _ = t.render(&Labels::from_pairs([("a", "1.5"), ("b", "x")]), value);
                let _ = t.label_names();
            }
        }

        #[test]
        fn functions_never_panic_on_any_value(value in proptest::num::f64::ANY) {
            for text in [
                "{{ humanize $value }}{{ humanize1024 $value }}{{ humanizeDuration $value }}",
                "{{ humanizePercentage $value }}{{ humanizeTimestamp $value }}{{ $value }}",
                "{{ printf \"%v %e %.3g %10.2f %+G %-8.1e\" $value $value $value $value $value $value }}",
            ] {
                let _ = render(text, &[], value);
            }
        }
    }
}
