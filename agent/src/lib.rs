//! sidewatch: an observability sidecar for Python web services.
//!
//! # Layout
//! - `config/`: raw YAML → validated `Config` (two phases, all errors at once)
//! - `event`: the record types that flow between components
//! - `parse/`: structlog, json, logfmt and text parsers (pure)
pub mod config;
pub mod event;
pub mod parse;
