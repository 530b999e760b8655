// Package nstest is the harness for berth's integration tests: private
// network namespaces named with a per-run prefix, the built plugin binaries,
// and a libcni runtime that executes plugins inside a private "host"
// namespace exactly as containerd would in the real one.
//
// Network safety (ARCHITECTURE.md): nothing here ever touches the machine's root
// namespace. Every namespace a test makes is removed by t.Cleanup.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/berthnet/berth/internal/sandbox"
)

var (
	prefix  = newPrefix()
	counter atomic.Int64
)

func newPrefix() string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "b" + hex.EncodeToString(b)
}

// Prefix is this test process's short unique prefix ("b3f2a"), used for
// namespace and link names (link names have 15 characters at most).
func Prefix() string { return prefix }

// UniqueName returns prefix + a counter + suffix, short enough for a link
// name when suffix has at most 6 characters.
func UniqueName(suffix string) string {
	return fmt.Sprintf("%s%d%s", prefix, counter.Add(1), suffix)
}

// NS is a named network namespace (/run/netns/<Name>) made by a test.
type NS struct {
	*sandbox.NS
}

// NewNS creates a named namespace with lo up and removes it on cleanup.
func NewNS(t testing.TB, label string) *NS {
	t.Helper()
	n, err := sandbox.NewNS(fmt.Sprintf("%s-%d-%s", prefix, counter.Add(1), label))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Error(err)
		}
	})
	return &NS{NS: n}
}

// MustExec is Exec that fails the test on error.
func (n *NS) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Start starts a long-running command inside the namespace (a server) and
// kills it on cleanup.
func (n *NS) Start(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := n.Command(args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v in %s: %v", args, n.Name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// Veth links two namespaces with a veth pair, assigns the given addresses
// (CIDR notation, may be empty) and brings both ends up.
func Veth(t testing.TB, a *NS, ifA, addrA string, b *NS, ifB, addrB string) {
	t.Helper()
	tmp := UniqueName("v")
	out, err := exec.Command("ip", "link", "add", tmp, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("veth %s/%s: %v: %s", a.Name, b.Name, err, out)
	}
	a.MustExec(t, "ip", "link", "set", tmp, "name", ifA)
	for _, side := range []struct {
		ns         *NS
		ifn, addr4 string
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		if side.addr4 != "" {
			side.ns.MustExec(t, "ip", "addr", "add", side.addr4, "dev", side.ifn)
		}
		side.ns.MustExec(t, "ip", "link", "set", side.ifn, "up")
	}
}

// RequireRoot fails (never skips: a skipped suite would hide missing
// coverage in CI) when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (network namespaces, netlink): run `sudo make test`")
	}
}
