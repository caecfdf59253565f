//! Phase two of configuration: raw YAML values → `Config`. Every check reports into one
//! list, so a user sees all the problems of a file in one run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Location;

use super::raw::{
    Node, RawAlerting, RawAlertmanager, RawConfig, RawDeployments, RawEmail, RawFieldNames,
    RawInhibitRule, RawLogSource, RawOtlp, RawOtlpReceiver, RawProbe, RawReceiver, RawRedact,
    RawRoute, RawRules, RawWebhook, S,
};
use super::{
    ApiConfig, Config, ConfigError, ConfigErrors, DeploymentsConfig, DetectSource, DropFilter,
    ExportConfig, LogSourceConfig, OtlpReceiverConfig, ProbeConfig, REDACTED, RedactRule,
    RedactTarget, RulesConfig, Secret, ServiceConfig, StartAt,
};
use crate::export::otlp::config::{Compression, OtlpFileSettings, Protocol, Signals};
use crate::notify::config::{
    AlertingConfig, AlertmanagerConfig, EmailConfig, GroupBy, InhibitRule, LOG_RECEIVER, Receiver,
    Route, SmtpTls, WebhookConfig, WebhookFormat,
};
use crate::notify::matcher::Matcher;
use crate::parse::{FieldNames, Format};

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read config file: {e}"),
            hint: None,
        }])
    })?;
    load_str(&text, path, &|name| std::env::var(name).ok())
}

/// Validates config text; `path` names it in errors and anchors relative `*_file` paths;
/// `env` looks up `${VAR}` references.
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
        columns: ColumnMap::default(),
    };
    // `${VAR}` is expanded in the text before YAML parsing, as Prometheus and Vector do,
    // so that SPEC's `{ token: ${SIDEWATCH_TOKEN:-} }` works inside flow mappings. The
    // column map moves positions in the expanded text back to the file as written.
    // A reference that cannot be expanded becomes empty so that the rest of the file is
    // still checked; an error the empty value causes at the same place is dropped.
    let (text, columns, expansion_errors) = expand_text(text, env);
    ctx.columns = columns;
    let text = text.as_str();
    // The document's shape with the position of every key, to place unknown keys.
    let tree = match serde_saphyr::from_str::<Option<Node>>(text) {
        Ok(tree) => tree.unwrap_or(Node::Map(Vec::new())),
        Err(e) => {
            let error = ctx.yaml_error(&e);
            ctx.errors.push(error);
            return Err(ctx.finish(expansion_errors));
        }
    };
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_ignored::deserialize(de, |p: serde_ignored::Path<'_>| {
            unknown.push(segments(&p));
        })
    });
    let raw: Option<RawConfig> = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let first = ctx.yaml_error(&e);
            ctx.report_unknown(&tree, &unknown);
            ctx.errors.push(first);
            return Err(ctx.finish(expansion_errors));
        }
    };
    ctx.report_unknown(&tree, &unknown);
    let config = ctx.config(raw.unwrap_or_default(), path, env);
    if ctx.errors.is_empty() && expansion_errors.is_empty() {
        Ok(Config {
            warnings: ctx.warnings,
            ..config
        })
    } else {
        Err(ctx.finish(expansion_errors))
    }
}

/// A step of the path serde_ignored reports.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path as P;
    let mut out = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, .. }
        | P::Map { parent, .. }
        | P::Some { parent }
        | P::NewtypeStruct { parent }
        | P::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        P::Seq { index, .. } => out.push(Segment::Index(*index)),
        P::Map { key, .. } => out.push(Segment::Key(key.clone())),
        _ => {}
    }
    out
}

/// The keys each section accepts, for "did you mean" hints. Indices are dropped from the
/// section path (`logs.0.fields` → `logs.fields`).
fn known_keys(section: &[&str]) -> &'static [&'static str] {
    match section {
        [] => &[
            "service",
            "data_dir",
            "checkpoint_interval",
            "grace_period",
            "api",
            "logs",
            "probes",
            "otlp_receiver",
            "deployments",
            "rules",
            "alerting",
            "export",
        ],
        ["service"] => &["name", "environment"],
        ["api"] => &["listen", "token", "token_file"],
        ["logs"] => &[
            "name",
            "paths",
            "format",
            "start_at",
            "fields",
            "max_line_bytes",
            "rotate_wait",
            "poll_interval",
            "notify",
            "drop",
            "redact",
        ],
        ["logs", "fields"] => &["message", "level", "time", "trace_id", "span_id"],
        ["logs", "redact"] => &["field", "pattern", "replace"],
        ["rules"] => &[
            "files",
            "evaluation_interval",
            "evaluation_delay",
            "max_series",
        ],
        ["alerting"] => &[
            "alertmanagers",
            "resend_delay",
            "external_url",
            "route",
            "receivers",
            "inhibit_rules",
        ],
        ["alerting", "alertmanagers"] => &[
            "urls",
            "timeout",
            "ca_file",
            "bearer_token",
            "bearer_token_file",
        ],
        ["alerting", "route"] | ["alerting", "route", "routes", ..] => &[
            "receiver",
            "matchers",
            "continue",
            "group_by",
            "group_wait",
            "group_interval",
            "repeat_interval",
            "routes",
        ],
        ["alerting", "receivers"] => &["name", "email", "webhook"],
        ["alerting", "receivers", "email"] => &[
            "to",
            "from",
            "smarthost",
            "tls",
            "username",
            "password",
            "password_file",
            "ca_file",
            "hello",
            "subject",
            "text",
            "html",
            "send_resolved",
            "timeout",
        ],
        ["alerting", "receivers", "webhook"] => &[
            "url",
            "url_file",
            "format",
            "hmac_secret",
            "hmac_secret_file",
            "ca_file",
            "timeout",
            "max_alerts",
            "send_resolved",
        ],
        ["alerting", "inhibit_rules"] => &["source_matchers", "target_matchers", "equal"],
        ["otlp_receiver"] => &["grpc", "http", "max_request_bytes"],
        ["export"] => &["file", "stdout", "blackhole", "otlp"],
        ["export", "file"] => &["path"],
        ["export", "otlp"] => &[
            "endpoint",
            "protocol",
            "headers",
            "headers_file",
            "compression",
            "timeout",
            "ca_file",
            "signals",
            "queue",
            "batch",
            "metrics_interval",
        ],
        ["export", "otlp", "queue"] => &["memory", "disk"],
        ["export", "otlp", "batch"] => &["max_records", "timeout"],
        _ => &[],
    }
}

struct Ctx {
    file: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    columns: ColumnMap,
}

impl Ctx {
    /// All errors in file order; an expansion error replaces the error its empty value caused.
    fn finish(mut self, expansion_errors: Vec<ExpansionError>) -> ConfigErrors {
        self.errors.retain(|e| {
            !expansion_errors
                .iter()
                .any(|(line, column, ..)| *line == e.line && *column == e.column)
        });
        for (line, column, message, hint) in expansion_errors {
            self.errors.push(ConfigError {
                file: self.file.clone(),
                line,
                column,
                message,
                hint: Some(hint),
            });
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(self.errors)
    }

    fn error_at(&mut self, at: Location, message: impl Into<String>, hint: Option<String>) {
        let line = at.line().max(1);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column: self.columns.original(line, at.column().max(1)),
            message: message.into(),
            hint,
        });
    }

    fn yaml_error(&self, e: &serde_saphyr::Error) -> ConfigError {
        let mut error = yaml_error(&self.file, e);
        error.column = self.columns.original(error.line, error.column);
        error
    }

    fn report_unknown(&mut self, tree: &Node, unknown: &[Vec<Segment>]) {
        for path in unknown {
            let Some((key, rest)) = path.split_last() else {
                continue;
            };
            let Segment::Key(key) = key else { continue };
            // `Spanned` values read their position through a private key; it is not the
            // user's.
            if key.starts_with("__serde_saphyr_private") {
                continue;
            }
            // Walk the tree along the path; segments that are not in the document (the
            // internals of a `Spanned` wrapper) are skipped.
            let mut node = tree;
            let mut section: Vec<&str> = Vec::new();
            for segment in rest {
                match (segment, node) {
                    (Segment::Key(k), Node::Map(entries)) => {
                        if let Some((_, child)) = entries.iter().find(|(name, _)| name.value == *k)
                        {
                            node = child;
                            section.push(k);
                        }
                    }
                    (Segment::Index(i), Node::Seq(items)) => {
                        if let Some(child) = items.get(*i) {
                            node = child;
                        }
                    }
                    _ => {}
                }
            }
            let location = match node {
                Node::Map(entries) => entries
                    .iter()
                    .find(|(name, _)| name.value == *key)
                    .map(|(name, _)| name.referenced),
                _ => None,
            };
            let known = known_keys(&section);
            let hint = did_you_mean(key, known)
                .map(|m| format!("did you mean `{m}`?"))
                .or_else(|| {
                    (!known.is_empty()).then(|| format!("expected one of: {}", known.join(", ")))
                });
            let where_ = if section.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", section.join("."))
            };
            self.error_at(
                location.unwrap_or(Location::UNKNOWN),
                format!("unknown key `{key}`{where_}"),
                hint,
            );
        }
    }

    /// A string value (`${VAR}` references were expanded before parsing).
    fn string(&mut self, value: &S) -> Option<String> {
        Some(value.value.0.clone())
    }

    fn duration(&mut self, value: Option<&S>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let Some(text) = self.string(value) else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error_at(value.referenced, "duration must be greater than zero", None);
                default
            }
            Err(_) => {
                self.error_at(
                    value.referenced,
                    format!("invalid duration `{text}`"),
                    Some("write it like 250ms, 10s, 5m or 1h".into()),
                );
                default
            }
        }
    }

    fn size(&mut self, value: Option<&S>, default: usize, min: usize, max: usize) -> usize {
        let Some(value) = value else { return default };
        let Some(text) = self.string(value) else {
            return default;
        };
        match parse_size(&text) {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.error_at(
                    value.referenced,
                    format!("size {n} bytes is out of range ({min}..={max} bytes)"),
                    None,
                );
                default
            }
            None => {
                self.error_at(
                    value.referenced,
                    format!("invalid size `{text}`"),
                    Some("write it like 64KiB, 1MiB or 1048576".into()),
                );
                default
            }
        }
    }

    fn boolean(&mut self, value: Option<&S>, default: bool) -> bool {
        let Some(value) = value else { return default };
        match self.string(value).as_deref() {
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.error_at(
                    value.referenced,
                    format!("expected true or false, found `{other}`"),
                    None,
                );
                default
            }
            None => default,
        }
    }

    fn choice<T: Copy>(
        &mut self,
        value: Option<&S>,
        default: T,
        what: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        let Some(value) = value else { return default };
        let Some(text) = self.string(value) else {
            return default;
        };
        match parse(&text) {
            Some(v) => v,
            None => {
                let hint = did_you_mean(&text, names)
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| format!("expected one of: {}", names.join(", ")));
                self.error_at(
                    value.referenced,
                    format!("unknown {what} `{text}`"),
                    Some(hint),
                );
                default
            }
        }
    }

    /// `choice` over a table of names and values, so each name is written once.
    fn pick<T: Copy>(
        &mut self,
        value: Option<&S>,
        default: T,
        what: &str,
        options: &[(&str, T)],
    ) -> T {
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.choice(value, default, what, &names, |s| {
            options.iter().find(|(name, _)| *name == s).map(|(_, v)| *v)
        })
    }

    /// A secret given inline or, through its `*_file` twin, in a file.
    fn secret(&mut self, inline: Option<&S>, file: Option<&S>, name: &str) -> Option<Secret> {
        match (inline, file) {
            (Some(inline), Some(_)) => {
                self.error_at(
                    inline.referenced,
                    format!("`{name}` and `{name}_file` are both set"),
                    Some(format!(
                        "keep one: `{name}_file` reads the secret from a file"
                    )),
                );
                None
            }
            (Some(inline), None) => {
                let value = self.string(inline)?;
                (!value.is_empty()).then(|| Secret::new(value))
            }
            (None, Some(file)) => {
                let path = self.string(file)?;
                let path = self.relative_to_config(&path);
                match std::fs::read_to_string(&path) {
                    // Secret files usually end with a newline that is not part of it.
                    Ok(value) => Some(Secret::new(value.trim_end_matches(['\n', '\r']).into())),
                    Err(e) => {
                        self.error_at(
                            file.referenced,
                            format!("cannot read `{name}_file` {}: {e}", path.display()),
                            None,
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn relative_to_config(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        if path.is_absolute() {
            return path;
        }
        match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
            _ => path,
        }
    }

    /// A warning at a place in the file (the column as written, before `${VAR}`
    /// expansion).
    fn warn_at(&mut self, at: Location, message: &str) {
        let line = at.line().max(1);
        let column = self.columns.original(line, at.column().max(1));
        self.warnings.push(format!(
            "{}:{line}:{column}: {message}",
            self.file.display()
        ));
    }

    /// `otlp_receiver:`. `None` when neither server is on.
    fn otlp_receiver(
        &mut self,
        raw: RawOtlpReceiver,
        at: Location,
        api_listen: SocketAddr,
        logs: &[LogSourceConfig],
    ) -> Option<OtlpReceiverConfig> {
        let grpc = self.receiver_listen(raw.grpc.as_ref(), "grpc", "127.0.0.1:4317");
        let http = self.receiver_listen(raw.http.as_ref(), "http", "127.0.0.1:4318");
        let max_request_bytes = self.size(
            raw.max_request_bytes.as_ref(),
            super::DEFAULT_OTLP_MAX_REQUEST_BYTES,
            1024,
            256 * 1024 * 1024,
        );
        // Two listeners on one port fail at bind time; say so here, at the value.
        let overlaps = |a: SocketAddr, b: SocketAddr| {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        for (addr, value, key) in [
            (grpc, raw.grpc.as_ref(), "grpc"),
            (http, raw.http.as_ref(), "http"),
        ] {
            let (Some(addr), Some(value)) = (addr, value) else {
                continue;
            };
            if overlaps(addr, api_listen) {
                self.error_at(
                    value.referenced,
                    format!("`otlp_receiver.{key}` {addr} is also `api.listen`"),
                    Some("give each server its own port".into()),
                );
            }
            if key == "http"
                && let Some(grpc) = grpc
                && overlaps(addr, grpc)
            {
                self.error_at(
                    value.referenced,
                    format!("`otlp_receiver.http` {addr} is also `otlp_receiver.grpc`"),
                    Some("OTLP's defaults are 4317 for gRPC and 4318 for HTTP".into()),
                );
            }
            if !addr.ip().is_loopback() {
                self.warn_at(
                    value.referenced,
                    &format!(
                        "`otlp_receiver.{key}` listens on {addr}, beyond this host: anything that reaches it can send data as the app (127.0.0.1 is enough for a sidecar)"
                    ),
                );
            }
        }
        if grpc.is_none() && http.is_none() {
            self.warn_at(
                at,
                "`otlp_receiver` has neither `grpc` nor `http`: no OTLP receiver runs",
            );
            return None;
        }
        if logs.iter().any(|l| &*l.name == super::OTLP_SOURCE) {
            self.error_at(
                at,
                format!(
                    "the log source name `{}` is taken by `otlp_receiver` (its spans are the stream source=\"{}\")",
                    super::OTLP_SOURCE,
                    super::OTLP_SOURCE
                ),
                Some("rename that `logs` entry".into()),
            );
        }
        Some(OtlpReceiverConfig {
            grpc,
            http,
            max_request_bytes,
        })
    }

    /// One `otlp_receiver` listen address: `IP:PORT`, or `off` / empty for none.
    fn receiver_listen(
        &mut self,
        value: Option<&S>,
        key: &str,
        example: &str,
    ) -> Option<SocketAddr> {
        let value = value?;
        let text = self.string(value)?;
        let text = text.trim();
        if text.is_empty() || text == "off" || text == "false" {
            return None;
        }
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error_at(
                    value.referenced,
                    format!("invalid listen address `{text}` for `otlp_receiver.{key}`"),
                    Some(format!("write it as IP:PORT, e.g. {example}, or `off`")),
                );
                None
            }
        }
    }

    fn config(
        &mut self,
        raw: RawConfig,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Config {
        let defaults = Config::defaults();
        // What the file itself says about the service, for the OTLP resource (where
        // the file wins over OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES).
        let mut otlp_settings = OtlpFileSettings::default();
        if let Some(service) = &raw.service {
            otlp_settings.service_name = service.name.as_ref().and_then(|v| self.string(v));
            otlp_settings.environment = service.environment.as_ref().and_then(|v| self.string(v));
        }
        let service = match raw.service {
            Some(service) => ServiceConfig {
                name: service
                    .name
                    .as_ref()
                    .and_then(|v| self.string(v))
                    .unwrap_or(defaults.service.name),
                environment: service
                    .environment
                    .as_ref()
                    .and_then(|v| self.string(v))
                    .unwrap_or(defaults.service.environment),
            },
            None => defaults.service,
        };
        let data_dir = raw
            .data_dir
            .as_ref()
            .and_then(|v| self.string(v))
            .map(PathBuf::from)
            .unwrap_or(defaults.data_dir);
        let checkpoint_interval = self.duration(
            raw.checkpoint_interval.as_ref(),
            defaults.checkpoint_interval,
        );
        let grace_period = self.duration(raw.grace_period.as_ref(), defaults.grace_period);
        let api = match raw.api {
            Some(api) => {
                let listen = match api.listen.as_ref() {
                    Some(v) => match self.string(v).map(|s| s.parse::<SocketAddr>()) {
                        Some(Ok(addr)) => addr,
                        Some(Err(_)) => {
                            self.error_at(
                                v.referenced,
                                format!("invalid listen address `{}`", v.value.0),
                                Some("write it as IP:PORT, e.g. 127.0.0.1:9777".into()),
                            );
                            defaults.api.listen
                        }
                        None => defaults.api.listen,
                    },
                    None => defaults.api.listen,
                };
                let token = self.secret(api.token.as_ref(), api.token_file.as_ref(), "token");
                ApiConfig { listen, token }
            }
            None => defaults.api,
        };
        let logs = match raw.logs {
            Some(entries) => {
                let mut logs: Vec<LogSourceConfig> = Vec::new();
                for entry in entries {
                    if let Some(source) = self.log_source(entry.value, entry.referenced) {
                        if logs.iter().any(|l| l.name == source.name) {
                            self.error_at(
                                entry.referenced,
                                format!("duplicate log source name `{}`", source.name),
                                Some("each `logs` entry needs its own `name`".into()),
                            );
                        }
                        logs.push(source);
                    }
                }
                logs
            }
            None => defaults.logs,
        };
        let export = match raw.export {
            Some(mut export) => {
                if let Some(otlp) = export.otlp.take() {
                    self.otlp(otlp.value, &mut otlp_settings);
                }
                let file = match export.file {
                    Some(file) => match file.value.path.as_ref().and_then(|p| self.string(p)) {
                        Some(p) => Some(PathBuf::from(p)),
                        None => {
                            self.error_at(
                                file.referenced,
                                "`export.file` needs a `path`",
                                Some("e.g. `file: { path: ./records.jsonl }`".into()),
                            );
                            None
                        }
                    },
                    None => None,
                };
                ExportConfig {
                    file,
                    stdout: self.boolean(export.stdout.as_ref(), false),
                    blackhole: self.boolean(export.blackhole.as_ref(), false),
                    otlp: None,
                    otlp_metrics: None,
                    otlp_traces: None,
                }
            }
            None => ExportConfig::default(),
        };
        let mut otlp_warnings = Vec::new();
        use crate::export::otlp::config::{Signal, resolve};
        let export = ExportConfig {
            otlp: resolve(&otlp_settings, env, &mut otlp_warnings, Signal::Logs),
            otlp_metrics: resolve(&otlp_settings, env, &mut otlp_warnings, Signal::Metrics),
            otlp_traces: resolve(&otlp_settings, env, &mut otlp_warnings, Signal::Traces),
            ..export
        };
        let mut seen = std::collections::HashSet::new();
        otlp_warnings.retain(|w| seen.insert(w.clone()));
        for warning in otlp_warnings {
            self.warnings
                .push(format!("{}: {warning}", self.file.display()));
        }
        let mut probes: Vec<ProbeConfig> = Vec::new();
        for probe in raw.probes.unwrap_or_default() {
            let at = probe.referenced;
            if let Some(probe) = self.probe(probe.value, at) {
                if probes.iter().any(|p| p.name == probe.name) {
                    self.error_at(
                        at,
                        format!("probe name `{}` is used twice", probe.name),
                        None,
                    );
                }
                probes.push(probe);
            }
        }
        let deployments = match raw.deployments {
            Some(d) => self.deployments(d.value),
            None => DeploymentsConfig::default(),
        };
        let otlp_receiver = match raw.otlp_receiver {
            Some(r) => self.otlp_receiver(r.value, r.referenced, api.listen, &logs),
            None => None,
        };
        let default_url = format!("http://{}", api.listen);
        let alerting = match raw.alerting {
            Some(a) => self.alerting(a.value, a.referenced, default_url),
            None => AlertingConfig::defaults(default_url),
        };
        let rules = match raw.rules {
            Some(rules) => self.rules(rules.value),
            None => defaults.rules,
        };
        Config {
            path: Some(path.to_path_buf()),
            probes,
            deployments,
            rules,
            alerting,
            service,
            data_dir,
            checkpoint_interval,
            grace_period,
            api,
            logs,
            export,
            otlp_receiver,
            warnings: Vec::new(),
        }
    }

    /// `export.otlp` as the file writes it; `config::resolve` adds the variables.
    fn otlp(&mut self, raw: RawOtlp, out: &mut OtlpFileSettings) {
        if let Some(endpoint) = &raw.endpoint
            && !endpoint.value.0.trim().is_empty()
        {
            out.endpoint = self.http_url(
                endpoint,
                "`export.otlp.endpoint`",
                "http://otel-collector:4318",
            );
        }
        if raw.protocol.is_some() {
            out.protocol = Some(self.choice(
                raw.protocol.as_ref(),
                Protocol::HttpProtobuf,
                "OTLP protocol",
                Protocol::NAMES,
                Protocol::parse,
            ));
        }
        if raw.compression.is_some() {
            out.compression = Some(self.choice(
                raw.compression.as_ref(),
                Compression::Gzip,
                "compression",
                Compression::NAMES,
                Compression::parse,
            ));
        }
        if let Some(headers) = &raw.headers {
            let mut list = Vec::new();
            for (name, value) in &headers.value {
                let valid_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid_name {
                    self.error_at(
                        headers.referenced,
                        format!("invalid header name `{name}` in `export.otlp.headers`"),
                        None,
                    );
                    continue;
                }
                let text = value.value.0.clone();
                // The value is a secret (an API key): the error never repeats it.
                if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    self.error_at(
                        value.referenced,
                        format!("the value of header `{name}` holds a line break"),
                        None,
                    );
                    continue;
                }
                list.push((name.to_ascii_lowercase(), Secret::new(text)));
            }
            out.headers = Some(list);
        }
        if let Some(file) = raw.headers_file.as_ref() {
            if let Some(headers) = &raw.headers {
                self.error_at(
                    headers.referenced,
                    "`headers` and `headers_file` are both set",
                    Some("keep one: `headers_file` reads them from a file".into()),
                );
            } else if let Some(text) = self.secret(None, Some(file), "headers") {
                // One pair a line or comma-separated, percent-encoded: the format of
                // OTEL_EXPORTER_OTLP_HEADERS. The file's text is never repeated.
                let joined = text.expose().replace(['\n', '\r'], ",");
                match crate::export::otlp::config::parse_key_values(&joined) {
                    Some(pairs) => {
                        out.headers = Some(
                            pairs
                                .into_iter()
                                .map(|(k, v)| (k.to_ascii_lowercase(), Secret::new(v)))
                                .collect(),
                        )
                    }
                    None => self.error_at(
                        file.referenced,
                        "`headers_file` is not a list of key=value pairs",
                        Some("one `api-key=…` a line, or comma-separated, as in OTEL_EXPORTER_OTLP_HEADERS".into()),
                    ),
                }
            }
        }
        if raw.timeout.is_some() {
            out.timeout = Some(self.duration(raw.timeout.as_ref(), Duration::from_secs(10)));
        }
        out.ca_file = self.path(raw.ca_file.as_ref());
        if let Some(signals) = &raw.signals {
            let mut set = Signals {
                logs: false,
                metrics: false,
                traces: false,
            };
            for name in &signals.value {
                let signal = self.choice(Some(name), "", "signal", Signals::NAMES, |s| {
                    Signals::NAMES.iter().copied().find(|n| *n == s.trim())
                });
                match signal {
                    "logs" => set.logs = true,
                    "metrics" => set.metrics = true,
                    "traces" => set.traces = true,
                    _ => {}
                }
            }
            out.signals = Some(set);
        }
        if let Some(queue) = &raw.queue {
            const GIB: usize = 1 << 30;
            if queue.memory.is_some() {
                out.queue_memory =
                    Some(self.size(queue.memory.as_ref(), 16 << 20, 0, 4 * GIB) as u64);
            }
            if queue.disk.is_some() {
                out.queue_disk =
                    Some(self.size(queue.disk.as_ref(), GIB, 1 << 20, 1024 * GIB) as u64);
            }
        }
        if let Some(batch) = &raw.batch {
            if let Some(value) = &batch.max_records {
                match value.value.0.trim().parse::<usize>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => out.batch_max_records = Some(n),
                    _ => self.error_at(
                        value.referenced,
                        format!("invalid `max_records` `{}`", value.value.0),
                        Some("a whole number from 1 to 1000000".into()),
                    ),
                }
            }
            if batch.timeout.is_some() {
                out.batch_timeout =
                    Some(self.duration(batch.timeout.as_ref(), Duration::from_millis(200)));
            }
        }
        if raw.metrics_interval.is_some() {
            out.metrics_interval =
                Some(self.duration(raw.metrics_interval.as_ref(), Duration::from_secs(60)));
        }
    }

    fn probe(&mut self, raw: RawProbe, at: Location) -> Option<ProbeConfig> {
        let Some(name) = raw.name.as_ref().and_then(|v| self.string(v)) else {
            self.error_at(
                at,
                "probe has no `name`",
                Some("add `name: health`; it becomes the label probe=\"health\"".into()),
            );
            return None;
        };
        let url = match raw.url.as_ref() {
            Some(v) => {
                let text = self.string(v).unwrap_or_default();
                let ok = (text.starts_with("http://") || text.starts_with("https://"))
                    && text
                        .parse::<axum::http::Uri>()
                        .is_ok_and(|u| u.host().is_some());
                if !ok {
                    self.error_at(
                        v.referenced,
                        format!("invalid probe url `{text}`"),
                        Some(
                            "an http:// or https:// URL, e.g. http://127.0.0.1:8000/health".into(),
                        ),
                    );
                }
                text
            }
            None => {
                self.error_at(at, format!("probe `{name}` has no `url`"), None);
                return None;
            }
        };
        let interval = self.duration(raw.interval.as_ref(), Duration::from_secs(10));
        let timeout = self.duration(raw.timeout.as_ref(), Duration::from_secs(2));
        let mut expect_status = Vec::new();
        let mut expect_body = Vec::new();
        let mut max_latency = None;
        if let Some(expect) = raw.expect {
            if let Some(status) = expect.status {
                for code in &status.value {
                    match code.value.0.trim().parse::<u16>() {
                        Ok(c) if (100..600).contains(&c) => expect_status.push(c),
                        _ => self.error_at(
                            code.referenced,
                            format!("invalid status code `{}`", code.value.0),
                            Some("an HTTP status between 100 and 599".into()),
                        ),
                    }
                }
            }
            if let Some(body) = expect.body_json {
                match &body.value {
                    serde_json::Value::Object(map) => {
                        for (path, value) in map {
                            match crate::jsonpath::JsonPath::parse(path) {
                                Ok(p) => expect_body.push((p, value.clone())),
                                Err(e) => self.error_at(
                                    body.referenced,
                                    format!("invalid JSONPath `{path}` in `body_json`: {e}"),
                                    None,
                                ),
                            }
                        }
                    }
                    _ => self.error_at(
                        body.referenced,
                        "`body_json` maps JSONPaths to expected values",
                        Some("e.g. body_json: { \"$.status\": \"ok\" }".into()),
                    ),
                }
            }
            if expect.max_latency.is_some() {
                max_latency = Some(self.duration(expect.max_latency.as_ref(), timeout));
            }
        }
        let version_from = raw.version_from.as_ref().and_then(|v| {
            let text = self.string(v)?;
            match crate::jsonpath::JsonPath::parse(&text) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.error_at(
                        v.referenced,
                        format!("invalid JSONPath `{text}`: {e}"),
                        None,
                    );
                    None
                }
            }
        });
        let ca_file = raw
            .ca_file
            .as_ref()
            .and_then(|v| self.string(v))
            .map(|f| self.relative_to_config(&f));
        Some(ProbeConfig {
            name,
            url,
            interval,
            timeout,
            expect_status,
            expect_body,
            max_latency,
            version_from,
            ca_file,
        })
    }

    fn deployments(&mut self, raw: RawDeployments) -> DeploymentsConfig {
        let defaults = DeploymentsConfig::default();
        let detect = match raw.detect {
            Some(list) => list
                .value
                .iter()
                .map(|v| {
                    self.pick(
                        Some(v),
                        DetectSource::Api,
                        "deployment source",
                        &[
                            ("api", DetectSource::Api),
                            ("probe_version", DetectSource::ProbeVersion),
                            ("log_field", DetectSource::LogField),
                        ],
                    )
                })
                .collect(),
            None => defaults.detect,
        };
        let confidence = match raw.confidence.as_ref() {
            Some(v) => match v.value.0.trim().parse::<f64>() {
                Ok(c) if c > 0.5 && c < 1.0 => c,
                _ => {
                    self.error_at(
                        v.referenced,
                        format!("invalid `confidence` `{}`", v.value.0),
                        Some("a probability between 0.5 and 1, e.g. 0.99".into()),
                    );
                    defaults.confidence
                }
            },
            None => defaults.confidence,
        };
        let probe_boost = match raw.probe_boost.as_ref() {
            Some(v) if matches!(v.value.0.trim(), "0" | "0s" | "off" | "false") => None,
            Some(v) => Some(self.duration(Some(v), Duration::from_secs(2))),
            None => defaults.probe_boost,
        };
        let probe_grace = match raw.probe_grace.as_ref() {
            Some(v) if matches!(v.value.0.trim(), "0" | "0s") => Duration::ZERO,
            other => self.duration(other, defaults.probe_grace),
        };
        DeploymentsConfig {
            detect,
            version_field: raw
                .version_field
                .as_ref()
                .and_then(|v| self.string(v))
                .unwrap_or(defaults.version_field),
            verify_window: self.duration(raw.verify_window.as_ref(), defaults.verify_window),
            baseline_window: self.duration(raw.baseline_window.as_ref(), defaults.baseline_window),
            probe_boost,
            probe_grace,
            confidence,
            baseline_from: raw
                .baseline_from
                .unwrap_or_default()
                .iter()
                .filter_map(|v| self.string(v))
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            notify_on_pass: self.boolean(raw.notify_on_pass.as_ref(), false),
        }
    }

    fn rules(&mut self, raw: RawRules) -> RulesConfig {
        let defaults = RulesConfig::default();
        let files = match raw.files {
            Some(files) => {
                let names: Vec<String> =
                    files.value.iter().filter_map(|f| self.string(f)).collect();
                names
                    .iter()
                    .map(|f| self.relative_to_config(f).to_string_lossy().into_owned())
                    .collect()
            }
            None => Vec::new(),
        };
        let mut evaluation_interval = self.duration(
            raw.evaluation_interval.as_ref(),
            defaults.evaluation_interval,
        );
        if evaluation_interval < crate::rules::file::MIN_INTERVAL
            && let Some(v) = raw.evaluation_interval.as_ref()
        {
            self.error_at(
                v.referenced,
                format!(
                    "`evaluation_interval` must be at least {:?}",
                    crate::rules::file::MIN_INTERVAL
                ),
                Some("rule groups are evaluated this often; 15s is Prometheus' habit".into()),
            );
            evaluation_interval = defaults.evaluation_interval;
        }
        let evaluation_delay = match raw.evaluation_delay.as_ref() {
            Some(v) if matches!(v.value.0.trim(), "0" | "0s" | "0ms") => Duration::ZERO,
            other => self.duration(other, defaults.evaluation_delay),
        };
        let max_series = match raw.max_series.as_ref() {
            Some(v) => match self.string(v).map(|s| s.trim().parse::<usize>()) {
                Some(Ok(n)) if n > 0 => n,
                Some(_) => {
                    self.error_at(
                        v.referenced,
                        format!("invalid `max_series` `{}`", v.value.0),
                        Some("a whole number of series per log query, e.g. 10000".into()),
                    );
                    defaults.max_series
                }
                None => defaults.max_series,
            },
            None => defaults.max_series,
        };
        RulesConfig {
            files,
            builtin_pack: false,
            evaluation_interval,
            evaluation_delay,
            max_series,
        }
    }

    fn alerting(&mut self, raw: RawAlerting, at: Location, default_url: String) -> AlertingConfig {
        let defaults = AlertingConfig::defaults(default_url);
        let external_url = raw
            .external_url
            .as_ref()
            .and_then(|v| self.string(v))
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or(defaults.external_url);
        let resend_delay = self.duration(raw.resend_delay.as_ref(), defaults.resend_delay);
        let alertmanagers = raw
            .alertmanagers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| self.alertmanager(a.value, a.referenced))
            .collect();
        let mut receivers: Vec<Receiver> = Vec::new();
        for r in raw.receivers.unwrap_or_default() {
            let at = r.referenced;
            if let Some(receiver) = self.receiver(r.value, at) {
                if receiver.name == LOG_RECEIVER
                    || receivers.iter().any(|x| x.name == receiver.name)
                {
                    self.error_at(
                        at,
                        format!("receiver name `{}` is used twice", receiver.name),
                        (receiver.name == LOG_RECEIVER).then(|| {
                            format!("`{LOG_RECEIVER}` is built in: alerts to the agent's log")
                        }),
                    );
                }
                receivers.push(receiver);
            }
        }
        let route = match raw.route {
            Some(route) => {
                let parent = Route::default_root();
                let root = self.route(route.value, route.referenced, &parent, &receivers, true);
                root.unwrap_or(parent)
            }
            None => {
                if !receivers.is_empty() {
                    self.error_at(
                        at,
                        "`alerting.receivers` are set but there is no `alerting.route`",
                        Some("add `route: { receiver: <name> }` to send alerts to them".into()),
                    );
                }
                defaults.route
            }
        };
        let inhibit_rules = raw
            .inhibit_rules
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| self.inhibit_rule(r.value, r.referenced))
            .collect();
        AlertingConfig {
            alertmanagers,
            resend_delay,
            route,
            receivers,
            inhibit_rules,
            external_url,
        }
    }

    fn alertmanager(&mut self, raw: RawAlertmanager, at: Location) -> Option<AlertmanagerConfig> {
        let urls: Vec<String> = match &raw.urls {
            Some(urls) if !urls.value.is_empty() => urls
                .value
                .iter()
                .filter_map(|u| self.http_url(u, "Alertmanager URL", "http://127.0.0.1:9093"))
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            _ => {
                self.error_at(
                    at,
                    "an `alertmanagers` entry needs `urls`",
                    Some("e.g. `- urls: [http://alertmanager:9093]`".into()),
                );
                return None;
            }
        };
        Some(AlertmanagerConfig {
            urls,
            timeout: self.duration(raw.timeout.as_ref(), Duration::from_secs(10)),
            ca_file: self.path(raw.ca_file.as_ref()),
            bearer_token: self.secret(
                raw.bearer_token.as_ref(),
                raw.bearer_token_file.as_ref(),
                "bearer_token",
            ),
        })
    }

    /// An `http://` or `https://` URL with a host; `None` (and an error) otherwise.
    fn http_url(&mut self, value: &S, what: &str, example: &str) -> Option<String> {
        let text = self.string(value)?;
        let ok = (text.starts_with("http://") || text.starts_with("https://"))
            && text
                .parse::<axum::http::Uri>()
                .is_ok_and(|u| u.host().is_some());
        if ok {
            Some(text)
        } else {
            // The URL may carry a token (a Slack webhook): never repeat it.
            self.error_at(
                value.referenced,
                format!("invalid {what}"),
                Some(format!("an http:// or https:// URL, e.g. {example}")),
            );
            None
        }
    }

    fn path(&mut self, value: Option<&S>) -> Option<PathBuf> {
        value
            .and_then(|v| self.string(v))
            .map(|f| self.relative_to_config(&f))
    }

    fn matchers(&mut self, list: Option<&Vec<S>>) -> Vec<Matcher> {
        let mut out = Vec::new();
        for m in list.map(|l| l.as_slice()).unwrap_or_default() {
            let Some(text) = self.string(m) else { continue };
            match Matcher::parse(&text) {
                Ok(matcher) => out.push(matcher),
                Err(e) => {
                    // Point into the scalar: its text starts after an opening quote when
                    // the YAML quotes it, which the column of the value includes.
                    let at = m.referenced;
                    self.error_at(
                        at,
                        format!("invalid matcher `{text}`: {}", e.message),
                        Some("write it like Alertmanager: severity=\"page\", path=~\"/api/.*\", env!=\"dev\"".into()),
                    );
                }
            }
        }
        out
    }

    fn route(
        &mut self,
        raw: RawRoute,
        at: Location,
        parent: &Route,
        receivers: &[Receiver],
        root: bool,
    ) -> Option<Route> {
        let receiver = match raw
            .receiver
            .as_ref()
            .and_then(|v| self.string(v).map(|s| (s, v)))
        {
            Some((name, value)) => {
                if name != LOG_RECEIVER && !receivers.iter().any(|r| r.name == name) {
                    let mut names: Vec<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
                    names.push(LOG_RECEIVER);
                    let hint = did_you_mean(&name, &names)
                        .map(|m| format!("did you mean `{m}`?"))
                        .unwrap_or_else(|| format!("receivers: {}", names.join(", ")));
                    self.error_at(
                        value.referenced,
                        format!("unknown receiver `{name}`"),
                        Some(hint),
                    );
                }
                name
            }
            None if root => {
                self.error_at(
                    at,
                    "the root `route` needs a `receiver`",
                    Some("every alert that no child route takes goes to it".into()),
                );
                parent.receiver.clone()
            }
            None => parent.receiver.clone(),
        };
        let matchers = self.matchers(raw.matchers.as_ref());
        if root && !matchers.is_empty() {
            self.error_at(
                at,
                "the root `route` cannot have `matchers`",
                Some("it takes every alert; put matchers on its `routes`".into()),
            );
        }
        let group_by = match &raw.group_by {
            Some(list) => {
                let names: Vec<String> = list.value.iter().filter_map(|v| self.string(v)).collect();
                if names.iter().any(|n| n == "...") {
                    if names.len() > 1 {
                        self.error_at(
                            list.referenced,
                            "`group_by: ['...']` groups by every label and takes no other name",
                            None,
                        );
                    }
                    GroupBy::All
                } else {
                    for (name, value) in names.iter().zip(&list.value) {
                        let valid = !name.is_empty()
                            && name.chars().enumerate().all(|(i, c)| {
                                c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                            });
                        if !valid {
                            self.error_at(
                                value.referenced,
                                format!("invalid label name `{name}` in `group_by`"),
                                Some("label names are [a-zA-Z_][a-zA-Z0-9_]*, or '...' for every label".into()),
                            );
                        }
                    }
                    GroupBy::Labels(names)
                }
            }
            None => parent.group_by.clone(),
        };
        let zero_ok =
            |v: Option<&S>| v.is_some_and(|v| matches!(v.value.0.trim(), "0" | "0s" | "0ms"));
        let group_wait = if zero_ok(raw.group_wait.as_ref()) {
            Duration::ZERO
        } else {
            self.duration(raw.group_wait.as_ref(), parent.group_wait)
        };
        let group_interval = self.duration(raw.group_interval.as_ref(), parent.group_interval);
        let repeat_interval = self.duration(raw.repeat_interval.as_ref(), parent.repeat_interval);
        let mut route = Route {
            receiver,
            matchers,
            continue_matching: self.boolean(raw.continue_matching.as_ref(), false),
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            routes: Vec::new(),
        };
        if root && route.continue_matching {
            self.error_at(at, "the root `route` cannot `continue`", None);
        }
        for child in raw.routes.unwrap_or_default() {
            if let Some(child) = self.route(child.value, child.referenced, &route, receivers, false)
            {
                route.routes.push(child);
            }
        }
        Some(route)
    }

    fn receiver(&mut self, raw: RawReceiver, at: Location) -> Option<Receiver> {
        let Some(name) = raw.name.as_ref().and_then(|v| self.string(v)) else {
            self.error_at(
                at,
                "receiver has no `name`",
                Some("routes name their receiver: `receiver: oncall`".into()),
            );
            return None;
        };
        let email = raw.email.and_then(|e| self.email(e.value, e.referenced));
        let webhook = raw
            .webhook
            .and_then(|w| self.webhook(w.value, w.referenced));
        Some(Receiver {
            name,
            email,
            webhook,
        })
    }

    fn email(&mut self, raw: RawEmail, at: Location) -> Option<EmailConfig> {
        let to: Vec<String> = match &raw.to {
            Some(list) if !list.value.is_empty() => {
                list.value.iter().filter_map(|v| self.address(v)).collect()
            }
            _ => {
                self.error_at(
                    at,
                    "`email` needs `to`",
                    Some("e.g. `to: [ops@example.com]`".into()),
                );
                return None;
            }
        };
        let Some(from) = raw.from.as_ref().and_then(|v| self.address(v)) else {
            if raw.from.is_none() {
                self.error_at(
                    at,
                    "`email` needs `from`",
                    Some("e.g. `from: sidewatch@example.com`".into()),
                );
            }
            return None;
        };
        let smarthost = match raw.smarthost.as_ref() {
            Some(v) => {
                let text = self.string(v)?;
                let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !valid {
                    self.error_at(
                        v.referenced,
                        format!("invalid `smarthost` `{text}`"),
                        Some("HOST:PORT, e.g. smtp.example.com:587".into()),
                    );
                }
                text
            }
            None => {
                self.error_at(
                    at,
                    "`email` needs `smarthost`",
                    Some("HOST:PORT, e.g. smtp.example.com:587".into()),
                );
                return None;
            }
        };
        let tls = self.pick(
            raw.tls.as_ref(),
            SmtpTls::Starttls,
            "`tls` mode",
            &[
                ("starttls", SmtpTls::Starttls),
                ("tls", SmtpTls::Tls),
                ("none", SmtpTls::None),
            ],
        );
        let password = self.secret(
            raw.password.as_ref(),
            raw.password_file.as_ref(),
            "password",
        );
        let username = raw
            .username
            .as_ref()
            .and_then(|v| self.string(v))
            .filter(|u| !u.is_empty());
        if password.is_some() && username.is_none() {
            self.error_at(at, "`email` has a `password` but no `username`", None);
        }
        let config = EmailConfig {
            to,
            from,
            smarthost,
            tls,
            username,
            password,
            ca_file: self.path(raw.ca_file.as_ref()),
            hello: raw.hello.as_ref().and_then(|v| self.string(v)),
            subject: raw.subject.as_ref().and_then(|v| self.string(v)),
            text: raw.text.as_ref().and_then(|v| self.string(v)),
            html: raw.html.as_ref().and_then(|v| self.string(v)),
            send_resolved: self.boolean(raw.send_resolved.as_ref(), true),
            timeout: self.duration(raw.timeout.as_ref(), Duration::from_secs(30)),
        };
        // A template that does not parse is an error now, not when an alert fires.
        if let Err(e) = crate::notify::payload::EmailTemplates::new(&config) {
            let value = match e.template {
                "subject" => raw.subject.as_ref(),
                "text" => raw.text.as_ref(),
                _ => raw.html.as_ref(),
            };
            self.error_at(
                value.map_or(at, |v| v.referenced),
                e.to_string(),
                Some("templates use Jinja syntax over Alertmanager's names: {{ Status }}, {% for a in Alerts %}{{ a.Labels.alertname }}{% endfor %}".into()),
            );
        }
        Some(config)
    }

    /// A mail address, `ops@example.com` or `Ops <ops@example.com>`.
    fn address(&mut self, value: &S) -> Option<String> {
        let text = self.string(value)?;
        match text.parse::<lettre::message::Mailbox>() {
            Ok(_) => Some(text),
            Err(e) => {
                self.error_at(
                    value.referenced,
                    format!("invalid mail address `{text}`: {e}"),
                    Some("e.g. ops@example.com or \"Ops <ops@example.com>\"".into()),
                );
                None
            }
        }
    }

    fn webhook(&mut self, raw: RawWebhook, at: Location) -> Option<WebhookConfig> {
        let url = match (&raw.url, &raw.url_file) {
            // Keep going on a bad URL, so the rest of the webhook is checked too.
            (Some(v), None) => self
                .http_url(v, "webhook `url`", "https://hooks.example.com/x")
                .unwrap_or_default(),
            (None, Some(_)) | (Some(_), Some(_)) => {
                let secret = self.secret(raw.url.as_ref(), raw.url_file.as_ref(), "url")?;
                let text = secret.expose().trim().to_string();
                let ok = (text.starts_with("http://") || text.starts_with("https://"))
                    && text
                        .parse::<axum::http::Uri>()
                        .is_ok_and(|u| u.host().is_some());
                if !ok {
                    self.error_at(
                        at,
                        "the file of `url_file` does not hold an http:// or https:// URL",
                        None,
                    );
                    return None;
                }
                text
            }
            (None, None) => {
                self.error_at(
                    at,
                    "`webhook` needs a `url`",
                    Some("or `url_file` when the URL is a secret (Slack)".into()),
                );
                return None;
            }
        };
        let format = self.pick(
            raw.format.as_ref(),
            WebhookFormat::Alertmanager,
            "webhook format",
            &[
                ("alertmanager", WebhookFormat::Alertmanager),
                ("slack", WebhookFormat::Slack),
            ],
        );
        let max_alerts = match raw.max_alerts.as_ref() {
            Some(v) => match v.value.0.trim().parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    self.error_at(
                        v.referenced,
                        format!("invalid `max_alerts` `{}`", v.value.0),
                        Some("a whole number; 0 sends every alert".into()),
                    );
                    0
                }
            },
            None => 0,
        };
        Some(WebhookConfig {
            url,
            format,
            hmac_secret: self.secret(
                raw.hmac_secret.as_ref(),
                raw.hmac_secret_file.as_ref(),
                "hmac_secret",
            ),
            ca_file: self.path(raw.ca_file.as_ref()),
            timeout: self.duration(raw.timeout.as_ref(), Duration::from_secs(10)),
            max_alerts,
            send_resolved: self.boolean(raw.send_resolved.as_ref(), true),
        })
    }

    fn inhibit_rule(&mut self, raw: RawInhibitRule, at: Location) -> Option<InhibitRule> {
        let source_matchers = self.matchers(raw.source_matchers.as_ref());
        let target_matchers = self.matchers(raw.target_matchers.as_ref());
        if raw.source_matchers.as_ref().is_none_or(|m| m.is_empty())
            || raw.target_matchers.as_ref().is_none_or(|m| m.is_empty())
        {
            self.error_at(
                at,
                "an inhibit rule needs `source_matchers` and `target_matchers`",
                Some("e.g. source_matchers: ['severity=\"page\"'], target_matchers: ['severity=\"ticket\"'], equal: [service]".into()),
            );
            return None;
        }
        Some(InhibitRule {
            source_matchers,
            target_matchers,
            equal: raw
                .equal
                .unwrap_or_default()
                .iter()
                .filter_map(|v| self.string(v))
                .collect(),
        })
    }

    fn log_source(&mut self, raw: RawLogSource, at: Location) -> Option<LogSourceConfig> {
        let name = match raw.name.as_ref() {
            Some(v) => self.string(v)?,
            None => {
                self.error_at(
                    at,
                    "log source has no `name`",
                    Some("add `name: app`; it becomes the stream label source=\"app\"".into()),
                );
                return None;
            }
        };
        let mut config = LogSourceConfig::defaults(&name, Vec::new());
        match raw.paths {
            Some(paths) if !paths.value.is_empty() => {
                for path in &paths.value {
                    let Some(text) = self.string(path) else {
                        continue;
                    };
                    if let Err(e) = globset::Glob::new(&text) {
                        self.error_at(
                            path.referenced,
                            format!("invalid glob `{text}`: {}", e.kind()),
                            None,
                        );
                    } else {
                        config.paths.push(text);
                    }
                }
            }
            Some(paths) => self.error_at(paths.referenced, "`paths` is empty", None),
            None => self.error_at(
                at,
                format!("log source `{name}` has no `paths`"),
                Some("add `paths: [\"/var/log/app/*.log\"]`".into()),
            ),
        }
        config.format = self.choice(
            raw.format.as_ref(),
            Format::Structlog,
            "format",
            Format::NAMES,
            Format::from_name,
        );
        config.start_at = self.choice(
            raw.start_at.as_ref(),
            StartAt::End,
            "start_at",
            &["beginning", "end"],
            |s| match s {
                "beginning" => Some(StartAt::Beginning),
                "end" => Some(StartAt::End),
                _ => None,
            },
        );
        config.fields = self.field_names(raw.fields, config.format.default_field_names());
        config.max_line_bytes = self.size(
            raw.max_line_bytes.as_ref(),
            config.max_line_bytes,
            256,
            64 * 1024 * 1024,
        );
        config.rotate_wait = self.duration(raw.rotate_wait.as_ref(), config.rotate_wait);
        config.poll_interval = self.duration(raw.poll_interval.as_ref(), config.poll_interval);
        config.notify = self.boolean(raw.notify.as_ref(), config.notify);
        if let Some(value) = raw.drop.as_ref()
            && let Some(text) = self.string(value)
        {
            match crate::rules::parser::parse_pipeline(&text) {
                Ok(stages) => config.drop = Some(DropFilter { text, stages }),
                Err(e) => self.error_at(
                    value.referenced,
                    format!("invalid drop filter `{text}` at character {}: {}", e.offset + 1, e.message),
                    Some(e.hint.clone().unwrap_or_else(|| {
                        "a pipeline of line and field filters, like '| level=\"debug\"' or '|= \"GET /health\"'".into()
                    })),
                ),
            }
        }
        for entry in raw.redact.unwrap_or_default() {
            if let Some(rule) = self.redact_rule(entry.value, entry.referenced) {
                config.redact.push(rule);
            }
        }
        Some(config)
    }

    /// `{ field: password }` or `{ pattern: '(?i)bearer \S+', replace: 'Bearer ***' }`.
    fn redact_rule(&mut self, raw: RawRedact, at: Location) -> Option<RedactRule> {
        let replace = match raw.replace.as_ref() {
            Some(v) => self.string(v)?,
            None => REDACTED.to_string(),
        };
        match (raw.field.as_ref(), raw.pattern.as_ref()) {
            (Some(field), None) => {
                let name = self.string(field)?;
                if name.is_empty() {
                    self.error_at(field.referenced, "`field` is empty", None);
                    return None;
                }
                Some(RedactRule {
                    target: RedactTarget::Field(name),
                    replace,
                })
            }
            (None, Some(pattern)) => {
                let text = self.string(pattern)?;
                match regex::Regex::new(&text) {
                    Ok(re) if !re.is_match("") => Some(RedactRule {
                        target: RedactTarget::Pattern(re),
                        replace,
                    }),
                    Ok(_) => {
                        self.error_at(
                            pattern.referenced,
                            format!("redact pattern `{text}` matches the empty string"),
                            Some("it would insert the replacement between every character; make it match at least one character".into()),
                        );
                        None
                    }
                    Err(e) => {
                        self.error_at(
                            pattern.referenced,
                            format!(
                                "invalid redact pattern `{text}`: {}",
                                e.to_string()
                                    .lines()
                                    .last()
                                    .unwrap_or_default()
                                    .trim()
                                    .trim_start_matches("error: ")
                            ),
                            Some(
                                "a Rust regex (RE2 syntax), like '(?i)bearer [a-z0-9._-]+'".into(),
                            ),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(pattern)) => {
                self.error_at(
                    pattern.referenced,
                    "a redact entry has either `field` or `pattern`, not both",
                    Some("write two entries".into()),
                );
                None
            }
            (None, None) => {
                self.error_at(
                    at,
                    "a redact entry needs `field` or `pattern`",
                    Some("{ field: password } replaces that field's value; { pattern: '…', replace: '…' } rewrites matching text".into()),
                );
                None
            }
        }
    }

    fn field_names(&mut self, raw: Option<RawFieldNames>, defaults: FieldNames) -> FieldNames {
        let Some(raw) = raw else { return defaults };
        let mut pick = |v: &Option<S>, default: String| match v {
            Some(v) => self.string(v).unwrap_or(default),
            None => default,
        };
        FieldNames {
            message: pick(&raw.message, defaults.message),
            level: pick(&raw.level, defaults.level),
            time: pick(&raw.time, defaults.time),
            trace_id: pick(&raw.trace_id, defaults.trace_id),
            span_id: pick(&raw.span_id, defaults.span_id),
        }
    }
}

/// The YAML library speaks in parser events; say what the user must write instead.
/// A YAML (or type) error of serde-saphyr as a `file:line:col: message` error: the
/// library's own position suffix is dropped, ours leads the line instead.
pub(crate) fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let location = e.location();
    let message = e.without_snippet().to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .trim()
        .to_string();
    ConfigError {
        file: file.to_path_buf(),
        line: location.map(|l| l.line()).unwrap_or(1).max(1),
        column: location.map(|l| l.column()).unwrap_or(1).max(1),
        message: humanize_yaml_message(&lowercase_first(&message)),
        hint: None,
    }
}

fn humanize_yaml_message(message: &str) -> String {
    match message {
        "expected sequence start" => "expected a list here (`- item` lines or `[a, b]`)".into(),
        "expected mapping start" => {
            "expected keys here (`key: value` lines or `{ key: value }`)".into()
        }
        other => other.to_string(),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Moves a column in the env-expanded text back to the column as written.
#[derive(Debug, Default)]
struct ColumnMap {
    /// `(line, column where an expansion ends in the expanded text, growth in bytes)`.
    shifts: Vec<(u64, u64, i64)>,
}

impl ColumnMap {
    fn original(&self, line: u64, column: u64) -> u64 {
        let shift: i64 = self
            .shifts
            .iter()
            .filter(|(l, end, _)| *l == line && *end <= column)
            .map(|(_, _, growth)| growth)
            .sum();
        (column as i64 - shift).max(1) as u64
    }
}

type ExpansionError = (u64, u64, String, String);

/// Expands `${VAR}` references line by line, leaving comments alone, and records how
/// columns moved. Errors carry the position of the reference as written.
fn expand_text(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (String, ColumnMap, Vec<ExpansionError>) {
    let mut out = String::with_capacity(text.len());
    let mut columns = ColumnMap::default();
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index as u64 + 1;
        // A `#` at the start or after whitespace begins a comment (outside quotes, which
        // is the common case; a quoted ` #` is expanded as if it were code, harmlessly).
        let comment_at = line
            .char_indices()
            .find(|(i, c)| *c == '#' && (*i == 0 || line[..*i].ends_with([' ', '\t'])))
            .map(|(i, _)| i)
            .unwrap_or(line.len());
        let (code, comment) = line.split_at(comment_at);
        let mut rest = code;
        let mut consumed = 0usize;
        let mut growth_so_far: i64 = 0;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let reference = &rest[at..];
            let column = (consumed + at) as u64 + 1;
            let end = if reference.starts_with("$$") {
                2
            } else if reference.starts_with("${") {
                reference
                    .find('}')
                    .map(|e| e + 1)
                    .unwrap_or(reference.len())
            } else {
                1
            };
            match expand_env(&reference[..end], env) {
                Ok(value) => {
                    let growth = value.len() as i64 - end as i64;
                    growth_so_far += growth;
                    // Where the expansion ends in the expanded line (growth includes it).
                    let expanded_end = (column as i64 + end as i64 + growth_so_far) as u64;
                    if growth != 0 {
                        columns.shifts.push((line_no, expanded_end, growth));
                    }
                    out.push_str(&value);
                }
                Err((message, hint)) => {
                    growth_so_far -= end as i64;
                    columns.shifts.push((
                        line_no,
                        (column as i64 + growth_so_far + end as i64) as u64,
                        -(end as i64),
                    ));
                    errors.push((line_no, column, message, hint));
                }
            }
            consumed += at + end;
            rest = &rest[at + end..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    (out, columns, errors)
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub(crate) fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, String)> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix("${") {
            let Some(end) = inner.find('}') else {
                return Err((
                    "unterminated `${` in value".into(),
                    "write ${VAR} or ${VAR:-default}; `$$` is a literal `$`".into(),
                ));
            };
            let spec = &inner[..end];
            let (name, default) = match spec.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (spec, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((
                    format!("invalid variable name `{name}`"),
                    "names are letters, digits and `_`".into(),
                ));
            }
            match (env(name), default) {
                (Some(value), None) => out.push_str(&value),
                (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
                (_, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err((
                        format!("environment variable `{name}` is not set"),
                        format!("set it, or give a default: ${{{name}:-value}}"),
                    ));
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `64MiB`, `10KiB`, `1MB`, `512` (bytes).
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// The known name closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> String {
        let env = |name: &str| match name {
            "TOKEN" => Some("s3cret".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        match load_str(yaml, Path::new("sidewatch.yaml"), &env) {
            Ok(config) => format!(
                "ok: listen={} logs={:?} warnings={:?}",
                config.api.listen,
                config
                    .logs
                    .iter()
                    .map(|l| format!(
                        "{}:{:?}:{:?}:{}",
                        l.name, l.paths, l.format, l.max_line_bytes
                    ))
                    .collect::<Vec<_>>(),
                config.warnings
            ),
            Err(errors) => errors.to_string(),
        }
    }

    #[test]
    fn a_good_config_loads() {
        insta::assert_snapshot!(check("api: { listen: 127.0.0.1:9999, token: ${TOKEN} }\nlogs:\n  - name: app\n    paths: [/var/log/app/*.log]\n    format: json\n    max_line_bytes: 64KiB\n"), @r#"ok: listen=127.0.0.1:9999 logs=["app:[\"/var/log/app/*.log\"]:Json:65536"] warnings=[]"#);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_position() {
        let yaml = "\
api:
  listen: nowhere
  tokn: x
logs:
  - name: app
    paths: [\"/var/log/[\"]
    format: structlg
    max_line_bytes: lots
    rotate_wait: soon
  - paths: [a.log]
grace_period: ${UNSET}
";
        insta::assert_snapshot!(check(yaml));
    }

    #[test]
    fn positions_after_an_expansion_are_those_of_the_file() {
        let out = check("api: { token: ${TOKEN}, listen: nowhere }\n");
        assert!(
            out.starts_with("sidewatch.yaml:1:33: invalid listen address"),
            "{out}"
        );
        let out = check("api: { token: ${NOPE} }\n# ${ALSO_UNSET} in a comment is fine\n");
        assert!(
            out.starts_with("sidewatch.yaml:1:15: environment variable `NOPE` is not set"),
            "{out}"
        );
        assert_eq!(
            out.lines().filter(|l| !l.contains("hint")).count(),
            1,
            "{out}"
        );
    }

    #[test]
    fn secrets_come_from_files_without_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-a-file\n").unwrap();
        let config_path = dir.path().join("sidewatch.yaml");
        let no_env = |_: &str| None;
        let config = load_str("api: { token_file: token }\n", &config_path, &no_env).unwrap();
        assert_eq!(config.api.token.unwrap().expose(), "from-a-file");
        let errors = load_str(
            "api: { token: x, token_file: token }\n",
            &config_path,
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains("`token` and `token_file` are both set"),
            "{errors}"
        );
        let errors = load_str("api: { token_file: missing }\n", &config_path, &no_env)
            .unwrap_err()
            .to_string();
        assert!(errors.contains("cannot read `token_file`"), "{errors}");
        assert!(format!("{:?}", Secret::new("hidden".into())) == "Secret(***)");
    }

    #[test]
    fn env_expansion() {
        let env = |name: &str| (name == "A").then(|| "x".to_string());
        assert_eq!(
            expand_env("${A}-${B:-d}-$$-${A:-z}", &env).unwrap(),
            "x-d-$-x"
        );
        assert!(expand_env("${B}", &env).is_err());
        assert!(expand_env("${A", &env).is_err());
    }

    #[test]
    fn otlp_headers_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidewatch.yaml");
        std::fs::write(dir.path().join("h"), "X-Api-Key=s3cr%3Dt\nteam=pay\n").unwrap();
        std::fs::write(dir.path().join("bad"), "no-equals-sign-s3cr3t\n").unwrap();
        let no_env = |_: &str| None;
        let yaml = "export: { otlp: { endpoint: http://c:4318, headers_file: h } }\n";
        let otlp = load_str(yaml, &path, &no_env).unwrap().export.otlp.unwrap();
        let headers: Vec<(&str, &str)> = otlp
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(headers, [("x-api-key", "s3cr=t"), ("team", "pay")]);
        for (yaml, expected) in [
            (
                "export: { otlp: { endpoint: http://c, headers_file: bad } }\n",
                "`headers_file` is not a list of key=value pairs",
            ),
            (
                "export: { otlp: { endpoint: http://c, headers_file: nope } }\n",
                "cannot read `headers_file`",
            ),
            (
                "export: { otlp: { endpoint: http://c, headers: { a: b }, headers_file: h } }\n",
                "`headers` and `headers_file` are both set",
            ),
        ] {
            let errors = load_str(yaml, &path, &no_env).unwrap_err().to_string();
            assert!(errors.contains(expected), "{errors}");
            assert!(!errors.contains("s3cr"), "the file's text leaked: {errors}");
        }
    }

    #[test]
    fn export_otlp_section() {
        let env = |name: &str| match name {
            "KEY" => Some("hunter2".to_string()),
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT" => Some("1500".to_string()),
            "OTEL_SERVICE_NAME" => Some("from-env".to_string()),
            _ => None,
        };
        let path = Path::new("sidewatch.yaml");
        let yaml = "\
service: { name: checkout-api, environment: staging }
export:
  otlp:
    endpoint: http://collector:4318/
    headers: { X-Api-Key: ${KEY} }
    signals: [logs]
    queue: { memory: 1MiB, disk: 64MiB }
    batch: { max_records: 500, timeout: 1s }
";
        let config = load_str(yaml, path, &env).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let otlp = config.export.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(otlp.protocol, Protocol::HttpProtobuf);
        assert_eq!(otlp.compression, Compression::Gzip);
        assert_eq!(
            otlp.timeout,
            Duration::from_millis(1500),
            "from the variable"
        );
        assert_eq!(otlp.headers[0].0, "x-api-key");
        assert_eq!(otlp.headers[0].1.expose(), "hunter2");
        assert!(otlp.signals.logs && !otlp.signals.metrics);
        assert_eq!((otlp.queue_memory, otlp.queue_disk), (1 << 20, 64 << 20));
        assert_eq!(otlp.batch_max_records, 500);
        assert_eq!(otlp.batch_timeout, Duration::from_secs(1));
        assert_eq!(
            otlp.resource,
            [
                ("service.name".to_string(), "checkout-api".to_string()),
                ("deployment.environment.name".into(), "staging".into()),
            ]
        );
        // No endpoint anywhere: export is off, and no warning.
        let config = load_str("export: { otlp: { endpoint: \"\" } }\n", path, &env).unwrap();
        assert!(config.export.otlp.is_none());

        let errors = load_str(
            "export:\n  otlp:\n    endpont: http://x\n    protocol: grcp\n    queue: { disk: 1KiB }\n    headers: { \"a b\": x, ok: \"${KEY}\\n\" }\n",
            path,
            &env,
        )
        .unwrap_err()
        .to_string();
        insta::assert_snapshot!(errors, @r"
        sidewatch.yaml:3:5: unknown key `endpont` in `export.otlp`
          hint: did you mean `endpoint`?
        sidewatch.yaml:4:15: unknown OTLP protocol `grcp`
          hint: expected one of: http/protobuf, grpc
        sidewatch.yaml:5:20: size 1024 bytes is out of range (1048576..=1099511627776 bytes)
        sidewatch.yaml:6:14: invalid header name `a b` in `export.otlp.headers`
        sidewatch.yaml:6:30: the value of header `ok` holds a line break
        ");
        assert!(!errors.contains("hunter2"), "{errors}");
    }

    #[test]
    fn sizes_and_suggestions() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("64 KiB"), Some(64 << 10));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1 parsec"), None);
        assert_eq!(did_you_mean("structlg", Format::NAMES), Some("structlog"));
        assert_eq!(did_you_mean("xml", Format::NAMES), None);
    }

    #[test]
    fn otlp_receiver_section() {
        let no_env = |_: &str| None;
        let path = Path::new("sidewatch.yaml");
        let config = load_str(
            "otlp_receiver: { grpc: 127.0.0.1:4317, http: 127.0.0.1:4318 }\n",
            path,
            &no_env,
        )
        .unwrap();
        assert_eq!(
            config.otlp_receiver,
            Some(OtlpReceiverConfig {
                grpc: Some("127.0.0.1:4317".parse().unwrap()),
                http: Some("127.0.0.1:4318".parse().unwrap()),
                max_request_bytes: 4 << 20,
            })
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let config = load_str(
            "otlp_receiver: { grpc: off, max_request_bytes: 1MiB }\notlp_b: 1\n",
            path,
            &no_env,
        );
        let errors = config.unwrap_err().to_string();
        assert!(
            errors.starts_with("sidewatch.yaml:2:1: unknown key `otlp_b`"),
            "{errors}"
        );
        let config = load_str(
            "otlp_receiver: { http: 127.0.0.1:4318, grpc: off, max_request_bytes: 1MiB }\n",
            path,
            &no_env,
        )
        .unwrap();
        let receiver = config.otlp_receiver.unwrap();
        assert_eq!((receiver.grpc, receiver.max_request_bytes), (None, 1 << 20));
        let config = load_str("otlp_receiver: { grpc: \"\" }\n", path, &no_env).unwrap();
        assert!(config.otlp_receiver.is_none());
        assert!(
            config.warnings[0].contains("neither `grpc` nor `http`"),
            "{:?}",
            config.warnings
        );
        let config = load_str("otlp_receiver: { grpc: 0.0.0.0:4317 }\n", path, &no_env).unwrap();
        assert!(
            config.warnings[0].contains("beyond this host"),
            "{:?}",
            config.warnings
        );
        let yaml = "\
api: { listen: 127.0.0.1:4318 }
logs: [ { name: otlp, paths: [a.log] } ]
otlp_receiver:
  grpc: localhost:4317
  http: 127.0.0.1:4318
  max_request_bytes: lots
  tls: true
";
        insta::assert_snapshot!(load_str(yaml, path, &no_env).unwrap_err().to_string(), @r#"
        sidewatch.yaml:4:3: the log source name `otlp` is taken by `otlp_receiver` (its spans are the stream source="otlp")
          hint: rename that `logs` entry
        sidewatch.yaml:4:9: invalid listen address `localhost:4317` for `otlp_receiver.grpc`
          hint: write it as IP:PORT, e.g. 127.0.0.1:4317, or `off`
        sidewatch.yaml:5:9: `otlp_receiver.http` 127.0.0.1:4318 is also `api.listen`
          hint: give each server its own port
        sidewatch.yaml:6:22: invalid size `lots`
          hint: write it like 64KiB, 1MiB or 1048576
        sidewatch.yaml:7:3: unknown key `tls` in `otlp_receiver`
          hint: expected one of: grpc, http, max_request_bytes
        "#);
    }
}
