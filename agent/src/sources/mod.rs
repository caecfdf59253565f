//! Sources bring data into the agent; they are the only components that read the
//! filesystem for data. `file_tail` follows log files;
//! `health_probe` polls HTTP health endpoints.

pub mod discovery;
pub mod file_tail;
pub mod health_probe;
