//! The rule expression parser: text → `ast::Expr`. A hand-written Pratt parser over the
//! tokens of `lexer.rs` that also checks types as it goes (log queries only inside
//! range functions, `| unwrap` where values are needed, `bool` between scalars), so
//! every error carries the byte offset of the token it is about.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use super::ast::{
    AggOp, Aggregate, BinOp, Binary, Expr, ExprKind, FieldCompare, FieldExpr, FieldOp, FieldValue,
    Grouping, LabelMatcher, LineFilter, LineOp, LogQuery, LogSelector, MatchOp, RangeArg,
    RangeCall, RangeFunc, SeriesSelector, Stage, Unwrap, UnwrapConversion, VectorMatching,
};
use super::lexer::{self, Tok, Token};
use crate::config::validate::did_you_mean;

/// How deeply expressions may nest (parentheses, operators, aggregations). The parser
/// recurses once per level and the tree is dropped and printed recursively, so without
/// a cap a long enough input would overflow the stack instead of failing cleanly.
const MAX_DEPTH: usize = 256;

/// Keywords that a misspelled word in operator position is compared with.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "on", "ignoring", "by", "without",
];

/// Words that a binary operator takes after itself (`a > bool b`, `a / on (x) b`): as a
/// series name right after an operator they would be read as the keyword, so they are
/// not series names anywhere (as in PromQL), and a printed expression parses back.
const OPERATOR_KEYWORDS: &[&str] = &["bool", "on", "ignoring", "group_left", "group_right"];

/// LogQL's parser stages: records here are parsed already, so they have no use.
const LOGQL_PARSERS: &[&str] = &["logfmt", "regexp", "pattern", "unpack"];

/// LogQL's other stages, which sidewatch does not implement.
const LOGQL_OTHER_STAGES: &[&str] = &[
    "line_format",
    "label_format",
    "drop",
    "keep",
    "decolorize",
    "distinct",
];

/// A syntax or type error in an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset into the expression text of the token the error is about.
    pub offset: usize,
    /// Lowercase, without a trailing period: `unknown function "rate_over"`.
    pub message: String,
    /// A suggestion, printed after the message in parentheses: `did you mean "rate"?`.
    pub hint: Option<String>,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> ParseError {
        self.hint = Some(hint.into());
        self
    }

    fn with_hint_opt(mut self, hint: Option<String>) -> ParseError {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// Parses a rule expression (`expr:`, `resolve_expr:`).
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser::new(text);
    let node = parser.expr(0)?;
    if !parser.at(&Tok::Eof) {
        return Err(parser.trailing_token_error());
    }
    Ok(node.expr)
}

/// Parses only a log query (selector + pipeline [+ unwrap]), as used by `verifications:` queries such as
/// '{source="app"} | event="request finished" | status >= 500' or '... | unwrap duration_ms'.
pub fn parse_log_query(text: &str) -> Result<LogQuery, ParseError> {
    let mut parser = Parser::new(text);
    if !parser.at(&Tok::LBrace) {
        return Err(parser.unexpected("a log selector like {source=\"app\"}"));
    }
    let query = parser.log_query()?;
    if !parser.at(&Tok::Eof) {
        let hint = parser.at(&Tok::LBracket).then(|| {
            "a verification query has no range: the verification window is the range".to_string()
        });
        return Err(parser
            .unexpected("a pipeline stage or the end of the log query")
            .with_hint_opt(hint));
    }
    Ok(query)
}

/// Parses a pipeline without a selector, as a log source's `drop` filter is written:
/// '| level="debug"', '|= "GET /health" | status == 200'. Line and field filters only.
pub fn parse_pipeline(text: &str) -> Result<Vec<Stage>, ParseError> {
    let mut parser = Parser::new(text);
    if !matches!(
        parser.peek().tok,
        Tok::Pipe | Tok::PipeEq | Tok::PipeRe | Tok::Ne | Tok::NotRe
    ) {
        return Err(parser
            .unexpected("a pipeline stage, like | level=\"debug\" or |= \"GET /health\"")
            .with_hint_opt(parser.at(&Tok::LBrace).then(|| {
                "a drop filter applies to its own source: leave the selector out".to_string()
            })));
    }
    let start = parser.peek().start;
    let (stages, unwrap) = parser.pipeline()?;
    if unwrap.is_some() {
        return Err(ParseError::new(
            start,
            "a drop filter selects records: it cannot unwrap a value",
        ));
    }
    if !parser.at(&Tok::Eof) {
        return Err(parser.unexpected("a pipeline stage or the end of the filter"));
    }
    Ok(stages)
}

/// An expression with what the parser needs to know about it while building its parents.
struct Node {
    expr: Expr,
    /// A plain number (after parentheses, minus and arithmetic), not a vector.
    scalar: bool,
    /// Height of the tree below and including this node.
    depth: usize,
}

/// A binary operator as read, before its right-hand side.
struct Operator {
    op: BinOp,
    op_offset: usize,
    return_bool: bool,
    /// `on (…)` / `ignoring (…)` with the offset of its keyword, for errors about it.
    matching: Option<(VectorMatching, usize)>,
}

/// An aggregation as read up to its argument.
struct AggregateHead {
    op: AggOp,
    start: usize,
    param: Option<f64>,
    grouping: Option<Grouping>,
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    lex_error: Option<ParseError>,
    pos: usize,
    /// Current recursion depth of `expr` and of parenthesised field filters.
    nesting: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        let lexed = lexer::lex(text);
        Parser {
            text,
            tokens: lexed.tokens,
            lex_error: lexed.error,
            pos: 0,
            nesting: 0,
        }
    }

    // ----- Token access -------------------------------------------------------------

    /// The token `n` ahead of the current one; past the end, the final `Eof`/`Invalid`.
    fn peek_at(&self, n: usize) -> &Token {
        static EOF: Token = Token {
            tok: Tok::Eof,
            start: 0,
            end: 0,
        };
        let index = self
            .pos
            .saturating_add(n)
            .min(self.tokens.len().saturating_sub(1));
        self.tokens.get(index).unwrap_or(&EOF)
    }

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    /// The end of the last token read, or `default` if none was.
    fn prev_end(&self, default: usize) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(default, |t| t.end)
    }

    fn at(&self, tok: &Tok) -> bool {
        self.peek().tok == *tok
    }

    /// Moves past the current token and returns it; stays on the final token.
    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn text_of(&self, token: &Token) -> &'a str {
        self.text.get(token.start..token.end).unwrap_or_default()
    }

    /// The identifier at `n` tokens ahead, if it is one.
    fn ident_at(&self, n: usize) -> Option<&'a str> {
        let token = self.peek_at(n);
        (token.tok == Tok::Ident).then(|| self.text_of(token))
    }

    fn at_ident(&self, word: &str) -> bool {
        self.ident_at(0) == Some(word)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, ParseError> {
        if self.at(&tok) {
            Ok(self.bump())
        } else {
            Err(self.unexpected(what))
        }
    }

    // ----- Errors -------------------------------------------------------------------

    /// How a token is named in "found …".
    fn describe(&self, token: &Token) -> String {
        let text = self.text_of(token);
        match &token.tok {
            Tok::Ident => format!("\"{text}\""),
            Tok::Number(_) => format!("number {text}"),
            Tok::Duration => format!("duration {text}"),
            Tok::Str(_) => {
                let first_line = text.lines().next().unwrap_or_default();
                let shown: String = first_line.chars().take(40).collect();
                if shown.len() < text.len() {
                    format!("string {shown}…")
                } else {
                    format!("string {shown}")
                }
            }
            Tok::Eof | Tok::Invalid => "end of expression".to_string(),
            _ => format!("\"{text}\""),
        }
    }

    /// An error about the current token when it is not what the grammar needs there:
    /// `expected ")", found "foo"`. At the end of the text it is `unexpected end of
    /// expression` with what was expected as the hint, and where lexing failed it is
    /// the lexer's error, so the first problem in reading order is the one reported.
    fn unexpected(&self, expected: &str) -> ParseError {
        let token = self.peek();
        match token.tok {
            Tok::Invalid => self.lex_error(token),
            Tok::Eof => ParseError::new(token.start, "unexpected end of expression")
                .with_hint(format!("expected {expected}")),
            _ => ParseError::new(
                token.start,
                format!("expected {expected}, found {}", self.describe(token)),
            ),
        }
    }

    /// An error with its own message about the current token, except at the end of the
    /// text or where lexing failed (see `unexpected`).
    fn error_here(&self, message: String) -> ParseError {
        let token = self.peek();
        match token.tok {
            Tok::Invalid => self.lex_error(token),
            Tok::Eof => {
                ParseError::new(token.start, "unexpected end of expression").with_hint(message)
            }
            _ => ParseError::new(token.start, message),
        }
    }

    fn lex_error(&self, token: &Token) -> ParseError {
        self.lex_error
            .clone()
            .unwrap_or_else(|| ParseError::new(token.start, "invalid token"))
    }

    fn too_deep(offset: usize) -> ParseError {
        ParseError::new(
            offset,
            format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
        )
    }

    fn check_depth(depth: usize, offset: usize) -> Result<usize, ParseError> {
        if depth > MAX_DEPTH {
            Err(Parser::too_deep(offset))
        } else {
            Ok(depth)
        }
    }

    /// A whole expression was read but text is left over.
    fn trailing_token_error(&self) -> ParseError {
        let token = self.peek();
        let hint = match &token.tok {
            Tok::Assign => Some("did you mean \"==\"?".to_string()),
            Tok::LBracket => Some("a range like [5m] only follows a series selector or a log query inside a range function; subqueries are not supported".to_string()),
            Tok::Ident => suggest(self.text_of(token), KEYWORDS),
            Tok::Pipe | Tok::PipeEq | Tok::PipeRe => Some(
                "a pipeline follows a log selector like {source=\"app\"}, inside a range function".to_string(),
            ),
            _ => None,
        };
        self.unexpected("an operator or the end of the expression")
            .with_hint_opt(hint)
    }

    // ----- Expressions --------------------------------------------------------------

    /// An expression whose binary operators bind at least as tightly as `min_prec`.
    ///
    /// The functions on the recursive path (`expr`, `expr_inner`, `unary`, `primary`,
    /// `aggregate`) keep few locals and leave errors and bookkeeping to helpers: in a
    /// debug build every local has its own stack slot, and frames of a few kilobytes
    /// per level would overflow a 2 MiB thread well before `MAX_DEPTH`.
    fn expr(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        self.nesting += 1;
        let result = if self.nesting > MAX_DEPTH {
            Err(Parser::too_deep(self.peek().start))
        } else {
            self.expr_inner(min_prec)
        };
        self.nesting -= 1;
        result
    }

    fn expr_inner(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.peek_binop().filter(|op| op.precedence() >= min_prec) {
            let modifiers = self.operator(op)?;
            let next_min = if op.right_assoc() {
                op.precedence()
            } else {
                op.precedence() + 1
            };
            let rhs = self.expr(next_min)?;
            lhs = Parser::binary(lhs, modifiers, rhs)?;
        }
        Ok(lhs)
    }

    fn peek_binop(&self) -> Option<BinOp> {
        Some(match self.peek().tok {
            Tok::Plus => BinOp::Add,
            Tok::Minus => BinOp::Sub,
            Tok::Star => BinOp::Mul,
            Tok::Slash => BinOp::Div,
            Tok::Percent => BinOp::Mod,
            Tok::Caret => BinOp::Pow,
            Tok::EqEq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Ident => match self.ident_at(0) {
                Some("and") => BinOp::And,
                Some("or") => BinOp::Or,
                Some("unless") => BinOp::Unless,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// A binary operator with its `bool` and `on (…)` / `ignoring (…)`.
    #[inline(never)]
    fn operator(&mut self, op: BinOp) -> Result<Operator, ParseError> {
        let op_offset = self.bump().start;
        let mut return_bool = false;
        if self.at_ident("bool") {
            let token = self.bump();
            if !op.is_comparison() {
                return Err(ParseError::new(
                    token.start,
                    format!(
                        "bool can only follow a comparison operator, not \"{}\"",
                        op.symbol()
                    ),
                ));
            }
            return_bool = true;
        }
        let mut matching = None;
        if let Some(word @ ("on" | "ignoring")) = self.ident_at(0) {
            let keyword = self.bump();
            let labels = self.label_list(word)?;
            let clause = if word == "on" {
                VectorMatching::On(labels)
            } else {
                VectorMatching::Ignoring(labels)
            };
            matching = Some((clause, keyword.start));
        }
        if let Some(word @ ("group_left" | "group_right")) = self.ident_at(0) {
            return Err(ParseError::new(self.peek().start, format!("{word} is not supported")).with_hint(
                "series are matched one-to-one: aggregate the side with many series first, like sum by (path) (…)",
            ));
        }
        if matching.is_some() && self.at_ident("bool") {
            return Err(ParseError::new(
                self.peek().start,
                "bool must come right after the comparison operator",
            )
            .with_hint("write a > bool on (path) b"));
        }
        Ok(Operator {
            op,
            op_offset,
            return_bool,
            matching,
        })
    }

    /// Builds `lhs op rhs` after checking the operand types as PromQL does.
    #[inline(never)]
    fn binary(lhs: Node, operator: Operator, rhs: Node) -> Result<Node, ParseError> {
        let Operator {
            op,
            op_offset,
            return_bool,
            matching,
        } = operator;
        if op.is_set() {
            for (side, node) in [("left", &lhs), ("right", &rhs)] {
                if node.scalar {
                    return Err(ParseError::new(
                        node.expr.span.start,
                        format!(
                            "\"{}\" needs vectors on both sides, found a scalar on the {side}",
                            op.symbol()
                        ),
                    ));
                }
            }
        }
        if let Some((clause, offset)) = &matching {
            for (side, node) in [("left", &lhs), ("right", &rhs)] {
                if node.scalar {
                    let keyword = match clause {
                        VectorMatching::On(_) => "on",
                        VectorMatching::Ignoring(_) => "ignoring",
                    };
                    return Err(ParseError::new(
                        *offset,
                        format!(
                            "{keyword} (…) needs vectors on both sides, found a scalar on the {side}"
                        ),
                    ));
                }
            }
        }
        if op.is_comparison() && lhs.scalar && rhs.scalar && !return_bool {
            return Err(
                ParseError::new(op_offset, "a comparison between two scalars needs bool")
                    .with_hint(format!("write {} bool to get 1 or 0", op.symbol())),
            );
        }
        let depth = Parser::check_depth(lhs.depth.max(rhs.depth) + 1, op_offset)?;
        let span = lhs.expr.span.start..rhs.expr.span.end;
        let scalar = lhs.scalar && rhs.scalar;
        let binary = Binary {
            op,
            lhs: lhs.expr,
            rhs: rhs.expr,
            return_bool,
            matching: matching.map(|(clause, _)| clause),
        };
        Ok(Node {
            expr: Expr {
                kind: ExprKind::Binary(Box::new(binary)),
                span,
            },
            scalar,
            depth,
        })
    }

    /// Unary minus (and plus) bind tighter than `* / %` but looser than `^`, as in
    /// PromQL: `-2 ^ 2` is `-(2 ^ 2)`.
    fn unary(&mut self) -> Result<Node, ParseError> {
        let negative = match self.peek().tok {
            Tok::Minus => true,
            Tok::Plus => false,
            _ => return self.primary(),
        };
        let start = self.bump().start;
        let inner = self.expr(BinOp::Pow.precedence())?;
        Parser::signed(negative, start, inner)
    }

    #[inline(never)]
    fn signed(negative: bool, start: usize, inner: Node) -> Result<Node, ParseError> {
        let span = start..inner.expr.span.end;
        if !negative {
            // The syntax tree has no unary plus: it is a no-op, so it is dropped.
            return Ok(Node {
                expr: Expr { span, ..inner.expr },
                ..inner
            });
        }
        let depth = Parser::check_depth(inner.depth + 1, start)?;
        Ok(Node {
            expr: Expr {
                kind: ExprKind::Neg(Box::new(inner.expr)),
                span,
            },
            scalar: inner.scalar,
            depth,
        })
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        match self.peek().tok {
            Tok::LParen => {
                let start = self.bump().start;
                let inner = self.expr(0)?;
                self.close_paren(start, inner)
            }
            Tok::Ident => match self.ident_at(0).and_then(AggOp::from_name) {
                Some(op) => self.aggregate(op),
                None => self.name_expr(),
            },
            _ => self.simple_primary(),
        }
    }

    #[inline(never)]
    fn close_paren(&mut self, start: usize, inner: Node) -> Result<Node, ParseError> {
        let close = self.expect(Tok::RParen, "\")\"")?;
        let depth = Parser::check_depth(inner.depth + 1, start)?;
        Ok(Node {
            expr: Expr {
                kind: ExprKind::Paren(Box::new(inner.expr)),
                span: start..close.end,
            },
            scalar: inner.scalar,
            depth,
        })
    }

    /// A number literal, or the error for a token that cannot start an expression.
    #[inline(never)]
    fn simple_primary(&mut self) -> Result<Node, ParseError> {
        let token = self.peek().clone();
        match &token.tok {
            Tok::Number(value) => {
                self.bump();
                Ok(Parser::number(*value, token.start..token.end))
            }
            Tok::LBrace => Err(ParseError::new(
                token.start,
                "a log query must be inside a range function such as count_over_time(... [5m])",
            )),
            Tok::Duration => Err(self
                .unexpected("an expression")
                .with_hint("durations only appear in ranges like [5m]")),
            Tok::Str(_) => Err(self
                .unexpected("an expression")
                .with_hint("strings only appear in label matchers and pipeline filters")),
            _ => Err(self.unexpected("an expression")),
        }
    }

    fn number(value: f64, span: Range<usize>) -> Node {
        Node {
            expr: Expr {
                kind: ExprKind::Number(value),
                span,
            },
            scalar: true,
            depth: 1,
        }
    }

    /// A primary expression that starts with a name other than an aggregation:
    /// `Inf`/`NaN`, a range function or a series selector.
    #[inline(never)]
    fn name_expr(&mut self) -> Result<Node, ParseError> {
        let token = self.peek().clone();
        let word = self.text_of(&token);
        if word.eq_ignore_ascii_case("inf") {
            self.bump();
            return Ok(Parser::number(f64::INFINITY, token.start..token.end));
        }
        if word.eq_ignore_ascii_case("nan") {
            self.bump();
            return Ok(Parser::number(f64::NAN, token.start..token.end));
        }
        if let Some(func) = RangeFunc::from_name(word) {
            return self.range_call(func);
        }
        if self.peek_at(1).tok == Tok::LParen {
            return Err(
                ParseError::new(token.start, format!("unknown function \"{word}\""))
                    .with_hint_opt(suggest(word, &function_names())),
            );
        }
        if matches!(word, "and" | "or" | "unless") {
            return Err(self.unexpected("an expression"));
        }
        let selector = self.series_selector()?;
        let end = self.prev_end(token.end);
        if self.at(&Tok::LBracket) {
            return Err(ParseError::new(
                self.peek().start,
                format!(
                    "the range selector {}[…] cannot be used as an instant vector",
                    selector.name
                ),
            )
            .with_hint(format!(
                "wrap it in a range function, like avg_over_time({}[5m])",
                selector.name
            )));
        }
        Ok(Node {
            expr: Expr {
                kind: ExprKind::Series(selector),
                span: token.start..end,
            },
            scalar: false,
            depth: 1,
        })
    }

    // ----- Aggregations and range functions ----------------------------------------

    /// `sum by (path) (expr)`, `sum(expr) without (status)`, `topk(3, expr)`.
    fn aggregate(&mut self, op: AggOp) -> Result<Node, ParseError> {
        let head = self.aggregate_head(op)?;
        let arg = self.expr(0)?;
        self.aggregate_tail(head, arg)
    }

    /// The name, a grouping before the argument, `(` and the parameter of topk/bottomk.
    #[inline(never)]
    fn aggregate_head(&mut self, op: AggOp) -> Result<AggregateHead, ParseError> {
        let start = self.bump().start;
        let mut grouping = None;
        if matches!(self.ident_at(0), Some("by" | "without")) {
            grouping = Some(self.grouping()?);
        }
        if !self.at(&Tok::LParen) {
            let hint = self
                .ident_at(0)
                .and_then(|word| suggest(word, &["by", "without"]));
            let expected = if grouping.is_some() {
                format!("\"(\" after the grouping of {}", op.name())
            } else {
                format!("\"(\", by or without after {}", op.name())
            };
            return Err(self.unexpected(&expected).with_hint_opt(hint));
        }
        self.bump();
        let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let (k, offset) = self.signed_number().ok_or_else(|| {
                self.error_here(format!(
                    "{} needs k as its first argument, like {}(3, …)",
                    op.name(),
                    op.name()
                ))
            })?;
            if !(k.is_finite() && k >= 1.0 && k.fract() == 0.0) {
                return Err(ParseError::new(
                    offset,
                    format!(
                        "k of {} must be a whole number of at least 1, found {k}",
                        op.name()
                    ),
                ));
            }
            self.expect(Tok::Comma, "\",\" after k")?;
            Some(k)
        } else {
            None
        };
        Ok(AggregateHead {
            op,
            start,
            param,
            grouping,
        })
    }

    /// `)`, a grouping after the argument, and the check that the argument is a vector.
    #[inline(never)]
    fn aggregate_tail(&mut self, head: AggregateHead, arg: Node) -> Result<Node, ParseError> {
        let AggregateHead {
            op,
            start,
            param,
            mut grouping,
        } = head;
        if param.is_none() && self.at(&Tok::Comma) {
            return Err(self.unexpected("\")\"").with_hint(format!(
                "{} takes one argument; only topk and bottomk take a parameter",
                op.name()
            )));
        }
        let close = self.expect(Tok::RParen, "\")\"")?;
        let mut end = close.end;
        if let Some(word @ ("by" | "without")) = self.ident_at(0) {
            if grouping.is_some() {
                return Err(ParseError::new(
                    self.peek().start,
                    format!(
                        "{word} (…) is given twice: {} has its grouping before the argument already",
                        op.name()
                    ),
                ));
            }
            let (after, after_end) = self.grouping_with_end()?;
            grouping = Some(after);
            end = after_end;
        }
        if arg.scalar {
            return Err(ParseError::new(
                arg.expr.span.start,
                format!("{} needs a vector, found a scalar", op.name()),
            ));
        }
        let depth = Parser::check_depth(arg.depth + 1, start)?;
        let aggregate = Aggregate {
            op,
            param,
            grouping,
            expr: arg.expr,
        };
        Ok(Node {
            expr: Expr {
                kind: ExprKind::Aggregate(Box::new(aggregate)),
                span: start..end,
            },
            scalar: false,
            depth,
        })
    }

    fn grouping(&mut self) -> Result<Grouping, ParseError> {
        self.grouping_with_end().map(|(grouping, _)| grouping)
    }

    /// `by (a, b)` / `without (a)`, with the end offset of its `)`.
    fn grouping_with_end(&mut self) -> Result<(Grouping, usize), ParseError> {
        let keyword = self.bump();
        let word = self.text_of(&keyword);
        let labels = self.label_list(word)?;
        let end = self.prev_end(keyword.end);
        let grouping = if word == "by" {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        };
        Ok((grouping, end))
    }

    /// `(a, b, c)` after `by`, `without`, `on` or `ignoring`; a trailing comma is fine.
    /// Names may contain dots: record fields become labels when a grouping names them.
    fn label_list(&mut self, after: &str) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, &format!("\"(\" after {after}"))?;
        let mut labels = Vec::new();
        loop {
            if self.at(&Tok::RParen) {
                self.bump();
                return Ok(labels);
            }
            let Some(name) = self.ident_at(0) else {
                return Err(self.unexpected("a label name"));
            };
            if name.contains(':') {
                return Err(ParseError::new(
                    self.peek().start,
                    format!("invalid label name \"{name}\""),
                ));
            }
            labels.push(name.to_string());
            self.bump();
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected("\",\" or \")\"")),
            }
        }
    }

    /// `-0.5`, `3`, `Inf`: a number literal where the grammar wants a constant (φ, k, a
    /// field value). `None`, consuming nothing, if there is none.
    fn signed_number(&mut self) -> Option<(f64, usize)> {
        let start = self.peek().start;
        let (sign, skip) = match self.peek().tok {
            Tok::Minus => (-1.0, 1),
            Tok::Plus => (1.0, 1),
            _ => (1.0, 0),
        };
        let token = self.peek_at(skip);
        let value = match &token.tok {
            Tok::Number(value) => *value,
            Tok::Ident => {
                let word = self.text_of(token);
                if word.eq_ignore_ascii_case("inf") {
                    f64::INFINITY
                } else if word.eq_ignore_ascii_case("nan") {
                    f64::NAN
                } else {
                    return None;
                }
            }
            _ => return None,
        };
        for _ in 0..=skip {
            self.bump();
        }
        Some((sign * value, start))
    }

    /// `count_over_time({…} | … [5m])`, `quantile_over_time(0.95, … [5m]) by (path)`,
    /// `avg_over_time(probe_success{probe="health"}[2m])`.
    fn range_call(&mut self, func: RangeFunc) -> Result<Node, ParseError> {
        let name = self.bump();
        let fname = func.name();
        self.expect(Tok::LParen, &format!("\"(\" after {fname}"))?;
        let param = if func == RangeFunc::QuantileOverTime {
            let (phi, offset) = self.signed_number().ok_or_else(|| {
                self.error_here(format!(
                    "{fname} needs φ as its first argument, like {fname}(0.95, … [5m])"
                ))
            })?;
            if !(0.0..=1.0).contains(&phi) {
                return Err(ParseError::new(
                    offset,
                    format!("φ of {fname} must be between 0 and 1, found {phi}"),
                ));
            }
            self.expect(Tok::Comma, "\",\" after φ")?;
            Some(phi)
        } else {
            None
        };
        let arg_token = self.peek().clone();
        let arg = match arg_token.tok {
            Tok::LBrace => RangeArg::Log(self.log_query()?),
            Tok::Ident if self.peek_at(1).tok == Tok::LParen => {
                return Err(ParseError::new(
                    arg_token.start,
                    format!("{fname} takes a log query or a series selector, not a function call"),
                )
                .with_hint("subqueries are not supported"));
            }
            Tok::Ident => RangeArg::Series(self.series_selector()?),
            Tok::Number(_) if param.is_none() => {
                return Err(self
                    .unexpected("a log query or a series selector")
                    .with_hint(format!("{fname} takes no parameter")));
            }
            _ => return Err(self.unexpected("a log query or a series selector")),
        };
        if !self.at(&Tok::LBracket) {
            let what = match arg {
                RangeArg::Log(_) => "a range like [5m] after the log query",
                RangeArg::Series(_) => "a range like [5m] after the series selector",
            };
            let hint = match self.ident_at(0) {
                Some("and" | "or") => Some(
                    "and / or combine field filters after a |, like | a=\"x\" or b=\"y\"; for line filters use |~ \"a|b\"".to_string(),
                ),
                Some(word) => suggest(word, &["and", "or", "unwrap"]),
                None => None,
            };
            return Err(self.unexpected(what).with_hint_opt(hint));
        }
        let range = self.range()?;
        let close = self.expect(Tok::RParen, "\")\"")?;
        let mut end = close.end;
        let mut grouping = None;
        let mut grouping_offset = 0;
        if matches!(self.ident_at(0), Some("by" | "without")) {
            grouping_offset = self.peek().start;
            let (g, g_end) = self.grouping_with_end()?;
            grouping = Some(g);
            end = g_end;
        }

        match &arg {
            RangeArg::Log(query) if func.needs_values() && query.unwrap.is_none() => {
                return Err(ParseError::new(
                    name.start,
                    format!("{fname} needs numeric samples: add `| unwrap <field>`"),
                ));
            }
            RangeArg::Log(LogQuery {
                unwrap: Some(unwrap),
                ..
            }) if matches!(
                func,
                RangeFunc::CountOverTime | RangeFunc::BytesOverTime | RangeFunc::BytesRate
            ) =>
            {
                return Err(ParseError::new(
                    unwrap.span.start,
                    format!("{fname} counts log lines and takes no `| unwrap`"),
                )
                .with_hint("sum_over_time, avg_over_time, quantile_over_time and rate use unwrapped values"));
            }
            RangeArg::Series(_) if func.needs_lines() => {
                return Err(ParseError::new(
                    arg_token.start,
                    format!("{fname} needs a log query, not a series selector"),
                )
                .with_hint("it counts the bytes of log lines"));
            }
            _ => {}
        }
        if grouping.is_some()
            && !matches!(
                &arg,
                RangeArg::Log(LogQuery {
                    unwrap: Some(_),
                    ..
                })
            )
        {
            return Err(ParseError::new(
                grouping_offset,
                "a grouping after a range function needs a log query with `| unwrap`",
            )
            .with_hint(format!(
                "group with an aggregation instead, like sum by (path) ({fname}(… [5m]))"
            )));
        }
        let call = RangeCall {
            func,
            param,
            arg,
            range,
            grouping,
            name_span: name.start..name.end,
        };
        Ok(Node {
            expr: Expr {
                kind: ExprKind::RangeCall(Box::new(call)),
                span: name.start..end,
            },
            scalar: false,
            depth: 1,
        })
    }

    /// `[5m]`, `[1h30m]`.
    fn range(&mut self) -> Result<Duration, ParseError> {
        self.bump();
        let token = self.peek().clone();
        let range = match token.tok {
            Tok::Duration => parse_duration(self.text_of(&token))
                .map_err(|message| ParseError::new(token.start, message))?,
            Tok::Number(_) => {
                return Err(self
                    .unexpected("a duration like 5m")
                    .with_hint("add a unit: ms, s, m, h, d, w or y"));
            }
            _ => return Err(self.unexpected("a duration like 5m")),
        };
        self.bump();
        if !self.at(&Tok::RBracket) {
            let subquery = self.ident_at(0).is_some_and(|word| word.starts_with(':'));
            let hint = subquery.then(|| "subqueries like [5m:1m] are not supported".to_string());
            return Err(self.unexpected("\"]\"").with_hint_opt(hint));
        }
        self.bump();
        Ok(range)
    }

    // ----- Selectors ----------------------------------------------------------------

    /// `probe_success{probe="health"}`, `http:errors:ratio5m`.
    fn series_selector(&mut self) -> Result<SeriesSelector, ParseError> {
        let token = self.bump();
        let name = self.text_of(&token);
        if OPERATOR_KEYWORDS.contains(&name) {
            return Err(ParseError::new(
                token.start,
                format!("\"{name}\" is a keyword, not a series name"),
            )
            .with_hint(
                "bool, on, ignoring, group_left and group_right only follow a binary operator",
            ));
        }
        if name.contains('.') {
            return Err(ParseError::new(token.start, format!("invalid metric name \"{name}\""))
                .with_hint("metric names are letters, digits, _ and :; dots are only allowed in pipeline field names"));
        }
        let matchers = if self.at(&Tok::LBrace) {
            self.matchers()?
        } else {
            Vec::new()
        };
        Ok(SeriesSelector {
            name: name.to_string(),
            matchers,
        })
    }

    /// `{a="b", c=~"d.*",}`.
    fn matchers(&mut self) -> Result<Vec<LabelMatcher>, ParseError> {
        self.bump();
        let mut matchers = Vec::new();
        loop {
            if self.at(&Tok::RBrace) {
                self.bump();
                return Ok(matchers);
            }
            matchers.push(self.matcher()?);
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBrace => {}
                _ => return Err(self.unexpected("\",\" or \"}\"")),
            }
        }
    }

    fn matcher(&mut self) -> Result<LabelMatcher, ParseError> {
        let Some(name) = self.ident_at(0) else {
            return Err(self.unexpected("a label name"));
        };
        let name_token = self.bump();
        if !is_label_name(name) {
            return Err(ParseError::new(
                name_token.start,
                format!("invalid label name \"{name}\""),
            )
            .with_hint("label names are letters, digits and _"));
        }
        let op = match self.peek().tok {
            Tok::Assign => MatchOp::Eq,
            Tok::Ne => MatchOp::Ne,
            Tok::Re => MatchOp::Re,
            Tok::NotRe => MatchOp::NotRe,
            Tok::EqEq => {
                return Err(self
                    .unexpected("a label matcher operator (= != =~ !~)")
                    .with_hint("did you mean \"=\"?"));
            }
            _ => return Err(self.unexpected("a label matcher operator (= != =~ !~)")),
        };
        self.bump();
        let value_token = self.peek().clone();
        let Tok::Str(value) = value_token.tok else {
            let hint =
                matches!(value_token.tok, Tok::Number(_) | Tok::Ident | Tok::Duration).then(|| {
                    format!(
                        "label values are strings: write \"{}\"",
                        self.text_of(&value_token)
                    )
                });
            return Err(self.unexpected("a quoted string").with_hint_opt(hint));
        };
        self.bump();
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(compile_regex(&value, true, value_token.start)?),
            MatchOp::Eq | MatchOp::Ne => None,
        };
        Ok(LabelMatcher {
            name: name.to_string(),
            op,
            value,
            regex,
            span: name_token.start..value_token.end,
        })
    }

    // ----- Log queries --------------------------------------------------------------

    /// `{source="app"} | json |= "x" | status >= 500 | unwrap duration_ms`.
    fn log_query(&mut self) -> Result<LogQuery, ParseError> {
        let open = self.peek().start;
        let matchers = self.matchers()?;
        if matchers.is_empty() {
            return Err(ParseError::new(
                open,
                "a log selector needs at least one label matcher, like {source=\"app\"}",
            ));
        }
        let (stages, unwrap) = self.pipeline()?;
        Ok(LogQuery {
            selector: LogSelector { matchers },
            stages,
            unwrap,
        })
    }

    /// The stages after a selector (or on their own, for a `drop` filter), with an
    /// `unwrap` when it comes last.
    fn pipeline(&mut self) -> Result<(Vec<Stage>, Option<Unwrap>), ParseError> {
        let mut stages = Vec::new();
        let mut unwrap: Option<Unwrap> = None;
        loop {
            let token = self.peek().clone();
            // Right after the selector or a stage, `!=` and `!~` are line filters; a
            // field filter always follows a `|`, so there is no ambiguity here.
            let line_op = match token.tok {
                Tok::PipeEq => Some(LineOp::Contains),
                Tok::PipeRe => Some(LineOp::Matches),
                Tok::Ne => Some(LineOp::NotContains),
                Tok::NotRe => Some(LineOp::NotMatches),
                Tok::Pipe => None,
                _ => break,
            };
            if unwrap.is_some() {
                return Err(ParseError::new(token.start, "unwrap must be the last stage of the pipeline")
                    .with_hint("filter before unwrapping, like {source=\"app\"} | status >= 500 | unwrap duration_ms"));
            }
            self.bump();
            if let Some(op) = line_op {
                stages.push(Stage::Line(self.line_filter(op, self.text_of(&token))?));
                continue;
            }
            let next = self.peek().clone();
            match (&next.tok, self.ident_at(0)) {
                (_, Some("json")) => {
                    self.bump();
                    stages.push(Stage::Json);
                }
                (_, Some("unwrap")) => unwrap = Some(self.unwrap_stage(token.start)?),
                (Tok::LParen, _) => stages.push(Stage::Fields(self.field_or()?.0)),
                (_, Some(_)) if is_field_op(&self.peek_at(1).tok) => {
                    stages.push(Stage::Fields(self.field_or()?.0));
                }
                (_, Some(word)) => {
                    let hint = if LOGQL_PARSERS.contains(&word) {
                        Some("records are parsed into fields already: filter them directly, like | level=\"error\"".to_string())
                    } else if LOGQL_OTHER_STAGES.contains(&word) {
                        Some("it is not supported: a pipeline has line filters, field filters, json and unwrap".to_string())
                    } else {
                        suggest(word, &["json", "unwrap"])
                    };
                    if hint.is_some() {
                        return Err(ParseError::new(
                            next.start,
                            format!("unknown pipeline stage \"{word}\""),
                        )
                        .with_hint_opt(hint));
                    }
                    self.bump();
                    return Err(self.unexpected(&format!("a comparison operator after \"{word}\"")));
                }
                (tok, None) => {
                    let hint =
                        matches!(tok, Tok::Assign).then(|| "did you mean \"|=\"?".to_string());
                    return Err(self
                        .unexpected("a field filter, json or unwrap after \"|\"")
                        .with_hint_opt(hint));
                }
            }
        }
        Ok((stages, unwrap))
    }

    /// The pattern of `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"`.
    fn line_filter(&mut self, op: LineOp, symbol: &str) -> Result<LineFilter, ParseError> {
        let token = self.peek().clone();
        let Tok::Str(pattern) = token.tok else {
            return Err(self.unexpected(&format!("a quoted string after \"{symbol}\"")));
        };
        self.bump();
        let regex = match op {
            LineOp::Matches | LineOp::NotMatches => {
                Some(compile_regex(&pattern, false, token.start)?)
            }
            LineOp::Contains | LineOp::NotContains => None,
        };
        Ok(LineFilter { op, pattern, regex })
    }

    /// `| unwrap field`, `| unwrap duration(field)`, `| unwrap bytes(field)`; the `|`
    /// was read already and starts at `pipe`.
    fn unwrap_stage(&mut self, pipe: usize) -> Result<Unwrap, ParseError> {
        self.bump();
        let Some(word) = self.ident_at(0) else {
            return Err(self.unexpected("a field name after unwrap"));
        };
        let word_token = self.bump();
        if !self.at(&Tok::LParen) {
            return Ok(Unwrap {
                field: word.to_string(),
                conversion: UnwrapConversion::None,
                span: pipe..word_token.end,
            });
        }
        let conversion = match word {
            "duration" | "duration_seconds" => UnwrapConversion::Duration,
            "bytes" => UnwrapConversion::Bytes,
            _ => {
                let hint = suggest(word, &["duration", "bytes"])
                    .unwrap_or_else(|| "the conversions are duration(…) and bytes(…)".to_string());
                return Err(ParseError::new(
                    word_token.start,
                    format!("unknown unwrap conversion \"{word}\""),
                )
                .with_hint(hint));
            }
        };
        self.bump();
        let Some(field) = self.ident_at(0) else {
            return Err(self.unexpected("a field name"));
        };
        self.bump();
        let close = self.expect(Tok::RParen, "\")\"")?;
        Ok(Unwrap {
            field: field.to_string(),
            conversion,
            span: pipe..close.end,
        })
    }

    /// `a or b`, where `and` (or a comma) binds tighter. Returns the tree's height.
    fn field_or(&mut self) -> Result<(FieldExpr, usize), ParseError> {
        self.nesting += 1;
        let result = if self.nesting > MAX_DEPTH {
            Err(Parser::too_deep(self.peek().start))
        } else {
            self.field_or_inner()
        };
        self.nesting -= 1;
        result
    }

    fn field_or_inner(&mut self) -> Result<(FieldExpr, usize), ParseError> {
        let (mut lhs, mut depth) = self.field_and()?;
        while self.at_ident("or") {
            let or = self.bump();
            let (rhs, rhs_depth) = self.field_and()?;
            depth = Parser::check_depth(depth.max(rhs_depth) + 1, or.start)?;
            lhs = FieldExpr::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok((lhs, depth))
    }

    fn field_and(&mut self) -> Result<(FieldExpr, usize), ParseError> {
        let (mut lhs, mut depth) = self.field_atom()?;
        while self.at_ident("and") || self.at(&Tok::Comma) {
            let and = self.bump();
            let (rhs, rhs_depth) = self.field_atom()?;
            depth = Parser::check_depth(depth.max(rhs_depth) + 1, and.start)?;
            lhs = FieldExpr::And(Box::new(lhs), Box::new(rhs));
        }
        Ok((lhs, depth))
    }

    fn field_atom(&mut self) -> Result<(FieldExpr, usize), ParseError> {
        if self.at(&Tok::LParen) {
            let open = self.bump();
            let (inner, depth) = self.field_or()?;
            self.expect(Tok::RParen, "\")\"")?;
            let depth = Parser::check_depth(depth + 1, open.start)?;
            return Ok((FieldExpr::Paren(Box::new(inner)), depth));
        }
        if self.ident_at(0).is_none() {
            return Err(self.unexpected("a field filter like level=\"error\""));
        }
        Ok((FieldExpr::Compare(self.field_compare()?), 1))
    }

    /// `level="error"`, `path=~"/api/.*"`, `status >= 500`.
    fn field_compare(&mut self) -> Result<FieldCompare, ParseError> {
        let field_token = self.bump();
        let field = self.text_of(&field_token).to_string();
        let op_token = self.peek().clone();
        let op_text = self.text_of(&op_token);
        let op = match op_token.tok {
            Tok::Assign | Tok::EqEq => FieldOp::Eq,
            Tok::Ne => FieldOp::Ne,
            Tok::Re => FieldOp::Re,
            Tok::NotRe => FieldOp::NotRe,
            Tok::Gt => FieldOp::Gt,
            Tok::Ge => FieldOp::Ge,
            Tok::Lt => FieldOp::Lt,
            Tok::Le => FieldOp::Le,
            _ => return Err(self.unexpected(&format!("a comparison operator after \"{field}\""))),
        };
        self.bump();
        let value_token = self.peek().clone();
        let value = match op {
            FieldOp::Re | FieldOp::NotRe => {
                let Tok::Str(pattern) = &value_token.tok else {
                    return Err(self
                        .unexpected(&format!("a quoted regular expression after \"{op_text}\"")));
                };
                self.bump();
                FieldValue::Regex(compile_regex(pattern, true, value_token.start)?)
            }
            FieldOp::Gt | FieldOp::Ge | FieldOp::Lt | FieldOp::Le => match self.signed_number() {
                Some((n, _)) => FieldValue::Num(n),
                None => {
                    let hint = match value_token.tok {
                        Tok::Str(_) => Some(format!("{op_text} compares numbers; use = or =~ for text")),
                        Tok::Duration => Some(
                            "durations are not numbers here: compare the field in its own unit, like duration_ms > 250"
                                .to_string(),
                        ),
                        _ => None,
                    };
                    return Err(self
                        .unexpected(&format!("a number after \"{op_text}\""))
                        .with_hint_opt(hint));
                }
            },
            FieldOp::Eq | FieldOp::Ne => {
                if let Tok::Str(s) = &value_token.tok {
                    self.bump();
                    FieldValue::Str(s.clone())
                } else if let Some((n, _)) = self.signed_number() {
                    FieldValue::Num(n)
                } else {
                    let hint = (value_token.tok == Tok::Ident)
                        .then(|| format!("quote text: \"{}\"", self.text_of(&value_token)));
                    return Err(self
                        .unexpected("a quoted string or a number")
                        .with_hint_opt(hint));
                }
            }
        };
        let end = self.prev_end(value_token.end);
        Ok(FieldCompare {
            field,
            op,
            value,
            span: field_token.start..end,
        })
    }
}

fn is_field_op(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Assign
            | Tok::EqEq
            | Tok::Ne
            | Tok::Re
            | Tok::NotRe
            | Tok::Gt
            | Tok::Ge
            | Tok::Lt
            | Tok::Le
    )
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, as in Prometheus.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every function name, for suggestions about an unknown one.
fn function_names() -> Vec<&'static str> {
    RangeFunc::ALL
        .iter()
        .map(|f| f.name())
        .chain(AggOp::ALL.iter().map(|op| op.name()))
        .collect()
}

/// `did you mean "x"?` for a misspelled name. Edit distance first; then, because the
/// distance misses truncations and run-on names, a candidate that the word is the start
/// of (`absent` → `absent_over_time`) and then one that starts the word before an
/// underscore (`rate_over` → `rate`).
fn suggest(word: &str, candidates: &[&str]) -> Option<String> {
    // The word itself is no suggestion: it is a keyword in the wrong place.
    if candidates.contains(&word) {
        return None;
    }
    let found = did_you_mean(word, candidates)
        .or_else(|| {
            candidates
                .iter()
                .filter(|c| word.len() >= 3 && c.starts_with(word))
                .min_by_key(|c| c.len())
                .copied()
        })
        .or_else(|| {
            candidates
                .iter()
                .filter(|c| {
                    word.strip_prefix(**c)
                        .is_some_and(|rest| rest.starts_with('_'))
                })
                .max_by_key(|c| c.len())
                .copied()
        })?;
    Some(format!("did you mean \"{found}\"?"))
}

/// Compiles a pattern: anchored at both ends (`^(?:…)$`) for label matchers and field
/// filters, as in PromQL/LogQL, or unanchored for line filters. The pattern is checked
/// on its own first so that an unbalanced one cannot close the anchoring group early
/// and compile into something else, and so the error is about what the user wrote.
fn compile_regex(pattern: &str, anchored: bool, offset: usize) -> Result<regex::Regex, ParseError> {
    let invalid = |e: regex::Error| {
        ParseError::new(
            offset,
            format!("invalid regular expression: {}", regex_error_summary(&e)),
        )
    };
    let plain = regex::Regex::new(pattern).map_err(invalid)?;
    if anchored {
        regex::Regex::new(&format!("^(?:{pattern})$")).map_err(invalid)
    } else {
        Ok(plain)
    }
}

/// The one-line reason out of the regex crate's multi-line error (which repeats the
/// pattern and draws a caret under it).
fn regex_error_summary(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_string(),
        regex::Error::CompiledTooBig(_) => "it compiles too big".to_string(),
        _ => "cannot be compiled".to_string(),
    }
}

/// `5m`, `1h30m`, `250ms`: whole numbers of `y w d h m s ms`, largest unit first, each
/// at most once, as in PromQL.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let invalid = || format!("invalid duration \"{text}\"");
    let mut rest = text;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at_checked(digits).ok_or_else(invalid)?;
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at_checked(letters).ok_or_else(invalid)?;
        let (index, unit_ms) = UNITS
            .iter()
            .enumerate()
            .find_map(|(i, (name, ms))| (*name == unit).then_some((i, *ms)))
            .ok_or_else(invalid)?;
        if number.is_empty() {
            return Err(invalid());
        }
        if index < next_unit {
            return Err(format!(
                "{}: units must go from the largest to the smallest, each once",
                invalid()
            ));
        }
        next_unit = index + 1;
        let too_long = || format!("the range \"{text}\" is too long");
        let count: u64 = number.parse().map_err(|_| too_long())?;
        let ms = count.checked_mul(unit_ms).ok_or_else(too_long)?;
        total = total.checked_add(ms).ok_or_else(too_long)?;
        rest = after;
    }
    if total == 0 {
        return Err("a range must be longer than 0s".to_string());
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses and prints canonically, or the error as `offset: message`.
    fn canonical(text: &str) -> String {
        match parse(text) {
            Ok(expr) => expr.to_string(),
            Err(e) => format!("error at {}: {e}", e.offset),
        }
    }

    /// The tree without spans, for comparing two parses structurally (`Expr` has no
    /// `PartialEq`: regexes and floats do not compare the way a test needs).
    fn shape(debug: &str) -> String {
        let spans = regex::Regex::new(r"(name_)?span: \d+\.\.\d+").unwrap();
        spans.replace_all(debug, "").into_owned()
    }

    /// Parse → print → parse → print gives the same text and the same tree.
    fn round_trip(text: &str) -> Result<(), String> {
        let first = parse(text).map_err(|e| format!("{text:?} does not parse: {e}"))?;
        let printed = first.to_string();
        let second = parse(&printed)
            .map_err(|e| format!("{printed:?} (printed from {text:?}) does not parse: {e}"))?;
        if second.to_string() != printed {
            return Err(format!("{printed:?} prints as {:?}", second.to_string()));
        }
        if shape(&format!("{first:?}")) != shape(&format!("{second:?}")) {
            return Err(format!(
                "{text:?} and its printing {printed:?} parse differently"
            ));
        }
        Ok(())
    }

    /// The tree with every operator parenthesised, to show precedence.
    fn sexpr(expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::Binary(b) => format!(
                "({}{} {} {})",
                b.op.symbol(),
                if b.return_bool { " bool" } else { "" },
                sexpr(&b.lhs),
                sexpr(&b.rhs)
            ),
            ExprKind::Neg(inner) => format!("(neg {})", sexpr(inner)),
            ExprKind::Paren(inner) => format!("(paren {})", sexpr(inner)),
            ExprKind::Aggregate(agg) => format!("({} {})", agg.op.name(), sexpr(&agg.expr)),
            _ => expr.to_string(),
        }
    }

    fn field_sexpr(expr: &FieldExpr) -> String {
        match expr {
            FieldExpr::Compare(c) => c.field.clone(),
            FieldExpr::And(a, b) => format!("(and {} {})", field_sexpr(a), field_sexpr(b)),
            FieldExpr::Or(a, b) => format!("(or {} {})", field_sexpr(a), field_sexpr(b)),
            FieldExpr::Paren(inner) => format!("(paren {})", field_sexpr(inner)),
        }
    }

    fn range_call(expr: &Expr) -> &RangeCall {
        match &expr.kind {
            ExprKind::RangeCall(call) => call,
            other => panic!("not a range call: {other:?}"),
        }
    }

    fn log_arg(expr: &Expr) -> &LogQuery {
        match &range_call(expr).arg {
            RangeArg::Log(query) => query,
            RangeArg::Series(s) => panic!("not a log query: {s}"),
        }
    }

    #[test]
    fn valid_expressions_print_canonically_and_round_trip() {
        let cases: &[(&str, &str)] = &[
            // SPEC's examples, verbatim.
            (
                "sum by (path) (count_over_time({source=\"app\"} | event=\"request finished\" | status >= 500 [5m]))\n/ sum by (path) (count_over_time({source=\"app\"} | event=\"request finished\" [5m]))\n",
                "sum by (path) (count_over_time({source=\"app\"} | event=\"request finished\" | status>=500 [5m])) / sum by (path) (count_over_time({source=\"app\"} | event=\"request finished\" [5m]))",
            ),
            ("http:errors:ratio5m > 0.05", "http:errors:ratio5m > 0.05"),
            ("http:errors:ratio5m < 0.02", "http:errors:ratio5m < 0.02"),
            (
                "avg_over_time(probe_success{probe=\"health\"}[2m])",
                "avg_over_time(probe_success{probe=\"health\"}[2m])",
            ),
            (
                "quantile_over_time(0.95, {source=\"app\"} | event=\"request finished\" | unwrap duration_ms [5m]) by (path)",
                "quantile_over_time(0.95, {source=\"app\"} | event=\"request finished\" | unwrap duration_ms [5m]) by (path)",
            ),
            (
                "absent_over_time({source=\"app\"}[5m])",
                "absent_over_time({source=\"app\"} [5m])",
            ),
            (
                "count_over_time({source=\"app\"} |= \"Traceback\" != \"healthz\" |~ \"Error$\" [5m])",
                "count_over_time({source=\"app\"} |= \"Traceback\" != \"healthz\" |~ \"Error$\" [5m])",
            ),
            (
                "topk(3, sum by (path) (rate({source=\"app\"}[1m])))",
                "topk(3, sum by (path) (rate({source=\"app\"} [1m])))",
            ),
            ("a > bool 0.5", "a > bool 0.5"),
            ("a and on (path) b", "a and on (path) b"),
            ("a / ignoring (status) b", "a / ignoring (status) b"),
            ("1 + 2 * 3 ^ 2 ^ 2", "1 + 2 * 3 ^ 2 ^ 2"),
            ("a or b and c", "a or b and c"),
            // Numbers.
            ("1e3", "1000"),
            ("0x1f", "31"),
            (".5 + 5.", "0.5 + 5"),
            ("2.5e-3", "0.0025"),
            ("Inf", "Inf"),
            ("-inf", "-Inf"),
            ("NaN", "NaN"),
            ("nan", "NaN"),
            ("-1", "-1"),
            ("+5", "5"),
            ("--1", "--1"),
            ("-2 ^ 2", "-2 ^ 2"),
            ("(1 + 2) * 3", "(1 + 2) * 3"),
            ("1 == bool 1", "1 == bool 1"),
            // Series selectors.
            (
                "foo{a=\"b\", c!='d', e=~`x.*`, f!~\"y\",}",
                "foo{a=\"b\", c!=\"d\", e=~\"x.*\", f!~\"y\"}",
            ),
            ("foo{}", "foo"),
            ("foo { a = \"b\" }", "foo{a=\"b\"}"),
            ("probe_success == 0", "probe_success == 0"),
            ("a:b:c5m", "a:b:c5m"),
            (
                "foo{a=\"tab\\there \\\"quoted\\\" \\u00e9\"}",
                "foo{a=\"tab\\there \\\"quoted\\\" é\"}",
            ),
            // Log queries and pipelines.
            (
                "count_over_time({source=\"app\", file=~\".*api.*\"} | json | level=\"error\" [5m])",
                "count_over_time({source=\"app\", file=~\".*api.*\"} | json | level=\"error\" [5m])",
            ),
            (
                "count_over_time({a=\"b\"} | x=\"s\" | x!=\"s\" | x=~\"r.*\" | x!~\"r\" | n > 1 | n >= -2 | n < 3.5 | n <= 4 | n == 5 | n != 6 | n = 7 [5m])",
                "count_over_time({a=\"b\"} | x=\"s\" | x!=\"s\" | x=~\"r.*\" | x!~\"r\" | n>1 | n>=-2 | n<3.5 | n<=4 | n==5 | n!=6 | n==7 [5m])",
            ),
            (
                "count_over_time({a=\"b\"} | a=\"1\" and b=\"2\" or c=\"3\", d=\"4\" | (e > 1 or f < 2) and http.method=\"GET\" [5m])",
                "count_over_time({a=\"b\"} | a=\"1\" and b=\"2\" or c=\"3\" and d=\"4\" | (e>1 or f<2) and http.method=\"GET\" [5m])",
            ),
            (
                "count_over_time({a=\"b\"} | status != 500 != \"healthz\" !~ `^GET` [5m])",
                "count_over_time({a=\"b\"} | status!=500 != \"healthz\" !~ \"^GET\" [5m])",
            ),
            (
                "sum_over_time({a=\"b\"} | unwrap duration(latency) [5m])",
                "sum_over_time({a=\"b\"} | unwrap duration(latency) [5m])",
            ),
            (
                "avg_over_time({a=\"b\"} | unwrap duration_seconds(latency) [5m])",
                "avg_over_time({a=\"b\"} | unwrap duration(latency) [5m])",
            ),
            (
                "max_over_time({a=\"b\"} | unwrap bytes(size) [5m]) without (file)",
                "max_over_time({a=\"b\"} | unwrap bytes(size) [5m]) without (file)",
            ),
            (
                "rate({a=\"b\"} | unwrap n [1m])",
                "rate({a=\"b\"} | unwrap n [1m])",
            ),
            ("bytes_rate({a=\"b\"}[1m])", "bytes_rate({a=\"b\"} [1m])"),
            (
                "bytes_over_time({a=\"b\"}[1m])",
                "bytes_over_time({a=\"b\"} [1m])",
            ),
            (
                "count_over_time(probe_success[5m])",
                "count_over_time(probe_success[5m])",
            ),
            (
                "min_over_time(probe_duration_seconds[10m])",
                "min_over_time(probe_duration_seconds[10m])",
            ),
            // Ranges.
            ("rate(x[1h30m])", "rate(x[1h30m])"),
            ("rate(x[90s])", "rate(x[1m30s])"),
            ("rate(x[1500ms])", "rate(x[1s500ms])"),
            ("rate(x[1w])", "rate(x[7d])"),
            ("rate(x[1y])", "rate(x[365d])"),
            // Aggregations.
            ("sum without (a) (x)", "sum without (a) (x)"),
            ("sum(x) by (a, b,)", "sum by (a, b) (x)"),
            ("avg by () (x)", "avg by () (x)"),
            ("bottomk(2, x)", "bottomk(2, x)"),
            ("count(x) + min(y) - max(z)", "count(x) + min(y) - max(z)"),
            (
                "sum by (by, on, http.method) (x)",
                "sum by (by, on, http.method) (x)",
            ),
            // Operators and matching.
            ("a unless b", "a unless b"),
            ("a + on(x) b", "a + on (x) b"),
            ("a % 2 ^ b", "a % 2 ^ b"),
            ("a != bool ignoring (x, y) b", "a != bool ignoring (x, y) b"),
            ("-a * b", "-a * b"),
            ("a - -b", "a - -b"),
            // Comments and layout.
            (
                "# the error ratio\nsum(x) # per path\n  / # divided\n  sum(y)\n",
                "sum(x) / sum(y)",
            ),
        ];
        let mut failures = Vec::new();
        for (input, expected) in cases {
            let got = canonical(input);
            if got != *expected {
                failures.push(format!(
                    "{input:?}\n  expected {expected}\n  got      {got}"
                ));
            }
            if let Err(e) = round_trip(input) {
                failures.push(e);
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn precedence_and_associativity_follow_promql() {
        let cases = [
            ("1 + 2 * 3 ^ 2 ^ 2", "(+ 1 (* 2 (^ 3 (^ 2 2))))"),
            ("a or b and c", "(or a (and b c))"),
            ("a and b or c", "(or (and a b) c)"),
            ("a and b unless c", "(unless (and a b) c)"),
            ("a - b - c", "(- (- a b) c)"),
            ("a / b * c", "(* (/ a b) c)"),
            ("a > b + 1", "(> a (+ b 1))"),
            ("a > b == c", "(== (> a b) c)"),
            ("a == bool b or c", "(or (== bool a b) c)"),
            ("-2 ^ 2", "(neg (^ 2 2))"),
            ("-a * b", "(* (neg a) b)"),
            ("2 ^ -1", "(^ 2 (neg 1))"),
            ("a * -b + c", "(+ (* a (neg b)) c)"),
            ("(a + b) * c", "(* (paren (+ a b)) c)"),
            ("sum(a) / sum(b) > 0.05", "(> (/ (sum a) (sum b)) 0.05)"),
        ];
        for (input, expected) in cases {
            let expr = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sexpr(&expr), expected, "{input}");
        }
        let expr =
            parse("count_over_time({a=\"b\"} | a=1 or b=2 and c=3, d=4 or (e=5 or f=6) [5m])")
                .unwrap();
        let Stage::Fields(fields) = &log_arg(&expr).stages[0] else {
            panic!("not a field stage")
        };
        assert_eq!(
            field_sexpr(fields),
            "(or (or a (and (and b c) d)) (paren (or e f)))"
        );
    }

    #[test]
    fn regexes_are_compiled_anchored_except_line_filters() {
        let expr = parse(
            "count_over_time({file=~\"api|web\"} |~ \"Error$\" | path=~\"/api/.*\" | path!~`/health` [5m])",
        )
        .unwrap();
        let query = log_arg(&expr);
        let matcher = &query.selector.matchers[0];
        let label_re = matcher.regex.as_ref().unwrap();
        assert_eq!(label_re.as_str(), "^(?:api|web)$");
        assert!(label_re.is_match("web") && !label_re.is_match("webapi"));
        assert_eq!(matcher.value, "api|web");
        let Stage::Line(line) = &query.stages[0] else {
            panic!("not a line filter")
        };
        assert_eq!(
            (line.op, line.pattern.as_str()),
            (LineOp::Matches, "Error$")
        );
        let line_re = line.regex.as_ref().unwrap();
        assert!(line_re.is_match("an Error") && line_re.as_str() == "Error$");
        let Stage::Fields(FieldExpr::Compare(c)) = &query.stages[1] else {
            panic!("not a field filter")
        };
        let FieldValue::Regex(re) = &c.value else {
            panic!("not a regex")
        };
        assert_eq!((c.op, re.as_str()), (FieldOp::Re, "^(?:/api/.*)$"));
        let Stage::Fields(FieldExpr::Compare(c)) = &query.stages[2] else {
            panic!("not a field filter")
        };
        assert_eq!(c.op, FieldOp::NotRe);
        // Equality matchers carry no regex.
        let expr = parse("foo{a=\"b\", c!=\"d\"}").unwrap();
        let ExprKind::Series(sel) = &expr.kind else {
            panic!("not a series")
        };
        assert!(sel.matchers.iter().all(|m| m.regex.is_none()));
        assert_eq!(
            (sel.matchers[0].op, sel.matchers[1].op),
            (MatchOp::Eq, MatchOp::Ne)
        );
    }

    #[test]
    fn nodes_carry_their_spans() {
        let text = "sum by (path) (rate({a=\"b\"} | x >= 5 | unwrap bytes(size) [1m])) > bool 2";
        let expr = parse(text).unwrap();
        assert_eq!(expr.span, 0..text.len());
        let ExprKind::Binary(bin) = &expr.kind else {
            panic!("not binary")
        };
        assert_eq!(
            &text[bin.lhs.span.clone()],
            "sum by (path) (rate({a=\"b\"} | x >= 5 | unwrap bytes(size) [1m]))"
        );
        assert_eq!(&text[bin.rhs.span.clone()], "2");
        let ExprKind::Aggregate(agg) = &bin.lhs.kind else {
            panic!("not an aggregation")
        };
        let call = range_call(&agg.expr);
        assert_eq!(
            &text[agg.expr.span.clone()],
            "rate({a=\"b\"} | x >= 5 | unwrap bytes(size) [1m])"
        );
        assert_eq!(&text[call.name_span.clone()], "rate");
        assert_eq!(call.range, Duration::from_secs(60));
        let RangeArg::Log(query) = &call.arg else {
            panic!("not a log query")
        };
        assert_eq!(&text[query.selector.matchers[0].span.clone()], "a=\"b\"");
        let Stage::Fields(FieldExpr::Compare(c)) = &query.stages[0] else {
            panic!("not a field filter")
        };
        assert_eq!(&text[c.span.clone()], "x >= 5");
        let unwrap = query.unwrap.as_ref().unwrap();
        assert_eq!(&text[unwrap.span.clone()], "| unwrap bytes(size)");
        assert_eq!(
            (unwrap.field.as_str(), unwrap.conversion),
            ("size", UnwrapConversion::Bytes)
        );
        let neg = parse("  -foo").unwrap();
        assert_eq!(neg.span, 2..6);
    }

    #[test]
    fn parameters_and_groupings_land_in_the_tree() {
        let expr = parse("quantile_over_time(0.95, {a=\"b\"} | unwrap d [5m]) by (path)").unwrap();
        let call = range_call(&expr);
        assert_eq!(
            (call.func, call.param),
            (RangeFunc::QuantileOverTime, Some(0.95))
        );
        assert_eq!(call.grouping, Some(Grouping::By(vec!["path".to_string()])));
        let expr = parse("topk(3, x) ").unwrap();
        let ExprKind::Aggregate(agg) = &expr.kind else {
            panic!("not an aggregation")
        };
        assert_eq!(
            (agg.op, agg.param, &agg.grouping),
            (AggOp::Topk, Some(3.0), &None)
        );
        let expr = parse("a * ignoring (x) b").unwrap();
        let ExprKind::Binary(bin) = &expr.kind else {
            panic!("not binary")
        };
        assert_eq!(
            bin.matching,
            Some(VectorMatching::Ignoring(vec!["x".to_string()]))
        );
        assert!(!bin.return_bool);
    }

    #[test]
    fn log_queries_for_verifications() {
        for (input, expected) in [
            (
                "{source=\"app\"} | event=\"request finished\" | status >= 500",
                "{source=\"app\"} | event=\"request finished\" | status>=500",
            ),
            (
                "{source=\"app\"} | event=\"request finished\"",
                "{source=\"app\"} | event=\"request finished\"",
            ),
            (
                "{source=\"app\"} | event=\"request finished\" | unwrap duration_ms",
                "{source=\"app\"} | event=\"request finished\" | unwrap duration_ms",
            ),
            (
                "{source=\"app\"} | level=\"error\"",
                "{source=\"app\"} | level=\"error\"",
            ),
            ("  {source=\"app\"}  # all of it\n", "{source=\"app\"}"),
        ] {
            let query = parse_log_query(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(query.to_string(), expected);
            let again = parse_log_query(&query.to_string()).unwrap();
            assert_eq!(shape(&format!("{query:?}")), shape(&format!("{again:?}")));
        }
        let query = parse_log_query("{source=\"app\"} | unwrap duration(latency)").unwrap();
        assert_eq!(
            query.unwrap.map(|u| u.conversion),
            Some(UnwrapConversion::Duration)
        );
    }

    #[test]
    fn the_spec_example_error_comes_out_exactly() {
        let e = parse("sum(rate_over({source=\"app\"}[5m]))").unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(
            e.to_string(),
            "unknown function \"rate_over\" (did you mean \"rate\"?)"
        );
        assert_eq!(e.message, "unknown function \"rate_over\"");
        assert_eq!(e.hint.as_deref(), Some("did you mean \"rate\"?"));
        let plain = ParseError::new(3, "unterminated string");
        assert_eq!(plain.to_string(), "unterminated string");
    }

    /// One line per error: the input, a caret under the offending column, and
    /// `offset: message`.
    fn error_report(
        cases: &[&str],
        parse_one: impl Fn(&str) -> Result<String, ParseError>,
    ) -> String {
        let mut out = String::new();
        for input in cases {
            match parse_one(input) {
                Ok(printed) => {
                    out.push_str(&format!("{input}\n  UNEXPECTEDLY PARSED as {printed}\n\n"))
                }
                // Long inputs (the nesting limit) are shortened and get no caret.
                Err(e) if input.len() > 100 => {
                    let start: String = input.chars().take(40).collect();
                    out.push_str(&format!(
                        "{start}… ({} bytes)\n{}: {e}\n\n",
                        input.len(),
                        e.offset
                    ));
                }
                Err(e) => {
                    let shown = input.replace('\n', "⏎");
                    let column = input
                        .get(..e.offset)
                        .map_or(0, |before| before.chars().count());
                    out.push_str(&format!(
                        "{shown}\n{}^ {}: {e}\n\n",
                        " ".repeat(column),
                        e.offset
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn every_error_message() {
        let too_deep = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        let cases: &[&str] = &[
            // Names and calls.
            "sum(rate_over({source=\"app\"}[5m]))",
            "absent(foo)",
            "rate foo",
            "rate(sum(foo)[5m])",
            "rate(5, foo[5m])",
            "http.requests_total > 1",
            // The end and leftovers.
            "",
            "  # only a comment\n",
            "sum(rate(foo[5m])",
            "1 +",
            "a > bool",
            "(1 2)",
            "foo bar",
            "a = b",
            "a andd b",
            "sum(foo) [5m]",
            "foo | json",
            // Tokens.
            "5m",
            "\"x\"",
            "foo @ 5",
            "foo{a=\"b\"} !",
            "1 + 5x",
            "rate(foo[5.5m])",
            "foo{a=\"b",
            "foo{a=\"b\nc\"}",
            "foo{a=\"\\d+\"}",
            "foo{a=\"\\xff\"}",
            // Log queries in the wrong place or incomplete.
            "{source=\"app\"}",
            "sum({source=\"app\"} |= \"x\")",
            "count_over_time({source=\"app\"})",
            "count_over_time({source=\"app\"} |= \"x\"",
            "avg_over_time(probe_success)",
            "count_over_time(foo | json [5m])",
            "count_over_time({} [5m])",
            "foo[5m]",
            "foo{a=\"b\"}[5m] > 1",
            // Type errors of range functions.
            "sum_over_time({source=\"app\"} [5m])",
            "quantile_over_time(0.5, {source=\"app\"} | json [5m])",
            "bytes_rate(foo[5m])",
            "bytes_over_time(foo[5m])",
            "count_over_time({source=\"app\"} | unwrap x [5m])",
            "quantile_over_time({source=\"app\"} | unwrap x [5m])",
            "quantile_over_time(",
            "quantile_over_time(1.5, {source=\"app\"} | unwrap x [5m])",
            "quantile_over_time(-0.1, {source=\"app\"} | unwrap x [5m])",
            "quantile_over_time(0.9 {source=\"app\"} | unwrap x [5m])",
            "count_over_time({source=\"app\"}[5m]) by (path)",
            "avg_over_time(foo[5m]) without (a)",
            // Ranges.
            "rate(foo[5])",
            "rate(foo[30m1h])",
            "rate(foo[5m5m])",
            "rate(foo[0s])",
            "rate(foo[99999999999999y])",
            "rate(foo[5m:1m])",
            "rate(foo[5m)",
            // Pipelines.
            "count_over_time({a=\"b\"} | jsn [5m])",
            "sum_over_time({a=\"b\"} | unwarp x [5m])",
            "count_over_time({a=\"b\"} | logfmt [5m])",
            "count_over_time({a=\"b\"} | line_format \"{{.x}}\" [5m])",
            "count_over_time({a=\"b\"} | status 500 [5m])",
            "count_over_time({a=\"b\"} | = \"x\" [5m])",
            "count_over_time({a=\"b\"} | [5m])",
            "count_over_time({a=\"b\"} |= x [5m])",
            "count_over_time({a=\"b\"} !~ \"(\" [5m])",
            "count_over_time({a=\"b\"} | status > \"x\" [5m])",
            "count_over_time({a=\"b\"} | latency > 10s [5m])",
            "count_over_time({a=\"b\"} | level = error [5m])",
            "count_over_time({a=\"b\"} | path =~ 5 [5m])",
            "count_over_time({a=\"b\"} | path =~ \"[\" [5m])",
            "count_over_time({a=\"b\"} | (status > 5 [5m])",
            "count_over_time({a=\"b\"} | status > 5 andd level=\"x\" [5m])",
            "count_over_time({a=\"b\"} | status > 5 and [5m])",
            "count_over_time({a=\"b\"} |= \"x\" or \"y\" [5m])",
            "sum_over_time({a=\"b\"} | unwrap x | json [5m])",
            "sum_over_time({a=\"b\"} | unwrap x |= \"y\" [5m])",
            "sum_over_time({a=\"b\"} | unwrap seconds(x) [5m])",
            "sum_over_time({a=\"b\"} | unwrap duratoin(x) [5m])",
            "sum_over_time({a=\"b\"} | unwrap [5m])",
            "sum_over_time({a=\"b\"} | unwrap duration(5) [5m])",
            "sum_over_time({a=\"b\"} | unwrap duration(x [5m])",
            // Selectors.
            "foo{a.b=\"c\"}",
            "foo{a==\"b\"}",
            "foo{a>\"b\"}",
            "foo{a=5}",
            "foo{a=b}",
            "foo{a=\"b\" c=\"d\"}",
            "foo{=\"b\"}",
            "foo{a=~\"(\"}",
            "foo{a=~\"x{2,1}\"}",
            // Aggregations.
            "sum(1)",
            "sum(x, y)",
            "topk(x)",
            "topk(2.5, x)",
            "topk(0, x)",
            "topk(3 x)",
            "sum by (a) (x) by (b)",
            "sum bye (a) (x)",
            "sum by (a) x",
            "sum",
            "sum by a (x)",
            "sum by (a b) (x)",
            "sum by (1) (x)",
            "sum by (a:b) (x)",
            // Binary operators.
            "1 > 2",
            "(1 + 2) <= -3",
            "a + bool b",
            "a and bool b",
            "a and 1",
            "1 or a",
            "a unless (2 * 3)",
            "a * on (x) 2",
            "1 + ignoring (x) a",
            "a * on (x) group_left b",
            "a * group_right (y) b",
            "a > on (x) bool b",
            "a + on x b",
            // Depth.
            &too_deep,
        ];
        insta::assert_snapshot!(error_report(cases, |text| parse(text).map(|e| e.to_string())));
    }

    #[test]
    fn every_log_query_error_message() {
        let cases: &[&str] = &[
            "",
            "count_over_time({source=\"app\"}[5m])",
            "source=\"app\"",
            "{source=\"app\"} [5m]",
            "{source=\"app\"} | json foo",
            "{source=\"app\"} | unwrap x | json",
            "{}",
            "{source=\"app\"",
        ];
        insta::assert_snapshot!(
            error_report(cases, |text| parse_log_query(text).map(|q| q.to_string()))
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let n = 100_000;
        let inputs = [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}1", "-".repeat(n)),
            format!("{}1", "(-".repeat(n)),
            format!("1{}", " + 1".repeat(n)),
            format!("2{}", " ^ 2".repeat(n)),
            format!("{}x{}", "sum(".repeat(n), ")".repeat(n)),
            format!("x{}", " and x".repeat(n)),
            format!(
                "count_over_time({{a=\"b\"}} | {}a=1{} [5m])",
                "(".repeat(n),
                ")".repeat(n)
            ),
            format!(
                "count_over_time({{a=\"b\"}} | a=1{} [5m])",
                " or a=1".repeat(n)
            ),
            format!(
                "count_over_time({{a=\"b\"}} | a=1{} [5m])",
                ", a=1".repeat(n)
            ),
        ];
        for input in &inputs {
            let e = parse(input).unwrap_err();
            assert!(
                e.message.contains("nested too deeply"),
                "{}: {e}",
                &input[..40]
            );
        }
        // Just under the limit parses.
        let ok = [
            format!(
                "{}1{}",
                "(".repeat(MAX_DEPTH - 1),
                ")".repeat(MAX_DEPTH - 1)
            ),
            format!(
                "{}x{}",
                "sum(".repeat(MAX_DEPTH - 1),
                ")".repeat(MAX_DEPTH - 1)
            ),
            format!("{}1", "-".repeat(MAX_DEPTH - 1)),
            format!("1{}", " + 1".repeat(MAX_DEPTH - 1)),
            format!(
                "count_over_time({{a=\"b\"}} | {}a=1{} [5m])",
                "(".repeat(MAX_DEPTH - 2),
                ")".repeat(MAX_DEPTH - 2)
            ),
        ];
        for input in &ok {
            let expr = parse(input).unwrap_or_else(|e| panic!("{}…: {e}", &input[..40]));
            round_trip(input).unwrap();
            drop(expr);
        }
    }

    // ----- Property tests -------------------------------------------------------------

    /// Tokens of the language, for inputs that get past the lexer into the parser.
    const TOKENS: &[&str] = &[
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        ",",
        "=",
        "==",
        "!=",
        "=~",
        "!~",
        ">",
        ">=",
        "<",
        "<=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "^",
        "|",
        "|=",
        "|~",
        "and",
        "or",
        "unless",
        "bool",
        "on",
        "ignoring",
        "by",
        "without",
        "group_left",
        "json",
        "unwrap",
        "duration",
        "bytes",
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "topk",
        "bottomk",
        "rate",
        "count_over_time",
        "sum_over_time",
        "quantile_over_time",
        "bytes_rate",
        "absent_over_time",
        "avg_over_time",
        "foo",
        "a",
        "b",
        "path",
        "http.method",
        "http:errors:ratio5m",
        "1",
        "0.5",
        "3",
        "1e3",
        "Inf",
        "NaN",
        "5m",
        "1h30m",
        "\"x\"",
        "\"a.*\"",
        "'y'",
        "`(`",
        "{source=\"app\"}",
        "# c\n",
        "\n",
    ];

    fn token_soup() -> impl Strategy<Value = String> {
        // Mostly separated by a space, so that names do not all run together.
        proptest::collection::vec((proptest::sample::select(TOKENS), 0..4u8), 0..40).prop_map(
            |tokens| {
                tokens
                    .into_iter()
                    .map(|(token, space)| {
                        if space > 0 {
                            format!("{token} ")
                        } else {
                            token.to_string()
                        }
                    })
                    .collect()
            },
        )
    }

    /// A double-quoted (Debug) or raw literal for any string.
    fn string_literal() -> impl Strategy<Value = String> {
        ("(?s).{0,6}", proptest::bool::ANY).prop_map(|(s, raw)| {
            if raw && !s.contains('`') {
                format!("`{s}`")
            } else {
                format!("{s:?}")
            }
        })
    }

    fn regex_literal() -> impl Strategy<Value = String> {
        proptest::sample::select(
            &[
                "\"a.*\"",
                "`x|y`",
                "`\\d+`",
                "\"(?i)error\"",
                "'[a-z]+'",
                "\"\"",
                "`a{2,3}`",
            ][..],
        )
        .prop_map(str::to_string)
    }

    fn metric_name() -> impl Strategy<Value = String> {
        // An underscore keeps generated names clear of keywords and function names.
        "[a-z]{1,4}_[a-z0-9_:]{0,4}"
    }

    fn label_name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,3}"
    }

    fn field_name() -> impl Strategy<Value = String> {
        "f[a-z0-9_]{0,3}(\\.[a-z]{1,3})?"
    }

    fn matchers(min: usize) -> impl Strategy<Value = String> {
        let matcher = prop_oneof![
            (
                label_name(),
                proptest::sample::select(&["=", "!="][..]),
                string_literal()
            )
                .prop_map(|(n, op, v)| format!("{n}{op}{v}")),
            (
                label_name(),
                proptest::sample::select(&["=~", "!~"][..]),
                regex_literal()
            )
                .prop_map(|(n, op, v)| format!("{n} {op} {v}")),
        ];
        (
            proptest::collection::vec(matcher, min..3),
            proptest::bool::ANY,
        )
            .prop_map(|(ms, trailing)| {
                format!(
                    "{{{}{}}}",
                    ms.join(", "),
                    if trailing && !ms.is_empty() { "," } else { "" }
                )
            })
    }

    fn number_literal() -> impl Strategy<Value = String> {
        proptest::sample::select(
            &[
                "1", "0.5", "1e3", "0x1f", "Inf", "NaN", ".25", "2.5e-3", "42", "-3", "-0",
            ][..],
        )
        .prop_map(str::to_string)
    }

    fn field_expr() -> impl Strategy<Value = String> {
        let compare = prop_oneof![
            (
                field_name(),
                proptest::sample::select(&["=", "!=", "=="][..]),
                string_literal()
            )
                .prop_map(|(f, op, v)| format!("{f}{op}{v}")),
            (
                field_name(),
                proptest::sample::select(&["=~", "!~"][..]),
                regex_literal()
            )
                .prop_map(|(f, op, v)| format!("{f}{op}{v}")),
            (
                field_name(),
                proptest::sample::select(&[">", ">=", "<", "<=", "==", "!=", "="][..]),
                number_literal()
            )
                .prop_map(|(f, op, v)| format!("{f} {op} {v}")),
        ];
        compare.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}, {b}")),
                inner.prop_map(|a| format!("({a})")),
            ]
        })
    }

    fn stage() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("| json".to_string()),
            (
                proptest::sample::select(&["|=", "!="][..]),
                string_literal()
            )
                .prop_map(|(op, s)| format!("{op} {s}")),
            (proptest::sample::select(&["|~", "!~"][..]), regex_literal())
                .prop_map(|(op, s)| format!("{op} {s}")),
            field_expr().prop_map(|f| format!("| {f}")),
        ]
    }

    /// A log query, with `| unwrap` or without.
    fn log_query(unwrap: bool) -> impl Strategy<Value = String> {
        let unwrap_stage = prop_oneof![
            field_name().prop_map(|f| format!(" | unwrap {f}")),
            field_name().prop_map(|f| format!(" | unwrap duration({f})")),
            field_name().prop_map(|f| format!(" | unwrap bytes({f})")),
        ];
        (
            matchers(1),
            proptest::collection::vec(stage(), 0..4),
            unwrap_stage,
        )
            .prop_map(move |(selector, stages, unwrap_stage)| {
                let mut query = selector;
                for stage in stages {
                    query.push(' ');
                    query.push_str(&stage);
                }
                if unwrap {
                    query.push_str(&unwrap_stage);
                }
                query
            })
    }

    fn series() -> impl Strategy<Value = String> {
        (metric_name(), proptest::option::of(matchers(0)))
            .prop_map(|(n, m)| format!("{n}{}", m.unwrap_or_default()))
    }

    fn range_call_text() -> impl Strategy<Value = String> {
        let range =
            proptest::sample::select(&["5m", "1h30m", "30s", "250ms", "1w", "2d", "1y"][..]);
        let grouping = proptest::sample::select(&["", " by (path)", " without (file, source)"][..]);
        prop_oneof![
            // Counting functions over lines, or any function over a series.
            (
                proptest::sample::select(
                    &[
                        "count_over_time",
                        "rate",
                        "bytes_over_time",
                        "bytes_rate",
                        "absent_over_time"
                    ][..]
                ),
                log_query(false),
                range.clone(),
            )
                .prop_map(|(f, q, r)| format!("{f}({q} [{r}])")),
            (
                proptest::sample::select(
                    &[
                        "count_over_time",
                        "rate",
                        "sum_over_time",
                        "avg_over_time",
                        "min_over_time",
                        "max_over_time",
                        "absent_over_time"
                    ][..]
                ),
                series(),
                range.clone(),
            )
                .prop_map(|(f, s, r)| format!("{f}({s}[{r}])")),
            // Value functions over unwrapped samples, with LogQL's grouping.
            (
                proptest::sample::select(
                    &[
                        "sum_over_time",
                        "avg_over_time",
                        "min_over_time",
                        "max_over_time",
                        "rate"
                    ][..]
                ),
                log_query(true),
                range.clone(),
                grouping.clone(),
            )
                .prop_map(|(f, q, r, g)| format!("{f}({q}[{r}]){g}")),
            (
                proptest::sample::select(&["0", "0.5", "0.95", "1"][..]),
                log_query(true),
                range,
                grouping
            )
                .prop_map(|(phi, q, r, g)| format!("quantile_over_time({phi}, {q} [{r}]){g}")),
        ]
    }

    /// A type-correct expression and whether it is a scalar. Composite operands are
    /// parenthesised so that precedence cannot regroup them into a type error.
    fn expression() -> impl Strategy<Value = (String, bool)> {
        let leaf = prop_oneof![
            number_literal().prop_map(|n| (n, true)),
            series().prop_map(|s| (s, false)),
            range_call_text().prop_map(|c| (c, false)),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            let arith = proptest::sample::select(&["+", "-", "*", "/", "%", "^"][..]);
            let cmp = proptest::sample::select(&["==", "!=", ">", ">=", "<", "<="][..]);
            let set = proptest::sample::select(&["and", "or", "unless"][..]);
            let matching = proptest::sample::select(
                &["", " on (path)", " ignoring (status, file)", " on ()"][..],
            );
            let agg = proptest::sample::select(&["sum", "avg", "min", "max", "count"][..]);
            let grouping = proptest::sample::select(&["", "by (path) ", "without (a, b) "][..]);
            prop_oneof![
                (inner.clone(), arith, inner.clone(), matching.clone()).prop_map(
                    |((a, sa), op, (b, sb), m)| {
                        let m = if sa || sb { "" } else { m };
                        (format!("({a}) {op}{m} ({b})"), sa && sb)
                    }
                ),
                (inner.clone(), cmp, proptest::bool::ANY, inner.clone()).prop_map(
                    |((a, sa), op, bool_, (b, sb))| {
                        let bool_ = if bool_ || (sa && sb) { " bool" } else { "" };
                        (format!("({a}) {op}{bool_} ({b})"), sa && sb)
                    }
                ),
                (inner.clone(), set, matching, inner.clone()).prop_map(
                    |((a, sa), op, m, (b, sb))| {
                        // Set operators need vectors: a scalar side becomes `series + scalar`.
                        let a = if sa { format!("x_a + ({a})") } else { a };
                        let b = if sb { format!("x_b * ({b})") } else { b };
                        (format!("({a}) {op}{m} ({b})"), false)
                    }
                ),
                inner.clone().prop_map(|(a, s)| (format!("-({a})"), s)),
                (agg, grouping.clone(), inner.clone(), proptest::bool::ANY).prop_map(
                    |(op, g, (a, s), after)| {
                        let a = if s { format!("x_c - {a}") } else { a };
                        if after && !g.is_empty() {
                            (format!("{op}({a}) {}", g.trim_end()), false)
                        } else {
                            (format!("{op} {g}({a})"), false)
                        }
                    }
                ),
                (
                    proptest::sample::select(&["topk", "bottomk"][..]),
                    1u32..5,
                    inner
                )
                    .prop_map(|(op, k, (a, s))| {
                        let a = if s { format!("x_d / {a}") } else { a };
                        (format!("{op}({k}, {a})"), false)
                    }),
            ]
        })
    }

    /// Parses as an expression and as a log query; an error must point into the text.
    fn check_no_panic(text: &str) -> Result<(), TestCaseError> {
        for offset in [
            parse(text).err().map(|e| e.offset),
            parse_log_query(text).err().map(|e| e.offset),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(
                offset <= text.len() && text.is_char_boundary(offset),
                "offset {offset} in {text:?}"
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_text(text in "(?s).{0,64}") {
            check_no_panic(&text)?;
        }

        #[test]
        fn parse_never_panics_on_printable_text(text in "\\PC{0,64}") {
            check_no_panic(&text)?;
        }

        /// Valid expressions with a few characters cut out and a token put in, to reach
        /// the error paths deep inside the grammar.
        #[test]
        fn mutated_expressions_never_panic(
            (text, _) in expression(),
            cut in any::<proptest::sample::Index>(),
            cut_len in 0..4usize,
            insert in proptest::sample::select(TOKENS),
        ) {
            let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let at = cut.index(boundaries.len());
            let from = boundaries[at];
            let to = boundaries[(at + cut_len).min(boundaries.len() - 1)];
            check_no_panic(&format!("{}{}", &text[..from], &text[to..]))?;
            check_no_panic(&format!("{}{insert}{}", &text[..from], &text[to..]))?;
        }

        #[test]
        fn token_soup_never_panics_and_what_parses_round_trips(text in token_soup()) {
            match parse(&text) {
                Ok(_) => prop_assert_eq!(round_trip(&text), Ok(())),
                Err(e) => prop_assert!(e.offset <= text.len() && text.is_char_boundary(e.offset), "{e:?}"),
            }
            if let Ok(query) = parse_log_query(&text) {
                let printed = query.to_string();
                let again = parse_log_query(&printed);
                prop_assert!(again.is_ok(), "{printed:?}: {again:?}");
            }
        }

        #[test]
        fn generated_expressions_parse_and_round_trip((text, _) in expression()) {
            prop_assert_eq!(round_trip(&text), Ok(()));
        }

        #[test]
        fn generated_log_queries_parse_and_round_trip(text in log_query(false), unwrapped in log_query(true)) {
            for text in [text, unwrapped] {
                let query = parse_log_query(&text);
                prop_assert!(query.is_ok(), "{text:?}: {query:?}");
                if let Ok(query) = query {
                    let printed = query.to_string();
                    let again = parse_log_query(&printed).map(|q| q.to_string());
                    prop_assert_eq!(again, Ok(printed));
                }
            }
        }
    }
}
