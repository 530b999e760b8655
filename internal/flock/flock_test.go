package flock

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	if _, err := Open(path, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open without O_CREATE of a missing file: got %v, want fs.ErrNotExist", err)
	}
	a, err := Open(path, os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	// Another open file description of the same file conflicts, even in
	// this process.
	b, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("second lock while held: got %v, want EWOULDBLOCK", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, 0)
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	c.Close()
}
