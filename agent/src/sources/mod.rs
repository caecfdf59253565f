//! Sources bring data into the agent; they are the only components that read the
//! filesystem for data. `file_tail` follows log files;
//! `health_probe` polls HTTP health endpoints; `otlp_receiver` takes the app's own OTLP
//! (relayed to the collector; its server spans become the `otlp` record stream).

pub mod discovery;
pub mod file_tail;
pub mod health_probe;
pub mod otlp_receiver;
