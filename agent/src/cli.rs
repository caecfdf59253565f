//! The command line: clap definitions and the verbs that are not the agent itself.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

#[derive(Debug, Parser)]
#[command(
    name = "sidewatch",
    version,
    about = "Observability sidecar for Python web services"
)]
pub struct Cli {
    /// Config file [default: $SIDEWATCH_CONFIG, then ./sidewatch.yaml, else built-in defaults]
    #[arg(short = 'c', long = "config", env = "SIDEWATCH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default with no verb)
    Run,
    /// Validate the config; print every problem as file:line:col and exit 1 if any
    Check,
    /// Run rule unit tests (like `promtool test rules`); exit 0 when all pass, 1 otherwise
    Test {
        /// Rule test files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the configured rules over recorded logs and print what would have fired
    Replay {
        /// A recorded log file (repeat for more); records' own timestamps are the clock
        #[arg(long = "from", required = true)]
        from: Vec<PathBuf>,
        /// Output format
        #[arg(long, value_enum, default_value = "table")]
        format: crate::replay::ReplayFormat,
    },
    /// Exit 0 if a running agent's /healthz answers (for container HEALTHCHECK)
    Healthcheck {
        /// The agent's API [default: http://<api.listen of the config>, else http://127.0.0.1:9777]
        #[arg(long)]
        url: Option<String>,
    },
}

/// Loads the config the way every verb does: the given or default file, else the
/// built-in defaults.
pub fn load_config(explicit: Option<&std::path::Path>) -> Result<Config, config::ConfigErrors> {
    match config::resolve_path(explicit) {
        Some(path) => config::load(&path),
        None => Ok(Config::defaults()),
    }
}

/// `sidewatch check`.
pub fn check(explicit: Option<&std::path::Path>) -> ExitCode {
    match load_config(explicit) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            let rules = match crate::rules::load(&config.rules) {
                Ok(rules) => rules,
                Err(errors) => {
                    for error in &errors {
                        eprintln!("{error}");
                    }
                    let n = errors.len();
                    eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
                    return ExitCode::FAILURE;
                }
            };
            let sources: Vec<String> = config
                .logs
                .iter()
                .map(|s| format!("{} ({}, {})", s.name, s.format.name(), s.paths.join(", ")))
                .collect();
            println!(
                "{}: ok: {} log source(s): {}",
                config.origin(),
                config.logs.len(),
                sources.join("; ")
            );
            for warning in &rules.warnings {
                eprintln!("warning: {warning}");
            }
            let count: usize = rules.groups.iter().map(|g| g.rules.len()).sum();
            let files: Vec<String> = if config.rules.builtin_pack {
                vec![crate::rules::BUILTIN_PACK_NAME.to_string()]
            } else {
                rules
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect()
            };
            println!(
                "{}: ok: {} rule group(s), {count} rule(s) from {} file(s){}{}",
                config.origin(),
                rules.groups.len(),
                files.len(),
                if files.is_empty() { "" } else { ": " },
                files.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.0.len();
            eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}

/// `sidewatch healthcheck`.
pub async fn healthcheck(explicit: Option<&std::path::Path>, url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let listen = load_config(explicit)
            .map(|c| c.api.listen)
            .unwrap_or_else(|_| Config::defaults().api.listen);
        // An agent listening on every interface is reached on loopback.
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        format!("http://{host}:{}", listen.port())
    });
    let target = format!("{}/healthz", url.trim_end_matches('/'));
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::api::http_get(&target, None),
    )
    .await;
    match result {
        Ok(Ok((200, _))) => ExitCode::SUCCESS,
        Ok(Ok((code, _))) => {
            eprintln!("unhealthy: {target} answered {code}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: cannot reach {target}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: {target} did not answer within 5s");
            ExitCode::FAILURE
        }
    }
}

/// `sidewatch test`.
pub fn test(files: &[PathBuf]) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if crate::rules::unittest::run_files(files, &mut out) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `sidewatch replay`.
pub fn replay(
    explicit: Option<&std::path::Path>,
    from: &[PathBuf],
    format: crate::replay::ReplayFormat,
) -> ExitCode {
    let config = match load_config(explicit) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match crate::replay::run(&config, from, format, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
