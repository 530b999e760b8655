#!/usr/bin/env bash
# `make test-e2e`: runs test/e2e with the engines (BERTH_E2E=1) and fails
# when a test skips, so a lane that silently did nothing cannot pass.
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
BERTH_E2E=1 go test -count=1 -v -timeout 10m ./test/e2e/ "$@" 2>&1 | tee "$out" || status=$?
if grep -q -- '--- SKIP' "$out"; then
	echo "test-e2e: tests skipped; the real-engine lane must run them all" >&2
	exit 1
fi
if ! grep -q -- '--- PASS' "$out"; then
	echo "test-e2e: no test ran" >&2
	exit 1
fi
exit "$status"
