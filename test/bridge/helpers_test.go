package bridge_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

// ipamFiles lists host-local's reservation files for network.
func ipamFiles(e *nstest.Env, network string) []string {
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

// links lists the link names in ns.
func links(t testing.TB, ns *nstest.NS) string {
	t.Helper()
	return ns.MustExec(t, "ip", "-o", "link", "show")
}
