# The commands humans and CI share. `make demo` and `make test` install what they need
# (tests/setup.sh: apt packages, a Python venv, cargo) on a fresh machine.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test setup lint unit rules e2e bench bench-verify bench-notify bench-otlp bench-overload bench-soak bench-outage fuzz image

## demo: a good and a bad deployment of the example app: verdicts, the alert email and webhook, the status page
demo: setup
	$(CARGO) build --release -p sidewatch
	.venv/bin/python deploy/demo/demo.py

## test: everything CI runs — format, lints, unit and snapshot tests, end-to-end tests
test: setup lint unit rules e2e

setup:
	tests/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	@# cargo-deny as a debug build: half the compile time of a release one, and fast
	@# enough for a few hundred crates. Advisories cannot be fetched here (SECURITY.md).
	command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install --locked --debug cargo-deny
	$(CARGO) deny --log-level error check licenses bans sources

unit:
	$(CARGO) test --workspace

## rules: the default rule pack's unit tests, through `sidewatch test` as users run them
rules:
	$(CARGO) run -q -p sidewatch -- test rules/tests/python-service.test.yaml rules/tests/spec-example.yaml

e2e:
	$(CARGO) build -p sidewatch
	.venv/bin/python -m pytest tests -q -s

## bench: the pipeline benchmark of BENCHMARKS.md (release build, 2M-line corpus)
bench: setup
	SIDEWATCH_BENCH_PYTHON=$(CURDIR)/.venv/bin/python $(CARGO) bench -p sidewatch --bench pipeline

## bench-verify: deployment verification accuracy of BENCHMARKS.md (release build, 300 seeds
## per scenario replayed; corpora cached in target/bench-corpus/deploy/)
bench-verify: setup
	.venv/bin/python bench/verify_accuracy.py

## bench-notify: alert latency of BENCHMARKS.md, from a log line to the webhook (100 alerts)
bench-notify: setup
	$(CARGO) build --release -p sidewatch
	.venv/bin/python bench/notify_latency.py

## bench-otlp: OTLP export of the 2M-line corpus to a counting receiver against the blackhole
bench-otlp: setup
	SIDEWATCH_BENCH_SUITE=otlp SIDEWATCH_BENCH_PYTHON=$(CURDIR)/.venv/bin/python $(CARGO) bench -p sidewatch --bench pipeline

## bench-overload: 10× the pipeline's capacity, several writers, fast rotation (BENCHMARKS "Overload")
bench-overload: setup
	$(CARGO) build --release -p sidewatch
	.venv/bin/python bench/overload.py

## bench-soak: one hour at 5,000 lines/s, rotation every minute, collector outages (BENCHMARKS "Soak")
bench-soak: setup
	$(CARGO) build --release -p sidewatch
	.venv/bin/python bench/soak.py

## bench-outage: the collector away for 2 minutes at ~2,000 lines/s (BENCHMARKS "OTLP export")
bench-outage: setup
	$(CARGO) build --release -p sidewatch
	.venv/bin/python bench/otlp_outage.py

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (default 600; nightly + cargo-fuzz);
## prints executions and crashes, fails if any crash exists
FUZZ_SECONDS ?= 600
fuzz:
	bench/fuzz.sh $(FUZZ_SECONDS)

## image: the container image (deploy/Dockerfile; the public rust and scratch bases)
image:
	docker build -f deploy/Dockerfile -t sidewatch .
