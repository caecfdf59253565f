//! Rules: the expression language, rule files, the incremental evaluator and alert
//! states. Everything here is pure: it takes `now` and events and does no IO.

pub mod alert;
pub mod ast;
pub mod engine;
pub mod eval;
pub mod file;
pub mod labels;
mod lexer;
pub mod logs;
pub mod parser;
pub mod series;
pub mod sketch;
pub mod template;
pub mod unittest;

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, RulesConfig};

/// The default rule pack for Python web services, built into the binary: it runs when
/// the config has no `rules:` section (or there is no config file).
pub const BUILTIN_PACK: &str = include_str!("../../../rules/python-service.yaml");

/// Where the built-in pack says it comes from in errors and the status.
pub const BUILTIN_PACK_NAME: &str = "<built-in>/rules/python-service.yaml";

/// Loads the rules a config asks for: the built-in pack, or its `rules.files`.
pub fn load(config: &RulesConfig) -> Result<file::RuleSet, Vec<ConfigError>> {
    if config.builtin_pack {
        return file::load_str(
            &PathBuf::from(BUILTIN_PACK_NAME),
            BUILTIN_PACK,
            config.evaluation_interval,
        );
    }
    file::load_files(&config.files, Path::new(""), config.evaluation_interval)
}
