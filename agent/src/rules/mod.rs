//! Rules: the expression language, rule files, the incremental evaluator and alert
//! states. Everything here is pure: it takes `now` and events and does no IO.

pub mod ast;
pub mod labels;
mod lexer;
pub mod parser;
pub mod sketch;
pub mod template;
