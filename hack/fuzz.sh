#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (default 4s):
# `make fuzz` in CI, `make soak-fuzz` (FUZZTIME=2m) for longer runs. New
# inputs the fuzzer finds interesting stay in Go's cache; a failing input
# is written to the package's testdata/fuzz/<Target>/ and, once the bug is
# fixed, is committed there so it is replayed by every plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-4s}
# Two workers: the machines running CI are small and shared.
PARALLEL=${FUZZ_PARALLEL:-2}
fail=0
while IFS=: read -r file target; do
	pkg=./$(dirname "$file")
	echo "fuzz $pkg $target ($FUZZTIME)"
	run() { go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL" "$pkg" >/tmp/berth-fuzz.$$ 2>&1; }
	if ! run; then
		# Go's fuzzing coordinator can report "context deadline exceeded"
		# when -fuzztime ends while a worker is slow to answer (a loaded
		# machine), with no failing input: not a finding. Run that target
		# once more; a second failure of any kind fails.
		if grep -q 'context deadline exceeded' /tmp/berth-fuzz.$$ && ! grep -q 'Failing input written' /tmp/berth-fuzz.$$; then
			echo "fuzz $pkg $target: the fuzzing engine timed out a slow worker (no failing input); running it again"
			if run; then
				continue
			fi
		fi
		cat /tmp/berth-fuzz.$$
		fail=1
	fi
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' pkg plugins internal | sed 's/func //' | sort)
rm -f /tmp/berth-fuzz.$$
exit $fail
