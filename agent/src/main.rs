//! The `sidewatch` binary: parse the command line, load the config, run the verb, map
//! the result to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use sidewatch::cli::{self, Cli, Command};
use sidewatch::export::otlp::traces;
use sidewatch::topology::{self, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => cli::check(cli.config.as_deref()),
        Some(Command::Test { files }) => cli::test(&files),
        Some(Command::Replay { from, format }) => cli::replay(cli.config.as_deref(), &from, format),
        Some(Command::Deploy { version, id, api }) => {
            runtime().block_on(cli::deploy(&version, id, &api))
        }
        Some(Command::Verify {
            version,
            id,
            wait,
            timeout,
            api,
        }) => runtime().block_on(cli::verify(version, id, wait, timeout, &api)),
        Some(Command::Status { api }) => runtime().block_on(cli::status(&api)),
        Some(Command::Silence { action, api }) => runtime().block_on(cli::silence(&action, &api)),
        Some(Command::Healthcheck { url }) => {
            runtime().block_on(cli::healthcheck(cli.config.as_deref(), url))
        }
        Some(Command::Run) | None => run(cli.config.as_deref()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for the async parts (API, timers); the tail and sink
        // stages run on their own blocking threads.
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn run(config_path: Option<&std::path::Path>) -> ExitCode {
    init_logging();
    let config = match cli::load_config(config_path) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors.0 {
                tracing::error!(file = %error.file.display(), line = error.line, column = error.column, "{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    if config.path.is_none() {
        tracing::info!(
            "no config file (-c, $SIDEWATCH_CONFIG or ./sidewatch.yaml): running on built-in defaults: tail ./logs/*.log (structlog), data_dir ./sidewatch-data, API on 127.0.0.1:9777"
        );
    } else {
        tracing::info!(config = %config.origin(), version = env!("CARGO_PKG_VERSION"), "sidewatch starting");
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = runtime();
    let result = runtime.block_on(topology::run(config));
    // Whatever is still running after the grace period (a read stuck on a dead network
    // filesystem) must not hold the process: exit without waiting for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::GraceExceeded) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The agent's own logs: JSON lines on stderr, level from `$SIDEWATCH_LOG` (default
/// `info`), so they can be tailed and shipped like the app's. Beside them, the layer
/// that exports the agent's own spans over OTLP: installed now, empty until the
/// topology has read `export.otlp` (`export::otlp::traces`).
fn init_logging() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIDEWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let slot = traces::TracesSlot::default();
    tracing_subscriber::registry()
        .with(logs)
        .with(traces::layer(&slot))
        .init();
    traces::set_global(slot);
}
