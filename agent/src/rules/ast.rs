//! The syntax tree of the rule expression language: a LogQL subset over the log stream
//! plus PromQL over sidewatch's own series (probe series, `record:` series).
//!
//! The parser (`parser.rs`) builds it with regexes compiled and every node's byte span
//! in the expression text, so later stages can point at the column of a problem. The
//! evaluator (`eval.rs`) never parses text again.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

/// An expression with where it is in the source text (byte offsets).
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Range<usize>,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    /// A number literal: `0.05`, `1e3`, `Inf`, `NaN`.
    Number(f64),
    /// An instant vector of a series: `probe_success{probe="health"}`,
    /// `http:errors:ratio5m`. Always has a metric name.
    Series(SeriesSelector),
    /// A range function: `count_over_time({source="app"} | … [5m])`,
    /// `avg_over_time(probe_success[2m])`, `quantile_over_time(0.95, … [5m])`.
    /// LogQL's grouping after the call (`… [5m]) by (path)`) is in `grouping`.
    RangeCall(Box<RangeCall>),
    /// `sum by (path) (…)`, `topk(3, …)`.
    Aggregate(Box<Aggregate>),
    /// `a / b`, `a > bool 0.05`, `a and on (path) b`.
    Binary(Box<Binary>),
    /// Unary minus.
    Neg(Box<Expr>),
    /// Parentheses, kept so `Display` round-trips what the user wrote.
    Paren(Box<Expr>),
}

/// `name{label op "value", …}`: a series selector (always named) used as an instant
/// vector or inside a range function.
#[derive(Clone, Debug)]
pub struct SeriesSelector {
    pub name: String,
    pub matchers: Vec<LabelMatcher>,
}

/// `{source="app", file=~".*api.*"}`: selects log streams by their labels (`source`,
/// `file`).
#[derive(Clone, Debug)]
pub struct LogSelector {
    pub matchers: Vec<LabelMatcher>,
}

#[derive(Clone, Debug)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// For `=~` / `!~`: the value compiled, anchored at both ends as in PromQL/LogQL.
    pub regex: Option<regex::Regex>,
    pub span: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// A log query: a selector and its pipeline, with an optional `| unwrap field` last.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub selector: LogSelector,
    pub stages: Vec<Stage>,
    pub unwrap: Option<Unwrap>,
}

#[derive(Clone, Debug)]
pub enum Stage {
    /// `| json`: records are already parsed; accepted and a no-op.
    Json,
    /// `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"` on the record's whole text.
    Line(LineFilter),
    /// `| level="error"`, `| status >= 500 and path="/x"`.
    Fields(FieldExpr),
}

#[derive(Clone, Debug)]
pub struct LineFilter {
    pub op: LineOp,
    pub pattern: String,
    /// For `|~` / `!~`: compiled, unanchored (a substring match, as in LogQL).
    pub regex: Option<regex::Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Matches,
    NotMatches,
}

/// A boolean expression over record fields.
#[derive(Clone, Debug)]
pub enum FieldExpr {
    Compare(FieldCompare),
    And(Box<FieldExpr>, Box<FieldExpr>),
    Or(Box<FieldExpr>, Box<FieldExpr>),
    Paren(Box<FieldExpr>),
}

#[derive(Clone, Debug)]
pub struct FieldCompare {
    /// The field name as written: `event`, `level`, `status`, `http.method`.
    pub field: String,
    pub op: FieldOp,
    pub value: FieldValue,
    pub span: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` with a string, `==` with a number.
    Eq,
    Ne,
    /// `=~` / `!~` (string only; anchored as in LogQL label filters).
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug)]
pub enum FieldValue {
    /// A quoted string (compared as text).
    Str(String),
    /// A number (the field is parsed as a number; a field that is not one never matches).
    Num(f64),
    /// The compiled pattern of `=~` / `!~`.
    Regex(regex::Regex),
}

/// `| unwrap duration_ms`, optionally with a conversion: `| unwrap duration(latency)`
/// (Go/humantime-style durations to seconds), `| unwrap bytes(size)` (`10KiB` → bytes).
#[derive(Clone, Debug)]
pub struct Unwrap {
    pub field: String,
    pub conversion: UnwrapConversion,
    pub span: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwrapConversion {
    None,
    Duration,
    Bytes,
}

#[derive(Clone, Debug)]
pub struct RangeCall {
    pub func: RangeFunc,
    /// φ of `quantile_over_time(φ, …)`.
    pub param: Option<f64>,
    pub arg: RangeArg,
    pub range: Duration,
    /// LogQL's `… [5m]) by (path)` on a range aggregation of unwrapped samples.
    pub grouping: Option<Grouping>,
    /// The span of the function name, for errors about it.
    pub name_span: Range<usize>,
}

/// What a range function ranges over.
#[derive(Clone, Debug)]
pub enum RangeArg {
    Log(LogQuery),
    Series(SeriesSelector),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeFunc {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    QuantileOverTime,
    AbsentOverTime,
}

impl RangeFunc {
    pub const ALL: [RangeFunc; 10] = [
        RangeFunc::CountOverTime,
        RangeFunc::Rate,
        RangeFunc::BytesOverTime,
        RangeFunc::BytesRate,
        RangeFunc::SumOverTime,
        RangeFunc::AvgOverTime,
        RangeFunc::MinOverTime,
        RangeFunc::MaxOverTime,
        RangeFunc::QuantileOverTime,
        RangeFunc::AbsentOverTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RangeFunc::CountOverTime => "count_over_time",
            RangeFunc::Rate => "rate",
            RangeFunc::BytesOverTime => "bytes_over_time",
            RangeFunc::BytesRate => "bytes_rate",
            RangeFunc::SumOverTime => "sum_over_time",
            RangeFunc::AvgOverTime => "avg_over_time",
            RangeFunc::MinOverTime => "min_over_time",
            RangeFunc::MaxOverTime => "max_over_time",
            RangeFunc::QuantileOverTime => "quantile_over_time",
            RangeFunc::AbsentOverTime => "absent_over_time",
        }
    }

    pub fn from_name(name: &str) -> Option<RangeFunc> {
        RangeFunc::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Functions that aggregate sample values: over logs they need `| unwrap`.
    pub fn needs_values(self) -> bool {
        matches!(
            self,
            RangeFunc::SumOverTime
                | RangeFunc::AvgOverTime
                | RangeFunc::MinOverTime
                | RangeFunc::MaxOverTime
                | RangeFunc::QuantileOverTime
        )
    }

    /// Functions that count bytes of log lines: meaningless over series.
    pub fn needs_lines(self) -> bool {
        matches!(self, RangeFunc::BytesOverTime | RangeFunc::BytesRate)
    }
}

#[derive(Clone, Debug)]
pub struct Aggregate {
    pub op: AggOp,
    /// k of `topk` / `bottomk`.
    pub param: Option<f64>,
    pub grouping: Option<Grouping>,
    pub expr: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk,
    Bottomk,
}

impl AggOp {
    pub const ALL: [AggOp; 7] = [
        AggOp::Sum,
        AggOp::Avg,
        AggOp::Min,
        AggOp::Max,
        AggOp::Count,
        AggOp::Topk,
        AggOp::Bottomk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
        }
    }

    pub fn from_name(name: &str) -> Option<AggOp> {
        AggOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// `by (a, b)` keeps only those labels; `without (a)` drops them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Binary {
    pub op: BinOp,
    pub lhs: Expr,
    pub rhs: Expr,
    /// `bool` after a comparison: 0/1 instead of filtering.
    pub return_bool: bool,
    /// `on (…)` / `ignoring (…)`.
    pub matching: Option<VectorMatching>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VectorMatching {
    On(Vec<String>),
    Ignoring(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// PromQL precedence, higher binds tighter: `^` > `* / %` > `+ -` > comparisons >
    /// `and unless` > `or`.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    /// `^` is right-associative; every other operator is left-associative.
    pub fn right_assoc(self) -> bool {
        self == BinOp::Pow
    }
}

impl Expr {
    /// Calls `f` on this node and every node below it, parents first.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Number(_) | ExprKind::Series(_) | ExprKind::RangeCall(_) => {}
            ExprKind::Aggregate(agg) => agg.expr.walk(f),
            ExprKind::Binary(bin) => {
                bin.lhs.walk(f);
                bin.rhs.walk(f);
            }
            ExprKind::Neg(inner) | ExprKind::Paren(inner) => inner.walk(f),
        }
    }

    /// Whether the expression is a plain number (a scalar), after parentheses and minus.
    pub fn is_scalar(&self) -> bool {
        match &self.kind {
            ExprKind::Number(_) => true,
            ExprKind::Neg(inner) | ExprKind::Paren(inner) => inner.is_scalar(),
            ExprKind::Binary(bin) => bin.lhs.is_scalar() && bin.rhs.is_scalar(),
            _ => false,
        }
    }
}

/// Formats a duration the way it is written in a range: `5m`, `1h30m`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    // Debug formatting of a str is a valid double-quoted string literal in the language
    // (the lexer accepts its `\u{…}` escapes), except for NUL: Debug writes `\0`, which
    // followed by two digits would read back as an octal escape, so NUL is `\x00`.
    if !s.contains('\0') {
        return write!(f, "{s:?}");
    }
    f.write_str("\"")?;
    for (i, part) in s.split('\0').enumerate() {
        if i > 0 {
            f.write_str("\\x00")?;
        }
        let quoted = format!("{part:?}");
        f.write_str(quoted.get(1..quoted.len() - 1).unwrap_or_default())?;
    }
    f.write_str("\"")
}

fn write_labels(f: &mut fmt::Formatter<'_>, labels: &[String]) -> fmt::Result {
    write!(f, "({})", labels.join(", "))
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        })
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.op)?;
        write_quoted(f, &self.value)
    }
}

fn write_matchers(f: &mut fmt::Formatter<'_>, matchers: &[LabelMatcher]) -> fmt::Result {
    f.write_str("{")?;
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{m}")?;
    }
    f.write_str("}")
}

impl fmt::Display for SeriesSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.matchers.is_empty() {
            write_matchers(f, &self.matchers)?;
        }
        Ok(())
    }
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Compare(c) => {
                let op = match (c.op, &c.value) {
                    (FieldOp::Eq, FieldValue::Num(_)) => "==",
                    (FieldOp::Eq, _) => "=",
                    (FieldOp::Ne, _) => "!=",
                    (FieldOp::Re, _) => "=~",
                    (FieldOp::NotRe, _) => "!~",
                    (FieldOp::Gt, _) => ">",
                    (FieldOp::Ge, _) => ">=",
                    (FieldOp::Lt, _) => "<",
                    (FieldOp::Le, _) => "<=",
                };
                write!(f, "{}{op}", c.field)?;
                match &c.value {
                    FieldValue::Str(s) => write_quoted(f, s),
                    FieldValue::Num(n) => write!(f, "{n}"),
                    FieldValue::Regex(re) => {
                        // Stored anchored as `^(?:…)$`; print what the user wrote.
                        let src = re.as_str();
                        let inner = src
                            .strip_prefix("^(?:")
                            .and_then(|s| s.strip_suffix(")$"))
                            .unwrap_or(src);
                        write_quoted(f, inner)
                    }
                }
            }
            FieldExpr::And(a, b) => write!(f, "{a} and {b}"),
            FieldExpr::Or(a, b) => write!(f, "{a} or {b}"),
            FieldExpr::Paren(inner) => write!(f, "({inner})"),
        }
    }
}

impl fmt::Display for LogQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_matchers(f, &self.selector.matchers)?;
        for stage in &self.stages {
            match stage {
                Stage::Json => f.write_str(" | json")?,
                Stage::Line(line) => {
                    let op = match line.op {
                        LineOp::Contains => "|=",
                        LineOp::NotContains => "!=",
                        LineOp::Matches => "|~",
                        LineOp::NotMatches => "!~",
                    };
                    write!(f, " {op} ")?;
                    write_quoted(f, &line.pattern)?;
                }
                Stage::Fields(fields) => write!(f, " | {fields}")?,
            }
        }
        if let Some(unwrap) = &self.unwrap {
            match unwrap.conversion {
                UnwrapConversion::None => write!(f, " | unwrap {}", unwrap.field)?,
                UnwrapConversion::Duration => write!(f, " | unwrap duration({})", unwrap.field)?,
                UnwrapConversion::Bytes => write!(f, " | unwrap bytes({})", unwrap.field)?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grouping::By(labels) => {
                f.write_str("by ")?;
                write_labels(f, labels)
            }
            Grouping::Without(labels) => {
                f.write_str("without ")?;
                write_labels(f, labels)
            }
        }
    }
}

/// Prints the expression in canonical form; parsing the output gives the same tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Number(n) => {
                if n.is_nan() {
                    f.write_str("NaN")
                } else if n.is_infinite() {
                    f.write_str(if *n > 0.0 { "Inf" } else { "-Inf" })
                } else {
                    write!(f, "{n}")
                }
            }
            ExprKind::Series(sel) => write!(f, "{sel}"),
            ExprKind::RangeCall(call) => {
                write!(f, "{}(", call.func.name())?;
                if let Some(p) = call.param {
                    write!(f, "{p}, ")?;
                }
                match &call.arg {
                    RangeArg::Log(q) => write!(f, "{q} ")?,
                    RangeArg::Series(s) => write!(f, "{s}")?,
                }
                write!(f, "[{}])", format_duration(call.range))?;
                if let Some(g) = &call.grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            ExprKind::Aggregate(agg) => {
                f.write_str(agg.op.name())?;
                if let Some(g) = &agg.grouping {
                    write!(f, " {g} ")?;
                }
                f.write_str("(")?;
                if let Some(p) = agg.param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{})", agg.expr)
            }
            ExprKind::Binary(bin) => {
                write!(f, "{} {}", bin.lhs, bin.op.symbol())?;
                if bin.return_bool {
                    f.write_str(" bool")?;
                }
                match &bin.matching {
                    Some(VectorMatching::On(l)) => {
                        f.write_str(" on ")?;
                        write_labels(f, l)?;
                    }
                    Some(VectorMatching::Ignoring(l)) => {
                        f.write_str(" ignoring ")?;
                        write_labels(f, l)?;
                    }
                    None => {}
                }
                write!(f, " {}", bin.rhs)
            }
            ExprKind::Neg(inner) => write!(f, "-{inner}"),
            ExprKind::Paren(inner) => write!(f, "({inner})"),
        }
    }
}
