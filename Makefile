# The OSAM Linux fixup stack. `make image` and `make test` are the two
# commands of the README; each installs what it needs first.

SHELL := /bin/bash
CARGO ?= cargo
ARCHES := x86_64 i686
OUT ?= out
STACK_TARGET_DIR := target/stack

.PHONY: all deps deps-peer inputs build stack image test unit lint fmt fuzz qemu-test scenarios bench bench-peer bench-all update-pins clean

all: image

## deps: Debian packages and Rust targets (idempotent).
deps:
	@scripts/install-deps.sh

## inputs: the pinned packages from Debian's archive, into the cache.
inputs: deps
	@scripts/fetch-inputs.sh --arch all >/dev/null

## build: the host tools (fixupctl, osam-image).
build: deps
	$(CARGO) build --release --bin fixupctl --bin osam-image

## stack: osam-init and fixupctl, static, for both architectures.
stack: deps
	@for a in $(ARCHES); do \
	  $(CARGO) build --release --target $$a-unknown-linux-musl -p osam-init \
	    --target-dir $(STACK_TARGET_DIR) || exit 1; \
	done

## image: both stacks into $(OUT)/.
image: deps inputs stack build
	@mkdir -p $(OUT)
	@inputs=$$(scripts/fetch-inputs.sh --arch all | tail -n 1); \
	for a in $(ARCHES); do \
	  target/release/osam-image build --arch $$a --format vmdk --inputs "$$inputs" --out $(OUT) || exit 1; \
	done
	@cd $(OUT) && rm -f SHA256SUMS && sha256sum $$(find . -maxdepth 1 -type f ! -name SHA256SUMS ! -name '.*' -printf '%P\n' | sort) > SHA256SUMS
	@echo "image: $(OUT)/ ready"; ls -l $(OUT)

## lint: formatting and clippy, warnings are errors.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: the unit and fixture tests (no QEMU).
unit: deps
	$(CARGO) test --workspace --lib --bins

## test: everything CI runs: lint, unit, static-binary check, QEMU tests;
## on stable Rust, init/tests/fuzz_corpus.rs replays fuzz/corpus/ and runs
## short seeded mutations of it (make fuzz runs libFuzzer, nightly).
test: deps inputs lint
	$(CARGO) test --workspace --no-fail-fast

## fuzz: every target of fuzz/ under libFuzzer for FUZZ_SECONDS (60) each,
## or only FUZZ_TARGETS; installs nightly Rust and cargo-fuzz when missing
## (see scripts/fuzz.sh and docs/fuzzing.md).
fuzz:
	@scripts/fuzz.sh

## qemu-test: the long QEMU tier: every scenario of docs/testing.md with
## its prove-the-problem boot, the test guests' variants, the full emulator
## run.
qemu-test: deps inputs
	OSAM_QEMU_FULL=1 $(CARGO) test -p osam-qemu-tests --no-fail-fast -- --test-threads=2

## scenarios: only the end-to-end scenarios (qemu-tests/tests/scenarios.rs):
## (a), (b), (c); with OSAM_QEMU_FULL=1 all of them, each with its
## prove-the-problem boot. Guests are cached in
## $${XDG_CACHE_HOME:-$$HOME/.cache}/osam/guests, logs are left in
## target/osam-scenarios/.
scenarios: deps inputs
	$(CARGO) test -p osam-qemu-tests --test scenarios --no-fail-fast -- --nocapture

## bench: build time, image sizes, boot to /tmp/fixup (BIOS, UEFI),
## smallest VM memory, stage-1 time on reference guest (a) with and
## without an initramfs rebuild, the smallest VM memory for stage 1;
## prints a table (docs/benchmarks.md keeps one), also as
## target/bench/bench.json. OSAM_BENCH_PEER=1 adds the virt-v2v comparison
## (what bench-all does).
bench: deps inputs
	$(CARGO) run --release -p osam-qemu-tests --bin osam-bench

## deps-peer: deps plus the peer of bench-peer, virt-v2v (large: kept out
## of the default dependencies).
deps-peer:
	@scripts/install-deps.sh --peer

## bench-peer: virt-v2v and our flow on guest (a), each result booted on
## VMware hardware; a table, also as target/bench/peer.json.
bench-peer: deps-peer inputs
	$(CARGO) run --release -p osam-qemu-tests --bin osam-bench-peer

## bench-all: bench with the virt-v2v comparison, in one run.
bench-all: deps-peer inputs
	OSAM_BENCH_PEER=1 $(CARGO) run --release -p osam-qemu-tests --bin osam-bench

## update-pins: move image/pins.txt to what the archive has now.
update-pins: deps
	scripts/update-pins.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(OUT)
