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
