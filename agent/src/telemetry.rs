//! The agent's own telemetry: a small Prometheus registry (counters and gauges with
//! fixed label sets, rendered in text format 0.0.4) and the internal events that each
//! component emits as both a log line and a counter, in Vector's vocabulary
//! (received / sent / discarded / errors).
//!
//! Hand-written rather than taken from `prometheus-client`: that crate renders
//! OpenMetrics (`# EOF`, `_created` series), while `/metrics` promises the classic text
//! format that `promtool check metrics` and every scraper read; and components here
//! only ever add to atomics they registered once, off the per-line path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    help: &'static str,
    kind: Kind,
    /// Rendered label set (`{a="x",b="y"}`) → value. Gauges store `f64` bits.
    series: BTreeMap<String, Arc<AtomicU64>>,
}

/// A monotonically increasing count.
#[derive(Clone, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// All series the agent exports on `/metrics`.
#[derive(Default)]
pub struct Telemetry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

impl Telemetry {
    pub fn new() -> Arc<Telemetry> {
        Arc::new(Telemetry::default())
    }

    /// Registers (or finds) the counter `name{labels}`. Names end in `_total`.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Counter {
        Counter(self.series(name, help, Kind::Counter, labels))
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        Gauge(self.series(name, help, Kind::Gauge, labels))
    }

    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
    ) -> Arc<AtomicU64> {
        let mut rendered = String::new();
        if !labels.is_empty() {
            rendered.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    rendered.push(',');
                }
                let _ = write!(rendered, "{key}=\"{}\"", escape_label(value));
            }
            rendered.push('}');
        }
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(rendered)
            .or_insert_with(|| {
                let initial = if kind == Kind::Gauge {
                    0f64.to_bits()
                } else {
                    0
                };
                Arc::new(AtomicU64::new(initial))
            })
            .clone()
    }

    /// The Prometheus text exposition (format 0.0.4) of every series, plus the
    /// standard `process_*` series read from /proc.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &family.series {
                let raw = value.load(Ordering::Relaxed);
                match family.kind {
                    Kind::Counter => {
                        let _ = writeln!(out, "{name}{labels} {raw}");
                    }
                    Kind::Gauge => {
                        let _ =
                            writeln!(out, "{name}{labels} {}", format_float(f64::from_bits(raw)));
                    }
                }
            }
        }
        drop(families);
        render_process(&mut out);
        out
    }
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `process_*` series as the Prometheus client libraries export them, from /proc.
fn render_process(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat (1-based), i.e. 11 and 12 after ')'.
    let ticks_per_second = 100.0;
    if let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) {
        let cpu = (utime.parse::<f64>().unwrap_or(0.0) + stime.parse::<f64>().unwrap_or(0.0))
            / ticks_per_second;
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
        );
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        if let Some(kib) = rss_kib {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes."
            );
            let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
            let _ = writeln!(out, "process_resident_memory_bytes {}", kib * 1024.0);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors."
        );
        let _ = writeln!(out, "# TYPE process_open_fds gauge");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}

/// The counters of one component, in Vector's internal-event vocabulary.
#[derive(Clone, Debug)]
pub struct ComponentEvents {
    pub component: Arc<str>,
    pub received: Counter,
    pub received_bytes: Counter,
    pub sent: Counter,
    pub discarded: Counter,
    telemetry: Arc<Telemetry>,
}

impl ComponentEvents {
    pub fn new(telemetry: &Arc<Telemetry>, component: &str, kind: &str) -> ComponentEvents {
        let labels = [("component_id", component), ("component_kind", kind)];
        ComponentEvents {
            component: component.into(),
            received: telemetry.counter(
                "sidewatch_component_received_events_total",
                "Events a component received.",
                &labels,
            ),
            received_bytes: telemetry.counter(
                "sidewatch_component_received_bytes_total",
                "Bytes a component received.",
                &labels,
            ),
            sent: telemetry.counter(
                "sidewatch_component_sent_events_total",
                "Events a component passed on.",
                &labels,
            ),
            discarded: telemetry.counter(
                "sidewatch_component_discarded_events_total",
                "Events a component dropped (always also logged).",
                &labels,
            ),
            telemetry: telemetry.clone(),
        }
    }

    /// An error: logged at `error` level and counted by `error_type`.
    pub fn error(&self, error_type: &str, message: &str) {
        tracing::error!(component = %self.component, error_type, "{message}");
        self.telemetry
            .counter(
                "sidewatch_component_errors_total",
                "Errors a component met, by type.",
                &[
                    ("component_id", &self.component),
                    ("error_type", error_type),
                ],
            )
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_classic_text_format() {
        let telemetry = Telemetry::new();
        let c = telemetry.counter("a_total", "An a.", &[("source", "x\"y")]);
        c.add(3);
        telemetry
            .counter("a_total", "An a.", &[("source", "x\"y")])
            .inc();
        telemetry.gauge("b", "A b.", &[]).set(1.5);
        let text = telemetry.render();
        assert!(
            text.contains(
                "# HELP a_total An a.\n# TYPE a_total counter\na_total{source=\"x\\\"y\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE b gauge\nb 1.5\n"), "{text}");
    }
}
