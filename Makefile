# berth — build, test, demo, bench, lint, install.
# `make demo` and `make test` work as root on a fresh machine: both install
# the Debian packages they need first (hack/install-deps.sh, idempotent).

GO      ?= go
BIN     := $(CURDIR)/bin
PREFIX  ?= /opt/cni/bin
export BERTH_CNI_PATH := $(BIN)

.PHONY: all build deps test test-vm test-e2e unit lint demo bench install clean fuzz soak-fuzz soak-crash

all: build

# Static binaries: importing net would otherwise link libc for its resolver,
# and the dynamic loader costs ~3 ms of every plugin's process start, the
# floor of every ADD and DEL (measured with hack/bench).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ ./plugins/... ./cmd/...

deps:
	@bash hack/install-deps.sh

# The whole suite: unit tests and integration tests (real namespaces, real
# binaries). Needs root.
test: deps build lint fuzz
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) test-vm
	$(MAKE) test-e2e

# The VM lane: tests that need kernel features this host may lack (802.1q
# VLANs) run inside Debian's stock kernel under QEMU (hack/vm/test-vm.sh).
test-vm: deps
	@bash hack/vm/test-vm.sh

# The real-engine lane (test/e2e): unmodified Podman and containerd (CRI,
# through crictl) run containers on berth's binaries, each engine inside a
# private host network namespace with private state. Fails if a test skips.
test-e2e: deps build
	@bash hack/e2e/deps.sh
	@bash hack/e2e/run.sh

# Every unit test; needs nothing installed (no root, no etcd): tests that
# do live in test/.
unit:
	$(GO) test -count=1 ./pkg/... ./plugins/... ./internal/... ./cmd/...

lint:
	@bash hack/lint.sh

# Every Go fuzz target (config decoders, CNI_ARGS, runtimeConfig,
# prevResult) for a few seconds each; soak-fuzz for minutes each.
fuzz:
	@FUZZTIME=$${FUZZTIME:-4s} bash hack/fuzz.sh

soak-fuzz:
	@FUZZTIME=$${FUZZTIME:-2m} bash hack/fuzz.sh

# test/crash with more runs than CI: every crash point 30 times per backend,
# 2000 random moments per backend (test/crash builds the plugins with -tags
# crashpoint itself).
soak-crash: deps
	BERTH_CRASH_REPS=30 BERTH_CRASH_RUNS=2000 BERTH_CRASH_RANDOM_BACKENDS="nftables iptables" \
		$(GO) test -count=1 -timeout 90m -v -run 'TestCrash' ./test/crash/

demo: deps build
	$(GO) run ./hack/demo

bench: build
	@BENCH=1 bash hack/install-deps.sh
	$(GO) run ./hack/bench $(BENCH_ARGS)

install: build
	install -d $(PREFIX)
	install -m 0755 $(BIN)/* $(PREFIX)/

clean:
	rm -rf $(BIN)

# Long forms of the reliability suites (issue 8). The storm: 20000 ADD/DEL
# cycles by 32 workers over Docker's chain, then a leak audit (`make test`
# runs 1000; BERTH_STORM_CYCLES and BERTH_STORM_WORKERS scale it).
.PHONY: soak soak-storm
soak: soak-storm soak-crash soak-fuzz

soak-storm: deps build
	BERTH_STORM_CYCLES=20000 $(GO) test -count=1 -timeout 8h -run 'TestStorm$$' -v ./test/storm/
