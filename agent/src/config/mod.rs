//! Configuration in two phases: `raw` is the YAML as typed (every value with its
//! position), `validate` turns it into the `Config` the agent runs on, collecting every
//! problem at once as `file:line:col: message` rather than stopping at the first.

mod raw;
pub(crate) mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::parse::{FieldNames, Format};

pub use validate::{load, load_str};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` when running on built-in defaults.
    pub path: Option<PathBuf>,
    pub service: ServiceConfig,
    pub data_dir: PathBuf,
    /// How often acknowledged file offsets are committed to the state store. It bounds
    /// the duplicates a crash can produce.
    pub checkpoint_interval: Duration,
    /// How long shutdown may take before the agent gives up waiting.
    pub grace_period: Duration,
    pub api: ApiConfig,
    pub logs: Vec<LogSourceConfig>,
    pub probes: Vec<ProbeConfig>,
    pub deployments: DeploymentsConfig,
    pub rules: RulesConfig,
    pub alerting: crate::notify::config::AlertingConfig,
    pub export: ExportConfig,
    /// `otlp_receiver:`: the app's OTel SDK sends here; `None`: no receiver.
    pub otlp_receiver: Option<OtlpReceiverConfig>,
    /// Things worth telling the user that are not errors.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceConfig {
    pub name: String,
    pub environment: String,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

/// A secret value: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Beginning,
    End,
}

/// One `logs:` entry: a set of files read with one format.
#[derive(Debug, Clone)]
pub struct LogSourceConfig {
    /// The `source` label of its records.
    pub name: Arc<str>,
    /// Glob patterns of the files to read.
    pub paths: Vec<String>,
    pub format: Format,
    pub fields: FieldNames,
    /// Where to start in files that exist on the agent's first run.
    pub start_at: StartAt,
    pub max_line_bytes: usize,
    /// A file that was renamed away or deleted is read until it has been idle this long.
    pub rotate_wait: Duration,
    /// How often files are checked when no change notification arrives.
    pub poll_interval: Duration,
    /// Use filesystem notifications (inotify); `false` polls only, for filesystems
    /// where notifications never come (NFS, some FUSE and overlay setups).
    pub notify: bool,
    /// Records matching this pipeline are not kept (`drop: '| level="debug"'`).
    pub drop: Option<DropFilter>,
    /// Rewrites applied to every record before it leaves the source, in order.
    pub redact: Vec<RedactRule>,
}

/// A `drop` filter: the pipeline as written and parsed.
#[derive(Debug, Clone)]
pub struct DropFilter {
    pub text: String,
    pub stages: Vec<crate::rules::ast::Stage>,
}

/// What a `redact` rule replaces when no `replace` is given.
pub const REDACTED: &str = "[REDACTED]";

/// One `redact` entry.
#[derive(Debug, Clone)]
pub struct RedactRule {
    pub target: RedactTarget,
    /// The replacement; for a pattern, `$1` / `${name}` refer to its groups.
    pub replace: String,
}

#[derive(Debug, Clone)]
pub enum RedactTarget {
    /// The value of every field of this name (top-level attribute, the message, or a
    /// key inside a nested object).
    Field(String),
    /// Every match in the message and in string values.
    Pattern(regex::Regex),
}

/// One `probes:` entry: an HTTP health endpoint checked every `interval`.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The `probe` label of its series.
    pub name: String,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Status codes that count as success (default: any 2xx).
    pub expect_status: Vec<u16>,
    /// JSONPath conditions on the body: each must hold.
    pub expect_body: Vec<(crate::jsonpath::JsonPath, serde_json::Value)>,
    pub max_latency: Option<Duration>,
    /// Where in the body the running version is (feeds deployment detection).
    pub version_from: Option<crate::jsonpath::JsonPath>,
    /// An extra trust root for an https endpoint.
    pub ca_file: Option<PathBuf>,
}

/// `otlp_receiver:`: the OTLP servers the app's own OpenTelemetry SDK sends to. At
/// least one of `grpc` and `http` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC listen address (`127.0.0.1:4317`), bound exactly as written.
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address (`127.0.0.1:4318`), bound exactly as written.
    pub http: Option<SocketAddr>,
    /// The largest request accepted, compressed and decompressed (default 4 MiB, what
    /// gRPC servers and the Collector accept).
    pub max_request_bytes: usize,
}

/// The default `otlp_receiver.max_request_bytes`.
pub const DEFAULT_OTLP_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The `source` label of the records the OTLP receiver makes from the app's spans.
pub const OTLP_SOURCE: &str = "otlp";

/// Where deployments are detected from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectSource {
    Api,
    ProbeVersion,
    LogField,
}

/// `deployments:`: detection and verification settings.
#[derive(Debug, Clone)]
pub struct DeploymentsConfig {
    pub detect: Vec<DetectSource>,
    /// The record field that carries the app's version (`log_field` detection).
    pub version_field: String,
    pub verify_window: Duration,
    pub baseline_window: Duration,
    /// Probe interval while a verification runs.
    pub probe_boost: Option<Duration>,
    /// Probe failures this soon after the switch are the restart, not the version.
    pub probe_grace: Duration,
    /// For the deployment as a whole, after correcting for every check and every look.
    pub confidence: f64,
    /// Peers' API URLs to fetch a baseline from when this agent never saw the version.
    pub baseline_from: Vec<String>,
    pub notify_on_pass: bool,
}

impl Default for DeploymentsConfig {
    fn default() -> DeploymentsConfig {
        DeploymentsConfig {
            detect: vec![
                DetectSource::Api,
                DetectSource::ProbeVersion,
                DetectSource::LogField,
            ],
            version_field: "version".into(),
            verify_window: Duration::from_secs(600),
            baseline_window: Duration::from_secs(1800),
            probe_boost: Some(Duration::from_secs(2)),
            probe_grace: Duration::from_secs(30),
            confidence: 0.99,
            baseline_from: Vec::new(),
            notify_on_pass: false,
        }
    }
}

/// `rules:`: where the rule files are and how they are evaluated.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Glob patterns of rule files, made absolute against the config file's directory.
    pub files: Vec<String>,
    /// Run the default rule pack built into the binary: the config has no `rules:`
    /// section (or there is no config file).
    pub builtin_pack: bool,
    /// The interval of groups that do not set their own.
    pub evaluation_interval: Duration,
    /// How far behind the wall clock evaluations run, so records still in flight count.
    pub evaluation_delay: Duration,
    /// The most series one log query of the rules may hold (cardinality limit).
    pub max_series: usize,
}

impl Default for RulesConfig {
    fn default() -> RulesConfig {
        RulesConfig {
            files: Vec::new(),
            builtin_pack: true,
            evaluation_interval: Duration::from_secs(15),
            evaluation_delay: Duration::from_secs(1),
            max_series: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExportConfig {
    pub file: Option<PathBuf>,
    pub stdout: bool,
    /// Decode every record and discard it (benchmarks).
    pub blackhole: bool,
    /// `export.otlp` with the `OTEL_*` variables applied; `None`: OTLP export is off.
    pub otlp: Option<crate::export::otlp::config::OtlpConfig>,
    /// The same for metrics (`OTEL_EXPORTER_OTLP_METRICS_*` may differ).
    pub otlp_metrics: Option<crate::export::otlp::config::OtlpConfig>,
    /// The same for traces (`OTEL_EXPORTER_OTLP_TRACES_*`).
    pub otlp_traces: Option<crate::export::otlp::config::OtlpConfig>,
}

impl Config {
    /// The built-in defaults of SPEC, used when there is no config file.
    pub fn defaults() -> Config {
        Config {
            path: None,
            service: ServiceConfig {
                name: "unknown_service".into(),
                environment: "production".into(),
            },
            data_dir: PathBuf::from("./sidewatch-data"),
            checkpoint_interval: Duration::from_secs(1),
            grace_period: Duration::from_secs(10),
            api: ApiConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9777)),
                token: None,
            },
            logs: vec![LogSourceConfig::defaults(
                "app",
                vec!["./logs/*.log".into()],
            )],
            probes: Vec::new(),
            deployments: DeploymentsConfig::default(),
            rules: RulesConfig::default(),
            alerting: crate::notify::config::AlertingConfig::defaults(
                "http://127.0.0.1:9777".into(),
            ),
            export: ExportConfig::default(),
            otlp_receiver: None,
            warnings: Vec::new(),
        }
    }

    /// The built-in defaults with the standard `OTEL_*` variables applied (OTLP
    /// export), for a run without a config file; `env` looks variables up.
    pub fn defaults_with_env(env: &dyn Fn(&str) -> Option<String>) -> Config {
        let mut config = Config::defaults();
        let mut warnings = Vec::new();
        let file = crate::export::otlp::config::OtlpFileSettings::default();
        use crate::export::otlp::config::{Signal, resolve};
        config.export.otlp = resolve(&file, env, &mut warnings, Signal::Logs);
        config.export.otlp_metrics = resolve(&file, env, &mut warnings, Signal::Metrics);
        config.export.otlp_traces = resolve(&file, env, &mut warnings, Signal::Traces);
        warnings.dedup();
        config.warnings.extend(warnings);
        config
    }

    /// Where the config came from, for log lines and `check` output.
    pub fn origin(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "built-in defaults".into(),
        }
    }
}

impl LogSourceConfig {
    pub fn defaults(name: &str, paths: Vec<String>) -> LogSourceConfig {
        LogSourceConfig {
            name: name.into(),
            paths,
            format: Format::Structlog,
            fields: Format::Structlog.default_field_names(),
            start_at: StartAt::End,
            max_line_bytes: 1024 * 1024,
            rotate_wait: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            notify: true,
            drop: None,
            redact: Vec::new(),
        }
    }
}

/// One problem in a config file, placed where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Resolves which config file to use: `-c`, else `$SIDEWATCH_CONFIG` (clap fills `-c`
/// from it), else `./sidewatch.yaml` when it exists, else none (built-in defaults).
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let default = PathBuf::from("sidewatch.yaml");
    default.exists().then_some(default)
}
