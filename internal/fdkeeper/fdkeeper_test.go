package fdkeeper_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/fdkeeper"
	"github.com/berthnet/berth/internal/sandbox"
)

// envChild makes the test binary act as the process whose socket is kept.
const envChild = "BERTH_FDKEEPER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child opens a netfilter socket, keeps it, closes its own descriptor,
// says so, and exits when its stdin closes (or at once with "exit").
func child() int {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		fmt.Println("socket:", err)
		return 1
	}
	// Bound, as every socket berth uses is: only bound netlink sockets
	// are listed in /proc/net/netlink.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		fmt.Println("bind:", err)
		return 1
	}
	if os.Getenv(envChild) == "keep" {
		if err := fdkeeper.Keep(fd); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	unix.Close(fd)
	fmt.Println("closed")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// netfilterSockets counts the NETLINK_NETFILTER sockets of the namespace
// (the kernel's own among them).
func netfilterSockets(tb testing.TB, n *sandbox.NS) int {
	tb.Helper()
	out, err := n.Exec("cat", "/proc/net/netlink")
	if err != nil {
		tb.Fatal(err)
	}
	count := 0
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == fmt.Sprint(unix.NETLINK_NETFILTER) {
			count++
		}
	}
	return count
}

func newNS(tb testing.TB) *sandbox.NS {
	tb.Helper()
	n, err := sandbox.NewNS(fmt.Sprintf("fdk%d", os.Getpid()%100000))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = n.Delete() })
	return n
}

// TestReleased: a kept socket outlives its process's own close (it is in
// flight) and is released by the kernel after the process exits, within a
// second; without Keep, the close releases it at once.
func TestReleased(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tc := range []struct {
		mode      string
		whileOpen int // the child's netfilter sockets while it lives
	}{
		{"keep", 1},
		{"plain", 0},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			n := newNS(t)
			base := netfilterSockets(t, n)
			cmd := n.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"="+tc.mode)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "closed" {
				t.Fatalf("child: %q, %v", line, err)
			}
			if got := netfilterSockets(t, n) - base; got != tc.whileOpen {
				t.Fatalf("after the child's own close: %d netfilter sockets, want %d", got, tc.whileOpen)
			}
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
			deadline := time.Now().Add(time.Second)
			for netfilterSockets(t, n) != base {
				if time.Now().After(deadline) {
					t.Fatalf("a second after the child exited, %d of its netfilter sockets are left", netfilterSockets(t, n)-base)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
