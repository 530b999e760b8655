package retry_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/internal/nstest"
)

// reservations lists host-local's reservation files (one per address) of
// network.
func reservations(e *nstest.Env, network string) []string {
	e.T.Helper()
	entries, err := os.ReadDir(filepath.Join(e.DataDir, "networks", network))
	if err != nil && !os.IsNotExist(err) {
		e.T.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		n := en.Name()
		if n == "lock" || strings.HasPrefix(n, "last_reserved_ip") || strings.HasPrefix(n, ".") {
			continue
		}
		out = append(out, n)
	}
	return out
}

// wantCode fails the test unless err is a CNI error with code.
func wantCode(t testing.TB, err error, code uint) {
	t.Helper()
	var ce *types.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v, want a CNI error with code %d", err, code)
	}
	if ce.Code != code {
		t.Fatalf("got code %d (%s), want %d", ce.Code, ce.Msg, code)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
