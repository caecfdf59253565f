//! OTLP metrics: every series of `/metrics` — the agent's counters, the probe series,
//! the rules' recorded series, alert states, deployment verdicts — exported every
//! `metrics_interval` with cumulative temporality, the way an OpenTelemetry Collector's
//! Prometheus receiver would scrape them, so the two views never disagree.
//!
//! Names follow OTel's conventions and come back to SPEC's Prometheus names through the
//! Collector's usual translation (`prometheus` / `prometheusremotewrite` exporters with
//! metric suffixes on): `.` becomes `_`, the unit is appended (`s` → `_seconds`, `By` →
//! `_bytes`), and a monotonic sum gains `_total`. So `sidewatch.log.records` (a
//! monotonic sum, unit `{record}`) arrives as `sidewatch_log_records_total`, and
//! `probe.duration` (a gauge in `s`) as `probe_duration_seconds`. Recorded series named
//! the Prometheus way (`level:metric:operations`) keep their names. `otel_name` is the mapping; README documents it.
//!
//! A failed export is retried within the interval; the next export carries the
//! cumulative values anyway, so nothing is queued on disk for metrics.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::config::OtlpConfig;
use super::sender::{OtlpClient, SendOutcome, SenderError};
use crate::telemetry::{Counter, Telemetry};

/// The kind a family's `# TYPE` line gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A sample's labels, in the order written.
pub type Labels = Vec<(String, String)>;

/// One metric family of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

/// Reads the Prometheus text the agent itself serves (`# HELP`, `# TYPE`, samples with
/// escaped label values). Samples without a `# TYPE` are gauges; lines it cannot read
/// are skipped (they would be the agent's own bug, and `/metrics` is checked by
/// promtool in the tests).
pub fn parse_exposition(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut help: std::collections::HashMap<String, String> = Default::default();
    let mut family_of = |families: &mut Vec<Family>, name: &str, kind: Option<Kind>| -> usize {
        if let Some(&i) = index.get(name) {
            if let Some(kind) = kind {
                families[i].kind = kind;
            }
            return i;
        }
        families.push(Family {
            name: name.to_string(),
            help: String::new(),
            kind: kind.unwrap_or(Kind::Gauge),
            samples: Vec::new(),
        });
        index.insert(name.to_string(), families.len() - 1);
        families.len() - 1
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = rest.split_once(' ') {
                help.insert(
                    name.to_string(),
                    text.replace("\\n", "\n").replace("\\\\", "\\"),
                );
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                let kind = match kind.trim() {
                    "counter" => Kind::Counter,
                    _ => Kind::Gauge,
                };
                family_of(&mut families, name, Some(kind));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        let i = family_of(&mut families, name, None);
        families[i].samples.push((labels, value));
    }
    for family in &mut families {
        if let Some(text) = help.remove(&family.name) {
            family.help = text;
        }
    }
    families.retain(|f| !f.samples.is_empty());
    families
}

/// `name{a="x",b="y\"z"} 1.5` (an optional timestamp after the value is ignored).
fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let close = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => continue,
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        };
        rest = &inner[close + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The OTel name and unit of a Prometheus family: `_total` leaves a counter, a unit
/// suffix becomes the unit, and the words take dots between them (`status_code` stays
/// one word); a recording rule's name with colons stays as it is.
pub fn otel_name(name: &str, kind: Kind) -> (String, &'static str) {
    let mut base = name;
    if kind == Kind::Counter {
        base = base.strip_suffix("_total").unwrap_or(base);
    }
    let mut unit = "";
    for (suffix, u) in [("_seconds", "s"), ("_bytes", "By")] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped;
            unit = u;
            break;
        }
    }
    if name.contains(':') {
        // A recording rule's `level:metric:operations` name is exported as it is.
        return (name.to_string(), "");
    }
    // Words that are one name in OTel's conventions keep their underscore.
    let dotted = base
        .replace("status_code", "status\u{0}code")
        .replace('_', ".")
        .replace('\u{0}', "_");
    if unit.is_empty() && kind == Kind::Counter {
        // An annotation unit, which the translation leaves out of the name.
        return (dotted, "{count}");
    }
    (dotted, unit)
}

/// Builds the export request for one exposition.
pub fn encode(
    families: &[Family],
    resource: &[KeyValue],
    start_unix_nano: u64,
    now_unix_nano: u64,
) -> ExportMetricsServiceRequest {
    let metrics = families
        .iter()
        .map(|family| {
            let (name, unit) = otel_name(&family.name, family.kind);
            let points = family
                .samples
                .iter()
                .map(|(labels, value)| NumberDataPoint {
                    attributes: labels.iter().map(|(k, v)| string_kv(k, v)).collect(),
                    start_time_unix_nano: match family.kind {
                        Kind::Counter => start_unix_nano,
                        Kind::Gauge => 0,
                    },
                    time_unix_nano: now_unix_nano,
                    value: Some(number(*value, family.kind)),
                    ..Default::default()
                })
                .collect();
            let data = match family.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: points,
                }),
            };
            Metric {
                name,
                description: family.help.clone(),
                unit: unit.to_string(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "sidewatch".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Counters are integers in the agent; everything else is a double.
fn number(value: f64, kind: Kind) -> number_data_point::Value {
    if kind == Kind::Counter && value.fract() == 0.0 && (0.0..9.0e15).contains(&value) {
        number_data_point::Value::AsInt(value as i64)
    } else {
        number_data_point::Value::AsDouble(value)
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Exports the agent's series every interval until stopped, and once more at shutdown.
pub struct MetricsExporter {
    client: OtlpClient,
    interval: Duration,
    resource: Vec<(String, String)>,
    /// The live deployment, for `service.version`.
    version: std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>,
    /// The exposition text, as `/metrics` serves it.
    render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
    sent: Counter,
    failed: Counter,
    /// Exports missed in a row: the first miss is logged, then one in `LOG_EVERY` (a
    /// 1 s interval against a dead collector must not flood the log), and the recovery.
    misses: std::sync::atomic::AtomicU64,
}

/// While the collector stays away, one log line per this many missed exports.
const LOG_EVERY: u64 = 60;

impl MetricsExporter {
    pub fn new(
        config: &OtlpConfig,
        resource: Vec<(String, String)>,
        telemetry: &Telemetry,
        render: Box<dyn Fn() -> String + Send + Sync>,
        version: Box<dyn Fn() -> Option<String> + Send + Sync>,
    ) -> Result<MetricsExporter, SenderError> {
        let labels = [("signal", "metrics")];
        Ok(MetricsExporter {
            client: OtlpClient::new(config)?,
            interval: config.metrics_interval,
            resource,
            version: version.into(),
            render: render.into(),
            sent: telemetry.counter(
                "sidewatch_export_sent_records_total",
                "Records the OTLP collector accepted.",
                &labels,
            ),
            failed: telemetry.counter(
                "sidewatch_export_failed_exports_total",
                "Metric exports that did not reach the collector within their interval (the next one carries the cumulative values).",
                &labels,
            ),
            misses: Default::default(),
        })
    }

    /// The series and the live version, read on the blocking pool: both take the
    /// pipeline's locks (the engine, the deployments), which a runtime worker must not
    /// wait for.
    async fn read(&self) -> (String, Option<String>) {
        let (render, version) = (self.render.clone(), self.version.clone());
        crate::off_worker(move || (render(), version())).await
    }

    fn request(
        &self,
        exposition: &str,
        version: Option<String>,
        start_unix_nano: u64,
    ) -> (Vec<u8>, u64) {
        let families = parse_exposition(exposition);
        let mut resource: Vec<KeyValue> =
            self.resource.iter().map(|(k, v)| string_kv(k, v)).collect();
        if let Some(version) = version {
            resource.retain(|kv| kv.key != "service.version");
            resource.push(string_kv("service.version", &version));
        }
        let now = crate::rule_runner::unix_nanos().max(0) as u64;
        let points: usize = families.iter().map(|f| f.samples.len()).sum();
        let request = encode(&families, &resource, start_unix_nano, now);
        (request.encode_to_vec(), points as u64)
    }

    /// Counts a missed export; `true` when this one should be logged.
    fn missed(&self) -> bool {
        let before = self
            .misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        before.is_multiple_of(LOG_EVERY)
    }

    /// One export with retries until `deadline` passes.
    async fn export(&self, start_unix_nano: u64, deadline: tokio::time::Instant) {
        let (exposition, version) = self.read().await;
        let (body, points) = self.request(&exposition, version, start_unix_nano);
        let body = bytes::Bytes::from(body);
        let mut attempt = 0u32;
        loop {
            match self.client.send(body.clone()).await {
                SendOutcome::Accepted { rejected, message } => {
                    self.sent.add(points.saturating_sub(rejected));
                    let missed = self.misses.swap(0, std::sync::atomic::Ordering::Relaxed);
                    if missed > 0 {
                        tracing::info!(
                            component = "otlp_metrics",
                            missed,
                            "metrics reach the collector again"
                        );
                    }
                    if rejected > 0 || !message.is_empty() {
                        tracing::warn!(
                            component = "otlp_metrics",
                            rejected,
                            message,
                            "the collector accepted the metrics only in part"
                        );
                    }
                    return;
                }
                SendOutcome::Refused { reason } => {
                    self.failed.inc();
                    if self.missed() {
                        tracing::error!(
                            component = "otlp_metrics",
                            "the collector refused the metrics: {reason}"
                        );
                    }
                    return;
                }
                SendOutcome::Retry { after, reason } => {
                    let backoff = crate::notify::webhook::backoff(attempt, 0.5);
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    attempt += 1;
                    if tokio::time::Instant::now() + wait >= deadline {
                        self.failed.inc();
                        if self.missed() {
                            tracing::warn!(
                                component = "otlp_metrics",
                                "cannot send metrics to the collector: {reason}; the next export carries them (logged once every {LOG_EVERY} misses)"
                            );
                        }
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub async fn run(self, stop: CancellationToken) {
        let start = crate::rule_runner::unix_nanos().max(0) as u64;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate: give the series a moment
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let deadline = tokio::time::Instant::now() + self.interval;
                    tokio::select! {
                        () = self.export(start, deadline) => {}
                        () = stop.cancelled() => {}
                    }
                }
                () = stop.cancelled() => break,
            }
            if stop.is_cancelled() {
                break;
            }
        }
        // The last values, so a collector sees what the agent ended with.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.export(start, deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP sidewatch_log_records_total Log records read, by source and level.
# TYPE sidewatch_log_records_total counter
sidewatch_log_records_total{source=\"app\",level=\"info\"} 42
sidewatch_log_records_total{source=\"a\\\"b\",level=\"error\"} 3
# HELP probe_duration_seconds How long the probe took.
# TYPE probe_duration_seconds gauge
probe_duration_seconds{probe=\"health\"} 0.0123
# TYPE probe_http_status_code gauge
probe_http_status_code{probe=\"health\"} 200
# TYPE sidewatch_export_queue_bytes gauge
sidewatch_export_queue_bytes{signal=\"logs\"} 0
service:http_requests:rate5m{deployment=\"1.2.0\"} 12.5
# TYPE sidewatch_alerts gauge
";

    #[test]
    fn reads_the_agents_exposition() {
        let families = parse_exposition(TEXT);
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sidewatch_log_records_total",
                "probe_duration_seconds",
                "probe_http_status_code",
                "sidewatch_export_queue_bytes",
                "service:http_requests:rate5m"
            ],
            "a family without samples is left out"
        );
        assert_eq!(families[0].kind, Kind::Counter);
        assert_eq!(families[0].help, "Log records read, by source and level.");
        assert_eq!(
            families[0].samples[1],
            (
                vec![
                    ("source".to_string(), "a\"b".to_string()),
                    ("level".to_string(), "error".to_string())
                ],
                3.0
            )
        );
        assert_eq!(families[4].kind, Kind::Gauge, "untyped samples are gauges");
    }

    /// The Collector's translation (dots to underscores, unit suffix, `_total` for
    /// monotonic sums) gives back every Prometheus name of SPEC.
    #[test]
    fn otel_names_translate_back_to_the_prometheus_names() {
        fn translate(name: &str, unit: &str, kind: Kind) -> String {
            let mut out = name.replace('.', "_");
            match unit {
                "s" => out.push_str("_seconds"),
                "By" => out.push_str("_bytes"),
                _ => {}
            }
            if kind == Kind::Counter {
                out.push_str("_total");
            }
            out
        }
        for (prom, kind, otel, unit) in [
            (
                "sidewatch_log_records_total",
                Kind::Counter,
                "sidewatch.log.records",
                "{count}",
            ),
            (
                "sidewatch_log_parse_errors_total",
                Kind::Counter,
                "sidewatch.log.parse.errors",
                "{count}",
            ),
            ("probe_success", Kind::Gauge, "probe.success", ""),
            ("probe_duration_seconds", Kind::Gauge, "probe.duration", "s"),
            (
                "probe_http_status_code",
                Kind::Gauge,
                "probe.http.status_code",
                "",
            ),
            ("sidewatch_alerts", Kind::Gauge, "sidewatch.alerts", ""),
            (
                "sidewatch_notifications_total",
                Kind::Counter,
                "sidewatch.notifications",
                "{count}",
            ),
            (
                "sidewatch_deployment_verdict",
                Kind::Gauge,
                "sidewatch.deployment.verdict",
                "",
            ),
            (
                "sidewatch_export_queue_bytes",
                Kind::Gauge,
                "sidewatch.export.queue",
                "By",
            ),
            (
                "sidewatch_export_dropped_total",
                Kind::Counter,
                "sidewatch.export.dropped",
                "{count}",
            ),
            (
                "service:http_requests:rate5m",
                Kind::Gauge,
                "service:http_requests:rate5m",
                "",
            ),
            (
                "process_cpu_seconds_total",
                Kind::Counter,
                "process.cpu",
                "s",
            ),
            (
                "process_resident_memory_bytes",
                Kind::Gauge,
                "process.resident.memory",
                "By",
            ),
        ] {
            assert_eq!(otel_name(prom, kind), (otel.to_string(), unit), "{prom}");
            assert_eq!(translate(otel, unit, kind), prom, "{otel} translates back");
        }
    }

    #[test]
    fn counters_are_cumulative_monotonic_sums_and_gauges_gauges() {
        let families = parse_exposition(TEXT);
        let request = encode(&families, &[string_kv("service.name", "api")], 100, 200);
        let rm = &request.resource_metrics[0];
        assert_eq!(
            rm.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let metrics = &rm.scope_metrics[0].metrics;
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("a counter is a sum: {:?}", metrics[0]);
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points[0].start_time_unix_nano, 100);
        assert_eq!(sum.data_points[0].time_unix_nano, 200);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(42))
        );
        let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
            panic!("a gauge: {:?}", metrics[1]);
        };
        assert_eq!(metrics[1].name, "probe.duration");
        assert_eq!(metrics[1].unit, "s");
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.0123))
        );
        assert_eq!(gauge.data_points[0].attributes[0].key, "probe");
    }
}
