//! Sources bring data into the agent; they are the only components that read the
//! filesystem for data. `file_tail` follows log files.

pub mod discovery;
pub mod file_tail;
