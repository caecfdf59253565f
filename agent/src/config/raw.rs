//! Phase one of configuration: the YAML as typed, with the position of every value, so
//! that phase two (`validate`) can report each problem as `file:line:col`. Everything is
//! optional here; defaults and checks live in `validate`.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A scalar as written (string, number or boolean), kept as text until validation
/// parses it: durations, sizes and `${VAR}` references are all strings at first.
#[derive(Debug, Clone)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

pub(super) type S = Spanned<Scalar>;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    pub(super) service: Option<RawService>,
    pub(super) data_dir: Option<S>,
    pub(super) checkpoint_interval: Option<S>,
    pub(super) grace_period: Option<S>,
    pub(super) api: Option<RawApi>,
    pub(super) logs: Option<Vec<Spanned<RawLogSource>>>,
    pub(super) export: Option<RawExport>,
    pub(super) probes: Option<Vec<Spanned<RawProbe>>>,
    pub(super) otlp_receiver: Option<Spanned<RawOtlpReceiver>>,
    pub(super) deployments: Option<Spanned<RawDeployments>>,
    pub(super) rules: Option<Spanned<RawRules>>,
    pub(super) alerting: Option<Spanned<RawAlerting>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawService {
    pub(super) name: Option<S>,
    pub(super) environment: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawApi {
    pub(super) listen: Option<S>,
    pub(super) token: Option<S>,
    pub(super) token_file: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLogSource {
    pub(super) name: Option<S>,
    pub(super) paths: Option<Spanned<Vec<S>>>,
    pub(super) format: Option<S>,
    pub(super) start_at: Option<S>,
    pub(super) fields: Option<RawFieldNames>,
    pub(super) max_line_bytes: Option<S>,
    pub(super) rotate_wait: Option<S>,
    pub(super) poll_interval: Option<S>,
    pub(super) notify: Option<S>,
    pub(super) drop: Option<S>,
    pub(super) redact: Option<Vec<Spanned<RawRedact>>>,
}

/// One `redact:` entry: `{ field: password }` or `{ pattern: '…', replace: '…' }`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRedact {
    pub(super) field: Option<S>,
    pub(super) pattern: Option<S>,
    pub(super) replace: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawFieldNames {
    pub(super) message: Option<S>,
    pub(super) level: Option<S>,
    pub(super) time: Option<S>,
    pub(super) trace_id: Option<S>,
    pub(super) span_id: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawProbe {
    pub(super) name: Option<S>,
    pub(super) url: Option<S>,
    pub(super) interval: Option<S>,
    pub(super) timeout: Option<S>,
    pub(super) expect: Option<RawExpect>,
    pub(super) version_from: Option<S>,
    pub(super) ca_file: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawExpect {
    pub(super) status: Option<Spanned<Vec<S>>>,
    pub(super) body_json: Option<Spanned<serde_json::Value>>,
    pub(super) max_latency: Option<S>,
}

/// `otlp_receiver:`: where the app's own OTel SDK sends (`off` or empty: that server
/// is not started).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOtlpReceiver {
    pub(super) grpc: Option<S>,
    pub(super) http: Option<S>,
    pub(super) max_request_bytes: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDeployments {
    pub(super) detect: Option<Spanned<Vec<S>>>,
    pub(super) version_field: Option<S>,
    pub(super) verify_window: Option<S>,
    pub(super) baseline_window: Option<S>,
    pub(super) probe_boost: Option<S>,
    pub(super) probe_grace: Option<S>,
    pub(super) confidence: Option<S>,
    pub(super) baseline_from: Option<Vec<S>>,
    pub(super) notify_on_pass: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRules {
    pub(super) files: Option<Spanned<Vec<S>>>,
    pub(super) evaluation_interval: Option<S>,
    pub(super) evaluation_delay: Option<S>,
    pub(super) max_series: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAlerting {
    pub(super) alertmanagers: Option<Vec<Spanned<RawAlertmanager>>>,
    pub(super) resend_delay: Option<S>,
    pub(super) external_url: Option<S>,
    pub(super) route: Option<Spanned<RawRoute>>,
    pub(super) receivers: Option<Vec<Spanned<RawReceiver>>>,
    pub(super) inhibit_rules: Option<Vec<Spanned<RawInhibitRule>>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAlertmanager {
    pub(super) urls: Option<Spanned<Vec<S>>>,
    pub(super) timeout: Option<S>,
    pub(super) ca_file: Option<S>,
    pub(super) bearer_token: Option<S>,
    pub(super) bearer_token_file: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRoute {
    pub(super) receiver: Option<S>,
    pub(super) matchers: Option<Vec<S>>,
    #[serde(rename = "continue")]
    pub(super) continue_matching: Option<S>,
    pub(super) group_by: Option<Spanned<Vec<S>>>,
    pub(super) group_wait: Option<S>,
    pub(super) group_interval: Option<S>,
    pub(super) repeat_interval: Option<S>,
    pub(super) routes: Option<Vec<Spanned<RawRoute>>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawReceiver {
    pub(super) name: Option<S>,
    pub(super) email: Option<Spanned<RawEmail>>,
    pub(super) webhook: Option<Spanned<RawWebhook>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawEmail {
    pub(super) to: Option<Spanned<Vec<S>>>,
    pub(super) from: Option<S>,
    pub(super) smarthost: Option<S>,
    pub(super) tls: Option<S>,
    pub(super) username: Option<S>,
    pub(super) password: Option<S>,
    pub(super) password_file: Option<S>,
    pub(super) ca_file: Option<S>,
    pub(super) hello: Option<S>,
    pub(super) subject: Option<S>,
    pub(super) text: Option<S>,
    pub(super) html: Option<S>,
    pub(super) send_resolved: Option<S>,
    pub(super) timeout: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawWebhook {
    pub(super) url: Option<S>,
    pub(super) url_file: Option<S>,
    pub(super) format: Option<S>,
    pub(super) hmac_secret: Option<S>,
    pub(super) hmac_secret_file: Option<S>,
    pub(super) ca_file: Option<S>,
    pub(super) timeout: Option<S>,
    pub(super) max_alerts: Option<S>,
    pub(super) send_resolved: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawInhibitRule {
    pub(super) source_matchers: Option<Vec<S>>,
    pub(super) target_matchers: Option<Vec<S>>,
    pub(super) equal: Option<Vec<S>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawExport {
    pub(super) file: Option<Spanned<RawFileSink>>,
    pub(super) stdout: Option<S>,
    pub(super) blackhole: Option<S>,
    pub(super) otlp: Option<Spanned<RawOtlp>>,
}

/// `export.otlp`; see `export::otlp::config` for what each key means.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOtlp {
    pub(super) endpoint: Option<S>,
    pub(super) protocol: Option<S>,
    pub(super) headers: Option<Spanned<std::collections::BTreeMap<String, S>>>,
    /// `headers`' `*_file` twin: `key=value` pairs as in `OTEL_EXPORTER_OTLP_HEADERS`.
    pub(super) headers_file: Option<S>,
    pub(super) compression: Option<S>,
    pub(super) timeout: Option<S>,
    pub(super) ca_file: Option<S>,
    pub(super) signals: Option<Spanned<Vec<S>>>,
    pub(super) queue: Option<RawOtlpQueue>,
    pub(super) batch: Option<RawOtlpBatch>,
    pub(super) metrics_interval: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOtlpQueue {
    pub(super) memory: Option<S>,
    pub(super) disk: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOtlpBatch {
    pub(super) max_records: Option<S>,
    pub(super) timeout: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawFileSink {
    pub(super) path: Option<S>,
}

/// The shape of the document with the position of every mapping key, used to place
/// errors (an unknown key) that serde reports only by path.
#[derive(Debug)]
pub(super) enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<Scalar>>()? {
                    let value = map.next_value::<Node>()?;
                    let key = Spanned {
                        value: key.value.0,
                        referenced: key.referenced,
                        defined: key.defined,
                    };
                    entries.push((key, value));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
