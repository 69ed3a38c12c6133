# The two commands of the README:
#   make demo   builds and runs the most complete thing that works (see README)
#   make test   builds and runs the whole test suite, as CI does
# Both install what is missing first (scripts/setup.sh: Debian packages and a local cmake).

SHELL := /bin/bash
export PATH := $(CURDIR)/.tools/venv/bin:$(PATH)
CARGO ?= cargo

.PHONY: setup demo test lint bench bench-report fmt

setup:
	@bash scripts/setup.sh

demo: setup
	@$(CARGO) build --release -q -p tools
	@./target/release/exchange demo

test: setup lint
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -q -- -D warnings

bench: setup
	$(CARGO) bench -p benches
	$(CARGO) bench -p tools --bench failover
	$(CARGO) bench -p tools --bench gateway
	$(CARGO) bench -p gateway --bench codec --features fefix-baseline
	$(CARGO) bench -p marketdata --bench feed
	$(CARGO) bench -p marketdata --bench latency

# The whole suite, then docs/benchmark-report.md with its plots (docs/benchmark-plots/).
bench-report: setup
	$(CARGO) run --release -p benches --bin report

fmt:
	$(CARGO) fmt --all
