//! Arbitrary bytes as lines of a `json` source, parsed and written as the JSON output.
#![no_main]

use sidewatch::parse::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidewatch_fuzz::parse_lines(Format::Json, data));
