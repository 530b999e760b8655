// Package flock takes flock(2) locks on files, the one way berth
// serializes processes that share on-disk state (the IPAM store, the
// registry's file backend, a host daemon's start and life locks). A flock
// belongs to the open file: closing it, or the process dying (even by
// SIGKILL), releases it, so a crashed holder never leaves a stale lock.
package flock

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Lock takes an exclusive lock on f, blocking until other holders are
// done. A signal delivered while blocked (the Go runtime's preemption
// signals included) makes flock return EINTR: it is retried.
func Lock(f *os.File) error { return lock(f, unix.LOCK_EX) }

func lock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Open opens path for writing with flag added (os.O_CREATE to create it)
// and takes an exclusive lock on it. Closing the file releases the lock.
// Errors are *os.PathError naming the path (Op "open" or "flock"), so that
// callers can test for fs.ErrNotExist.
func Open(path string, flag int) (*os.File, error) { return open(path, flag, unix.LOCK_EX) }

// OpenShared is Open with a shared lock: many holders at once, none while
// an exclusive one holds it (readers beside a writer that tears down).
func OpenShared(path string, flag int) (*os.File, error) { return open(path, flag, unix.LOCK_SH) }

func open(path string, flag, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lock(f, how); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return f, nil
}
