#!/usr/bin/env python3
"""Seed the fuzz corpora: fuzz/corpus/<target>/ from the real corpus and the rule pack.

  bench/fuzz_corpus.py            # (re)writes fuzz/corpus/*/seed-* files

Sources: a few hundred lines of ../shared/bench/gen_corpus.py (structlog JSON, also
rewritten as logfmt and plain text), rules/*.yaml, rules/tests/*.yaml,
agent/tests/configs/*.yaml, agent/tests/rules/*.yaml and the hand-written seeds of
fuzz/seeds/<target>/. The corpora are generated, not committed (.gitignore).
Needs: structlog and PyYAML (the test venv, .venv, has both).
"""
import base64
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
GEN = ROOT.parent / "shared" / "bench" / "gen_corpus.py"
CORPUS = ROOT / "fuzz" / "corpus"
TARGETS = ["parse_structlog", "parse_json", "parse_logfmt", "parse_text", "rule_expr",
           "rule_file", "rule_test_file", "config", "matcher", "template", "otlp_spans"]


def app_lines(count=300):
    if GEN.exists():
        out = subprocess.run([sys.executable, str(GEN), "--lines", str(count), "--seed", "8"],
                             check=True, capture_output=True, text=True).stdout
        return out.splitlines()
    # Without the shared generator: a handful of typical lines.
    return [json.dumps({"event": "request finished", "level": "info", "status": 200 + i,
                        "timestamp": "2026-11-01T12:00:00.%06dZ" % i}) for i in range(20)]


def logfmt(record):
    parts = []
    for k, v in record.items():
        v = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        if not v or any(c in v for c in ' ="\\'):
            v = '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{k}={v}")
    return " ".join(parts)


def text(record):
    ts = record.get("timestamp", "")
    level = str(record.get("level", "info")).upper()
    msg = record.get("event", "")
    line = f"{ts} {level} {msg}"
    if "exception" in record:
        line += "\n" + str(record["exception"])
    return line


def walk(node, key_wanted):
    """Every string value under a key in key_wanted, anywhere in a YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in key_wanted and isinstance(v, str):
                yield v
            elif k in key_wanted and isinstance(v, list):
                yield from (x for x in v if isinstance(x, str))
            yield from walk(v, key_wanted)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key_wanted)


def yaml_docs(paths):
    for path in paths:
        try:
            yield path, yaml.safe_load(path.read_text())
        except Exception:
            yield path, None


def write(target, blobs):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for blob in blobs:
        if isinstance(blob, str):
            blob = blob.encode()
        name = "seed-" + hashlib.sha1(blob).hexdigest()[:16]
        (folder / name).write_bytes(blob)
        count += 1
    seeds = ROOT / "fuzz" / "seeds" / target
    if seeds.is_dir():
        for f in sorted(seeds.iterdir()):
            shutil.copy(f, folder / ("seed-hand-" + f.name))
            count += 1
    print(f"{target:16} {len(list(folder.iterdir())):5} files")


def chunks(lines, size):
    return ["\n".join(lines[i:i + size]) + "\n" for i in range(0, len(lines), size)]


def main():
    lines = app_lines()
    records = [json.loads(l) for l in lines if l.startswith("{")]
    as_logfmt = [logfmt(r) for r in records]
    as_text = [text(r) for r in records]
    write("parse_structlog", lines[:120] + chunks(lines, 25))
    write("parse_json", lines[:60] + chunks(lines, 50))
    write("parse_logfmt", as_logfmt[:120] + chunks(as_logfmt, 25))
    write("parse_text", as_text[:120] + chunks(as_text, 25))

    rule_files = sorted((ROOT / "rules").glob("*.yaml")) + sorted((ROOT / "agent/tests/rules").glob("*.rules.yaml")) \
        + sorted((ROOT / "agent/tests/configs/rules").glob("*.yaml"))
    test_files = sorted((ROOT / "rules/tests").glob("*.yaml")) + sorted((ROOT / "agent/tests/rules").glob("*.yaml"))
    test_files = [p for p in test_files if p not in rule_files]
    configs = sorted((ROOT / "agent/tests/configs").glob("*.yaml")) + sorted((ROOT / "deploy").rglob("*sidewatch*.yaml"))
    all_yaml = rule_files + test_files + configs

    exprs = set()
    templates = set()
    matchers = set()
    for _, doc in yaml_docs(all_yaml):
        exprs.update(walk(doc, {"expr", "resolve_expr", "query", "selector"}))
        for ann in walk(doc, {"annotations", "labels", "exp_annotations"}):
            templates.add(ann)
        for node in walk(doc, {"summary", "description", "runbook_url", "title"}):
            templates.add(node)
        matchers.update(walk(doc, {"matchers", "source_matchers", "target_matchers", "series"}))
    write("rule_expr", sorted(exprs))
    write("rule_file", [p.read_bytes() for p in rule_files])
    write("rule_test_file", [p.read_bytes() for p in test_files])
    write("config", [p.read_bytes() for p in configs])
    write("matcher", sorted(matchers))
    write("template", sorted(templates))
    # The OTLP receiver's requests: the hand-written JSON seeds, and each as protobuf.
    write("otlp_spans", [otlp_protobuf(p.read_text()) for p in sorted((ROOT / "fuzz/seeds/otlp_spans").glob("*.json"))])


def otlp_protobuf(text):
    """An OTLP/JSON traces request as protobuf bytes (official opentelemetry-proto)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    # OTLP/JSON writes ids as hex, protobuf's JSON mapping as base64.
    doc = json.loads(text)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()


if __name__ == "__main__":
    main()
