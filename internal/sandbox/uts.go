package sandbox

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// UTS is a UTS namespace with a hostname of its own: a simulated host's
// name. dnsname tells its own host's entries from other hosts' by the
// hostname, so hosts simulated on one machine each need one.
type UTS struct {
	fd int
}

// NewUTS makes a UTS namespace named hostname (held open by a file
// descriptor, not by a process). The calling thread is moved back to its
// own UTS namespace before return.
func NewUTS(hostname string) (*UTS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var fd int
	err := inNewUTS(func() error {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("sethostname %s: %w", hostname, err)
		}
		var err error
		fd, err = unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &UTS{fd: fd}, nil
}

// Close releases the namespace (gone with its last process).
func (u *UTS) Close() error { return unix.Close(u.fd) }

// inNewUTS runs f on the locked calling thread in a fresh UTS namespace,
// then moves the thread back.
func inNewUTS(f func() error) error {
	restore, err := saveNS("uts", unix.CLONE_NEWUTS)
	if err != nil {
		return err
	}
	defer restore()
	if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare uts: %w", err)
	}
	return f()
}

// saveNS returns what moves the locked calling thread back into its
// current namespace of the type; a thread that cannot go back must never
// run other goroutines, so that panics.
func saveNS(name string, nstype int) (func(), error) {
	orig, err := unix.Open("/proc/thread-self/ns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return func() {
		defer unix.Close(orig)
		if err := unix.Setns(orig, nstype); err != nil {
			panic(fmt.Sprintf("sandbox: back to the thread's %s namespace: %v", name, err))
		}
	}, nil
}

// inHost runs f with the calling thread in the host's network namespace
// and in uts, so the processes f starts (libcni forks plugins from the
// calling thread) are there too. Unlike ns.Do, f runs on this goroutine's
// locked thread: a thread of its own would not carry the UTS namespace.
func inHost(host *NS, uts *UTS, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restoreUTS, err := saveNS("uts", unix.CLONE_NEWUTS)
	if err != nil {
		return err
	}
	defer restoreUTS()
	if err := unix.Setns(uts.fd, unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("setns uts: %w", err)
	}
	restoreNet, err := saveNS("net", unix.CLONE_NEWNET)
	if err != nil {
		return err
	}
	defer restoreNet()
	if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", host.Name, err)
	}
	return f()
}
