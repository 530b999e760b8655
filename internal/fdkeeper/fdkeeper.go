// Package fdkeeper lets a short-lived process leave the release of chosen
// sockets to the kernel after it has exited, so that what the kernel does
// on a socket's release does not hold up the process.
//
// Why: releasing a netfilter netlink socket (its last close, or the
// process's exit) runs nf_tables' NETLINK_URELEASE notifier, which flushes
// the nf_tables destroy work whenever any transaction in the kernel — any
// process's, any namespace's — has freed objects that still await their RCU
// grace period. The releasing task sleeps for that grace period: 6–15 ms
// here, per socket, after nothing more than a deleted set element. A CNI
// DEL, which deletes elements on purpose, paid it in every plugin that
// touched nftables, and a concurrent ADD paid it for its neighbours' DELs.
//
// How: Keep sends a copy of the descriptor, together with the receiving end
// of a private Unix socket pair, into that same receiving end. The message
// stays in flight: it holds a reference to the socket, so the process's own
// close, explicit or at exit, is never the last one. Once the process has
// exited, nothing outside the pair refers to it, and the kernel's Unix
// garbage collector frees the in-flight cycle. Current kernels (measured on
// 6.18) run the collector from a workqueue, so the release and its wait
// happen in a kernel worker; a kernel whose collector runs in the exiting
// process waits where it did before: no gain, no loss. The exit of any
// process that held in-flight descriptors schedules the collector, so
// nothing outlives the process by more than that run (TestReleased), and
// no helper process is started.
//
// Meant for short-lived processes (plugins): every kept socket stays open
// until the process exits.
package fdkeeper

import (
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

var (
	mu     sync.Mutex
	pair   = [2]int{-1, -1} // [0] sends into [1]
	kept   int              // descriptors handed over
	failed error            // why the pair could not be made (then Keep does nothing)
)

// Keep leaves the last reference to fd's open file to the kernel, released
// after this process exits. On failure the caller keeps the only copy and
// its close waits as it would without this package, so the error is for
// logging only.
func Keep(fd int) error {
	mu.Lock()
	defer mu.Unlock()
	if pair[0] < 0 && failed == nil {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			failed = fmt.Errorf("fdkeeper: socketpair: %w", err)
		} else {
			pair = [2]int{p[0], p[1]}
		}
	}
	if failed != nil {
		return failed
	}
	// The first message carries the receiving end too: the cycle (pair[1]
	// holding a message that holds pair[1]) is what leaves the release of
	// everything queued to the garbage collector rather than to this
	// process's close of pair[1]. Not blocking: with the queue full
	// (net.unix.max_dgram_qlen messages) the caller keeps its copy.
	rights := []int{fd}
	if kept == 0 {
		rights = append(rights, pair[1])
	}
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(rights...), nil, unix.MSG_DONTWAIT); err != nil {
		return fmt.Errorf("fdkeeper: keeping fd %d: %w", fd, err)
	}
	kept++
	return nil
}

// KeepRaw is Keep for a descriptor reached through syscall.RawConn (net
// and netlink connections).
func KeepRaw(rc syscall.RawConn) error {
	var kerr error
	if err := rc.Control(func(fd uintptr) { kerr = Keep(int(fd)) }); err != nil {
		return fmt.Errorf("fdkeeper: %w", err)
	}
	return kerr
}
