//! What the fuzz targets share: driving the line parsers the way `file_tail` does (bytes
//! split into lines, invalid UTF-8 kept lossily and flagged, `text` tracebacks folded),
//! then writing every record as the JSON output and decoding every field, so the lazy
//! decoding runs too.

use std::sync::Arc;

use sidewatch::event::{FileMark, LogBatch, LogRecord, RecordFlags, Span};
use sidewatch::export::json::write_record;
use sidewatch::export::touch_every_field;
use sidewatch::parse::text::Folder;
use sidewatch::parse::{Format, LineParser};

/// Parses `data` as the lines of a source of `format` and renders every record.
///
/// Panics when a record's JSON output is not valid JSON: the file output promises one
/// JSON object per line whatever the input was.
pub fn parse_lines(format: Format, data: &[u8]) {
    let parser = LineParser::new(format, format.default_field_names());
    let source: Arc<str> = Arc::from("fuzz");
    let mut batch = LogBatch::new(source.clone());
    batch
        .files
        .push(FileMark::unchecked(source, "/var/log/app/fuzz.log"));
    let mut folder = Folder::default();
    let mut folding: Option<(Vec<u8>, u64)> = None;
    let mut offset = 0u64;
    for line in data.split(|b| *b == b'\n') {
        if format == Format::Text {
            if folder.continues(line)
                && let Some((text, _)) = folding.as_mut()
            {
                text.push(b'\n');
                text.extend_from_slice(line);
            } else {
                if let Some((text, at)) = folding.take() {
                    push_record(&mut batch, &parser, &text, at);
                }
                folding = Some((line.to_vec(), offset));
            }
        } else {
            push_record(&mut batch, &parser, line, offset);
        }
        offset += line.len() as u64 + 1;
    }
    if let Some((text, at)) = folding.take() {
        push_record(&mut batch, &parser, &text, at);
    }

    let mut out = Vec::new();
    for record in &batch.records {
        out.clear();
        write_record(&mut out, &batch, record, Some("v1.2.3"));
        assert_eq!(out.last(), Some(&b'\n'), "a record is one line");
        assert_valid_json(&out[..out.len() - 1]);
    }
    std::hint::black_box(touch_every_field(&batch));
}

/// Panics unless `bytes` is one JSON value. Values nested deeper than serde_json's own
/// recursion limit (128) are copied through from the input and cannot be checked here.
pub fn assert_valid_json(bytes: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
        assert!(
            e.to_string().contains("recursion limit"),
            "invalid JSON output: {e}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn push_record(batch: &mut LogBatch, parser: &LineParser, line: &[u8], offset: u64) {
    let start = batch.buf.len();
    let invalid_utf8 = match std::str::from_utf8(line) {
        Ok(text) => {
            batch.buf.push_str(text);
            false
        }
        Err(_) => {
            batch.buf.push_str(&String::from_utf8_lossy(line));
            true
        }
    };
    let span = Span::new(start, batch.buf.len());
    let mut record = LogRecord {
        file: 0,
        offset,
        observed_unix_nano: 1_700_000_000_000_000_000,
        flags: RecordFlags {
            parse_error: false,
            truncated: false,
            invalid_utf8,
        },
        ..LogRecord::default()
    };
    parser.parse(&mut batch.buf, span, &mut batch.fields, &mut record);
    batch.records.push(record);
}

/// Arbitrary bytes as an OTLP/HTTP traces request (protobuf, then JSON), the way the
/// OTLP receiver takes it: its resources enriched, its server and root spans turned into
/// `{source="otlp"}` records, each written as the JSON output (which must be valid).
pub fn otlp_spans(data: &[u8]) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    use sidewatch::sources::otlp_receiver::{ResourceDefaults, enrich, span_records};

    let mut requests = Vec::new();
    if let Ok(request) = ExportTraceServiceRequest::decode(data) {
        requests.push(request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) {
        requests.push(request);
    }
    let defaults = ResourceDefaults {
        service_name: "checkout-api".into(),
        environment: "fuzz".into(),
    };
    for mut request in requests {
        let source: Arc<str> = Arc::from("otlp");
        let mut batch = LogBatch::new(source);
        span_records(&mut batch, &request.resource_spans, "checkout-api", "version", 1);
        let mut out = Vec::new();
        for record in &batch.records {
            out.clear();
            write_record(&mut out, &batch, record, Some("v1.2.3"));
            assert_eq!(out.last(), Some(&b'\n'), "a record is one line");
            assert_valid_json(&out[..out.len() - 1]);
        }
        std::hint::black_box(touch_every_field(&batch));
        for resource_spans in &mut request.resource_spans {
            enrich(&mut resource_spans.resource, &defaults, Some("1.4.2"));
        }
        std::hint::black_box(request.encode_to_vec());
    }
}
