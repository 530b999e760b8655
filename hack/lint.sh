#!/usr/bin/env bash
# gofmt, go vet and staticcheck; fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then
	echo "gofmt: needs formatting:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
"$(go env GOPATH)/bin/staticcheck" ./...
