//! Arbitrary bytes as an OTLP traces request at the receiver: decoded (protobuf, JSON),
//! enriched, its spans made records and written as JSON.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidewatch_fuzz::otlp_spans(data));
