# confab: the two set-up commands are `make run` and `make test`; both
# install what is missing first (scripts/deps.sh).
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)
# One profile for clippy and the tests so RocksDB's C++ is built once.
FUZZ_SECONDS ?= 30

.PHONY: deps run test fmt fmt-check lint bench fuzz fuzz-build clean

deps:
	@./scripts/deps.sh

run: deps
	$(CARGO) build --release -p confab-gateway
	./target/release/confab serve

test: deps fmt-check lint
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps
	$(CARGO) bench -p confab-benches

fuzz-build:
	@./scripts/deps.sh --fuzz
	cd fuzz && $(CARGO) +nightly fuzz build

fuzz: fuzz-build
	cd fuzz && for t in $$($(CARGO) +nightly fuzz list); do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	$(CARGO) clean
