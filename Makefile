# confab: the two set-up commands are `make run` and `make test`; both
# install what is missing first (scripts/deps.sh).
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)
FUZZ_RUNS ?= 10000000

.PHONY: deps run test postgres fmt fmt-check lint bench dist fuzz fuzz-build soak clean

deps:
	@./scripts/deps.sh

run: deps
	$(CARGO) build --release -p confab
	./target/release/confab serve

# The relational store's tests run on SQLite and on PostgreSQL; the latter
# needs a server: scripts/postgres.sh starts a private one on
# 127.0.0.1:55432 (installing PostgreSQL when missing) unless
# CONFAB_TEST_PG_URL already names one.
test: deps fmt-check lint
	@url="$${CONFAB_TEST_PG_URL:-$$(./scripts/postgres.sh)}" && \
	export CONFAB_TEST_PG_URL="$$url" && \
	echo "CONFAB_TEST_PG_URL=$$url" && \
	$(CARGO) test --workspace --all-targets && \
	$(CARGO) test --workspace --doc

# The distribution archive: the release binary stripped, its debug info in
# an archive of its own, the systemd unit and a production configuration
# (target/dist/; docs/operations.md, "Installing").
dist: deps
	$(CARGO) build --release -p confab
	./scripts/dist.sh target/release/confab target/dist

# Starts (or reuses) the test PostgreSQL server and prints its URL.
postgres:
	@./scripts/postgres.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

# clippy and the test build share librocksdb-sys's build-script run, so its
# C++ is compiled once, by whichever comes first. They do since dependencies
# carry no debug info in the dev profile (Cargo.toml); with debug info they
# were separate units that each compiled the C++, and lint had to point
# ROCKSDB_LIB_DIR at a library it never linked.
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# criterion suites, then the load generator's fixed scenarios against a
# freshly started release server; each rewrites its own marked section of
# docs/benchmarks.md (docs/loadgen.md).
bench: deps
	$(CARGO) bench -p confab-benches
	$(CARGO) build --release -p confab -p confab-loadgen
	./target/release/confab-loadgen criterion --write docs/benchmarks.md
	./target/release/confab-loadgen bench --confab ./target/release/confab --write docs/benchmarks.md

# Fifty SIGKILL cycles of a release node under 1:1 and group traffic,
# twenty power cuts under `sync = batch` and twenty under `interval:100`
# (the data directory on the power-cut filesystem: needs /dev/fuse and
# root), then an hour of traffic with churn and reconnect storms whose
# memory, descriptors and queues must stay flat (docs/testing.md); then
# twenty node kills and the loss of one NATS server of three under load on
# the loopback cluster of scripts/cluster.sh (docs/cluster.md). CI runs
# five crash cycles, twenty power cuts and a node kill in `make test`.
soak: deps
	$(CARGO) build --release -p confab -p confab-loadgen
	./target/release/confab-loadgen crash --confab ./target/release/confab --cycles 50 --json target/soak-crash.json
	./target/release/confab-loadgen crash --confab ./target/release/confab --cycles 20 --power-cut --sync batch --json target/soak-power-batch.json
	./target/release/confab-loadgen crash --confab ./target/release/confab --cycles 20 --power-cut --sync interval:100 --json target/soak-power-interval.json
	./target/release/confab-loadgen soak --confab ./target/release/confab --minutes 60 --json target/soak.json
	./scripts/cluster_soak.sh 20

fuzz-build:
	@./scripts/deps.sh --fuzz
	cd fuzz && $(CARGO) +nightly fuzz build -O

fuzz: fuzz-build
	FUZZ_RUNS=$(FUZZ_RUNS) ./scripts/fuzz.sh

clean:
	$(CARGO) clean
