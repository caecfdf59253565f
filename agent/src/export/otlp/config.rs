//! `export.otlp`: the validated settings of the OTLP exporter, and the one function that
//! resolves them from the config file and the standard `OTEL_*` variables.
//!
//! Precedence, per setting, as SPEC and the OpenTelemetry specification say: the config
//! file, then the signal-specific variable (`OTEL_EXPORTER_OTLP_LOGS_*`), then the
//! generic one (`OTEL_EXPORTER_OTLP_*`), then the default. An invalid variable is
//! ignored with a warning (the OTel SDKs do the same): only the config file's own
//! mistakes are errors, because only they have a `file:line:col`.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Secret;

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies: OTel's default.
    HttpProtobuf,
    /// OTLP/gRPC.
    Grpc,
}

impl Protocol {
    pub const NAMES: &'static [&'static str] = &["http/protobuf", "grpc"];

    pub fn parse(text: &str) -> Option<Protocol> {
        match text.trim() {
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "grpc" => Some(Protocol::Grpc),
            _ => None,
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

impl Compression {
    pub const NAMES: &'static [&'static str] = &["gzip", "none"];

    pub fn parse(text: &str) -> Option<Compression> {
        match text.trim() {
            "gzip" => Some(Compression::Gzip),
            "none" => Some(Compression::None),
            _ => None,
        }
    }
}

/// Which signals are exported (`signals:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub logs: bool,
    pub metrics: bool,
    pub traces: bool,
}

impl Signals {
    pub const NAMES: &'static [&'static str] = &["logs", "metrics", "traces"];
    pub const ALL: Signals = Signals {
        logs: true,
        metrics: true,
        traces: true,
    };
}

/// The defaults, chosen after the OpenTelemetry Collector's: its batch processor sends
/// at 8192 records or after 200ms, and its exporters time out after 10s. The queue sizes
/// are SPEC's.
/// One OTLP signal, as the variables (`OTEL_EXPORTER_OTLP_LOGS_*`) and URLs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    fn var(self) -> &'static str {
        match self {
            Signal::Logs => "LOGS",
            Signal::Metrics => "METRICS",
            Signal::Traces => "TRACES",
        }
    }

    /// The gRPC method of the signal's `Export`.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        }
    }
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_QUEUE_MEMORY: u64 = 16 * 1024 * 1024;
pub const DEFAULT_QUEUE_DISK: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 8192;
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_millis(200);
/// `OTEL_METRIC_EXPORT_INTERVAL`'s default.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// The validated `export.otlp` section: present only when an endpoint was found.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The signal these settings are for (each signal may have its own variables).
    pub signal: Signal,
    /// Where requests go: for HTTP the full URL (`…/v1/logs`), for gRPC the server's
    /// URL.
    pub endpoint: String,
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata). Values are secrets (API keys).
    pub headers: Vec<(String, Secret)>,
    pub compression: Compression,
    pub timeout: Duration,
    /// An extra trust root for an https endpoint.
    pub ca_file: Option<PathBuf>,
    pub signals: Signals,
    /// Recent batches kept in memory so the sender rarely reads the disk.
    pub queue_memory: u64,
    /// The most the disk queue may hold; past it the oldest batches are dropped.
    pub queue_disk: u64,
    /// The most records one request carries.
    pub batch_max_records: usize,
    /// How long the sender waits for more records before sending a small request.
    pub batch_timeout: Duration,
    /// How often metrics are exported (`metrics_interval`, `OTEL_METRIC_EXPORT_INTERVAL`).
    pub metrics_interval: Duration,
    /// Resource attributes: `service.name`, `deployment.environment.name`, and every
    /// `OTEL_RESOURCE_ATTRIBUTES` entry. `host.name` and `service.version` are added
    /// when exporting.
    pub resource: Vec<(String, String)>,
}

/// What the config file says, each `None` when it does not say it. Validation has
/// already parsed and checked the values.
#[derive(Debug, Clone, Default)]
pub struct OtlpFileSettings {
    pub endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    pub headers: Option<Vec<(String, Secret)>>,
    pub compression: Option<Compression>,
    pub timeout: Option<Duration>,
    pub ca_file: Option<PathBuf>,
    pub signals: Option<Signals>,
    pub queue_memory: Option<u64>,
    pub queue_disk: Option<u64>,
    pub batch_max_records: Option<usize>,
    pub batch_timeout: Option<Duration>,
    pub metrics_interval: Option<Duration>,
    /// `service.name` and `service.environment`, when the file sets them.
    pub service_name: Option<String>,
    pub environment: Option<String>,
}

/// Resolves the OTLP exporter's settings; `None` means export is off (no endpoint
/// anywhere). Problems with variables are pushed to `warnings` and the variable is
/// ignored. Header values never appear in a warning.
pub fn resolve(
    file: &OtlpFileSettings,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
    signal: Signal,
) -> Option<OtlpConfig> {
    // A variable set to the empty string counts as unset, as the OTel spec says.
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let protocol = file
        .protocol
        .or_else(|| from_env(&var, signal, "PROTOCOL", warnings, Protocol::parse))
        .unwrap_or(Protocol::HttpProtobuf);
    let endpoint = match file.endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(base) => signal_url(base, protocol, signal),
        None => {
            let url = |name: &str, warnings: &mut Vec<String>| {
                let value = var(name)?;
                if has_scheme(&value) {
                    Some(value.trim().to_string())
                } else {
                    warnings.push(format!("ignoring {name}: not an http:// or https:// URL"));
                    None
                }
            };
            // The signal's own variable is a full URL, used as it is; the generic one
            // is a base URL.
            match url(
                &format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.var()),
                warnings,
            ) {
                Some(full) => full,
                None => signal_url(
                    &url("OTEL_EXPORTER_OTLP_ENDPOINT", warnings)?,
                    protocol,
                    signal,
                ),
            }
        }
    };
    let headers = match &file.headers {
        Some(headers) => headers.clone(),
        None => from_env(&var, signal, "HEADERS", warnings, parse_headers).unwrap_or_default(),
    };
    let compression = file
        .compression
        .or_else(|| from_env(&var, signal, "COMPRESSION", warnings, Compression::parse))
        .unwrap_or(Compression::Gzip);
    let timeout = file
        .timeout
        .or_else(|| {
            from_env(&var, signal, "TIMEOUT", warnings, |v| {
                let ms = v.trim().parse::<u64>().ok().filter(|ms| *ms > 0)?;
                Some(Duration::from_millis(ms))
            })
        })
        .unwrap_or(DEFAULT_TIMEOUT);
    let ca_file = file.ca_file.clone().or_else(|| {
        from_env(&var, signal, "CERTIFICATE", warnings, |v| {
            Some(PathBuf::from(v.trim()))
        })
    });

    let mut resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
        Some(text) => parse_key_values(&text).unwrap_or_else(|| {
            warnings.push("ignoring OTEL_RESOURCE_ATTRIBUTES: not a list of key=value".into());
            Vec::new()
        }),
        None => Vec::new(),
    };
    let environment = file
        .environment
        .clone()
        .or_else(|| attribute(&resource, "deployment.environment.name"));
    if let Some(environment) = environment {
        set_attribute(&mut resource, "deployment.environment.name", environment);
    }
    // `service.name`: the config file, then OTEL_SERVICE_NAME, then the resource
    // attributes, then OTel's `unknown_service`.
    let service_name = file
        .service_name
        .clone()
        .or_else(|| var("OTEL_SERVICE_NAME"))
        .or_else(|| attribute(&resource, "service.name"))
        .unwrap_or_else(|| "unknown_service".into());
    set_attribute(&mut resource, "service.name", service_name);

    let metrics_interval = file
        .metrics_interval
        .or_else(|| {
            let value = var("OTEL_METRIC_EXPORT_INTERVAL")?;
            let ms = value.trim().parse::<u64>().ok().filter(|ms| *ms > 0);
            if ms.is_none() {
                warnings.push("ignoring OTEL_METRIC_EXPORT_INTERVAL: invalid value".into());
            }
            Some(Duration::from_millis(ms?))
        })
        .unwrap_or(DEFAULT_METRICS_INTERVAL);

    Some(OtlpConfig {
        signal,
        endpoint,
        protocol,
        headers,
        compression,
        timeout,
        ca_file,
        signals: file.signals.unwrap_or(Signals::ALL),
        queue_memory: file.queue_memory.unwrap_or(DEFAULT_QUEUE_MEMORY),
        queue_disk: file.queue_disk.unwrap_or(DEFAULT_QUEUE_DISK),
        batch_max_records: file.batch_max_records.unwrap_or(DEFAULT_BATCH_MAX_RECORDS),
        batch_timeout: file.batch_timeout.unwrap_or(DEFAULT_BATCH_TIMEOUT),
        metrics_interval,
        resource,
    })
}

/// The signal-specific variable `OTEL_EXPORTER_OTLP_LOGS_{suffix}`, else the generic
/// `OTEL_EXPORTER_OTLP_{suffix}`, parsed; an invalid one is skipped with a warning that
/// names it but not its value (it may be a header's secret).
fn from_env<T>(
    var: &dyn Fn(&str) -> Option<String>,
    signal: Signal,
    suffix: &str,
    warnings: &mut Vec<String>,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    for name in [
        format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.var()),
        format!("OTEL_EXPORTER_OTLP_{suffix}"),
    ] {
        if let Some(value) = var(&name) {
            match parse(&value) {
                Some(v) => return Some(v),
                None => warnings.push(format!("ignoring {name}: invalid value")),
            }
        }
    }
    None
}

fn has_scheme(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("http://") || url.starts_with("https://")
}

/// A base URL made into the signal's URL: HTTP appends `/v1/logs` (`/v1/metrics`, …:
/// the OTel spec, for the generic variable and SPEC's `endpoint`); gRPC uses the
/// server's URL as it is.
fn signal_url(base: &str, protocol: Protocol, signal: Signal) -> String {
    let base = base.trim();
    match protocol {
        Protocol::HttpProtobuf => {
            format!("{}/v1/{}", base.trim_end_matches('/'), signal.name())
        }
        Protocol::Grpc => base.to_string(),
    }
}

fn attribute(list: &[(String, String)], key: &str) -> Option<String> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn set_attribute(list: &mut Vec<(String, String)>, key: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => list.insert(0, (key.to_string(), value)),
    }
}

/// `k=v,k2=v2` with percent-encoded keys and values (W3C baggage's syntax, which the
/// OTel spec uses for headers and resource attributes). `None` when malformed.
pub fn parse_key_values(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in text.split(',') {
        if item.trim().is_empty() {
            continue;
        }
        let (key, value) = item.split_once('=')?;
        let key = percent_decode(key.trim())?;
        if key.is_empty() {
            return None;
        }
        out.push((key, percent_decode(value.trim())?));
    }
    Some(out)
}

fn parse_headers(text: &str) -> Option<Vec<(String, Secret)>> {
    Some(
        parse_key_values(text)?
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Secret::new(v)))
            .collect(),
    )
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// One row: what the file says, the environment, and the expected outcome as a
    /// compact string `endpoint|protocol|compression|timeout_ms|ca|headers`.
    #[test]
    fn precedence_file_then_signal_variable_then_generic_then_default() {
        let file_endpoint = OtlpFileSettings {
            endpoint: Some("http://file:4318/".into()),
            ..Default::default()
        };
        let file_grpc = OtlpFileSettings {
            endpoint: Some("http://file:4317".into()),
            protocol: Some(Protocol::Grpc),
            compression: Some(Compression::None),
            timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let none = OtlpFileSettings::default();
        type Case<'a> = (
            &'a str,
            &'a OtlpFileSettings,
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            ("nothing anywhere: export off", &none, &[], None),
            (
                "empty variables count as unset",
                &none,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")],
                None,
            ),
            (
                "file endpoint is a base URL",
                &file_endpoint,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318")],
                Some("http://file:4318/v1/logs|HttpProtobuf|Gzip|10000|-|"),
            ),
            (
                "generic endpoint is a base URL",
                &none,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318")],
                Some("http://generic:4318/v1/logs|HttpProtobuf|Gzip|10000|-|"),
            ),
            (
                "signal endpoint is used as it is and beats the generic one",
                &none,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
                    (
                        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                        "http://logs:9999/custom",
                    ),
                ],
                Some("http://logs:9999/custom|HttpProtobuf|Gzip|10000|-|"),
            ),
            (
                "an endpoint without a scheme is ignored, the next applies",
                &none,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
                    ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "logs:9999"),
                ],
                Some("http://generic:4318/v1/logs|HttpProtobuf|Gzip|10000|-|"),
            ),
            (
                "grpc keeps the base URL",
                &none,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                Some("http://generic:4317|Grpc|Gzip|10000|-|"),
            ),
            (
                "signal variables beat generic ones, for every setting",
                &none,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                    ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
                    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic.pem"),
                    ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs.pem"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
                    ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "api-key=s%20x,B=2"),
                ],
                Some("http://generic:4317|Grpc|None|2500|/logs.pem|api-key,b"),
            ),
            (
                "generic variables apply when no signal variable is set",
                &none,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://generic"),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
                ],
                Some("https://generic/v1/logs|HttpProtobuf|None|5000|-|a"),
            ),
            (
                "an invalid signal variable falls through to the generic one",
                &none,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g"),
                    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "700"),
                    ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
                ],
                Some("http://g/v1/logs|HttpProtobuf|Gzip|700|-|"),
            ),
            (
                "the file beats every variable",
                &file_grpc,
                &[
                    ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:1/x"),
                    ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
                    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "1"),
                ],
                Some("http://file:4317|Grpc|None|3000|-|"),
            ),
        ];
        for (name, file, vars, expected) in cases {
            let mut warnings = Vec::new();
            let got = resolve(file, &env_of(vars), &mut warnings, Signal::Logs).map(|c| {
                format!(
                    "{}|{:?}|{:?}|{}|{}|{}",
                    c.endpoint,
                    c.protocol,
                    c.compression,
                    c.timeout.as_millis(),
                    c.ca_file
                        .map(|p| p.display().to_string())
                        .unwrap_or("-".into()),
                    c.headers
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            });
            assert_eq!(got.as_deref(), *expected, "{name} (warnings: {warnings:?})");
        }
    }

    #[test]
    fn without_a_config_file_the_variables_still_apply() {
        use crate::config::Config;
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        let otlp = Config::defaults_with_env(&env).export.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://c:4318/v1/logs");
        assert_eq!(otlp.resource[0].1, "unknown_service");
        assert!(
            Config::defaults_with_env(&env_of(&[]))
                .export
                .otlp
                .is_none()
        );
    }

    #[test]
    fn each_signal_has_its_own_url_and_variables() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9/custom"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ]);
        let file = OtlpFileSettings::default();
        let mut warnings = Vec::new();
        let logs = resolve(&file, &env, &mut warnings, Signal::Logs).unwrap();
        let metrics = resolve(&file, &env, &mut warnings, Signal::Metrics).unwrap();
        let traces = resolve(&file, &env, &mut warnings, Signal::Traces).unwrap();
        assert_eq!(logs.endpoint, "http://logs:9/custom");
        assert_eq!(metrics.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(traces.endpoint, "http://c:4318/v1/traces");
        assert_eq!(metrics.timeout, Duration::from_millis(1500));
        assert_eq!(logs.timeout, DEFAULT_TIMEOUT);
        assert_eq!(metrics.metrics_interval, Duration::from_secs(5));
        let grpc = OtlpFileSettings {
            endpoint: Some("http://c:4317".into()),
            protocol: Some(Protocol::Grpc),
            metrics_interval: Some(Duration::from_secs(2)),
            ..OtlpFileSettings::default()
        };
        let metrics = resolve(&grpc, &env, &mut warnings, Signal::Metrics).unwrap();
        assert_eq!(metrics.endpoint, "http://c:4317");
        assert_eq!(
            metrics.metrics_interval,
            Duration::from_secs(2),
            "the file wins"
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn invalid_variables_warn_without_their_value() {
        let mut warnings = Vec::new();
        let config = resolve(
            &OtlpFileSettings::default(),
            &env_of(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=%zzsecret"),
            ]),
            &mut warnings,
            Signal::Logs,
        )
        .unwrap();
        assert!(config.headers.is_empty());
        assert_eq!(
            warnings,
            ["ignoring OTEL_EXPORTER_OTLP_HEADERS: invalid value"]
        );
    }

    #[test]
    fn resource_from_file_then_service_name_variable_then_resource_attributes() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g"),
            ("OTEL_SERVICE_NAME", "from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,team=pay%2Cments,deployment.environment.name=staging",
            ),
        ]);
        let mut warnings = Vec::new();
        let from_env = resolve(
            &OtlpFileSettings::default(),
            &env,
            &mut warnings,
            Signal::Logs,
        )
        .unwrap();
        assert_eq!(
            from_env.resource,
            [
                ("service.name".to_string(), "from-env".to_string()),
                ("team".into(), "pay,ments".into()),
                ("deployment.environment.name".into(), "staging".into()),
            ]
        );
        let file = OtlpFileSettings {
            service_name: Some("checkout-api".into()),
            environment: Some("production".into()),
            ..Default::default()
        };
        let from_file = resolve(&file, &env, &mut warnings, Signal::Logs).unwrap();
        assert_eq!(
            from_file.resource,
            [
                ("service.name".to_string(), "checkout-api".to_string()),
                ("team".into(), "pay,ments".into()),
                ("deployment.environment.name".into(), "production".into()),
            ]
        );
        let attrs_only = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
        ]);
        let config = resolve(
            &OtlpFileSettings::default(),
            &attrs_only,
            &mut warnings,
            Signal::Logs,
        )
        .unwrap();
        assert_eq!(config.resource[0].1, "from-attrs");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
