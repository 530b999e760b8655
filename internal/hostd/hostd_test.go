package hostd

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests run this test binary as the daemon: a set of names that exits
// when its last name is removed, like the DNS sidecar.

const (
	envDaemon = "HOSTD_TEST_DAEMON" // the state directory
	envFail   = "HOSTD_TEST_FAIL"   // a startup error to report
)

type testReq struct {
	Op   string `json:"op"` // add, del, count
	Name string `json:"name,omitempty"`
	N    int    `json:"n,omitempty"` // count: the number of names expected
}

func TestMain(m *testing.M) {
	if dir, ok := os.LookupEnv(envDaemon); ok {
		os.Exit(testDaemon(dir))
	}
	os.Exit(m.Run())
}

func testDaemon(dir string) int {
	logger := log.New(os.Stderr, "", 0)
	if msg := os.Getenv(envFail); msg != "" {
		Ready(errors.New(msg))
		return 1
	}
	d, err := Lock(Dir{Path: dir, Name: "testd"}, logger)
	if err != nil {
		Ready(err)
		return 1
	}
	var mu sync.Mutex
	names := map[string]bool{}
	dec := json.NewDecoder(os.Stdin)
	for {
		var req testReq
		if err := dec.Decode(&req); err != nil {
			break
		}
		names[req.Name] = true
	}
	if err := d.Listen(); err != nil {
		Ready(err)
		return 1
	}
	Ready(nil)
	exiting := false
	d.Serve(func(line []byte) error {
		var req testReq
		if err := json.Unmarshal(line, &req); err != nil {
			return fmt.Errorf("bad request: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if exiting {
			return ErrExiting
		}
		switch req.Op {
		case "add":
			names[req.Name] = true
		case "del":
			delete(names, req.Name)
			if len(names) == 0 {
				exiting = true
				d.Shutdown()
			}
		case "count":
			if len(names) != req.N {
				return fmt.Errorf("have %d names, want %d", len(names), req.N)
			}
		default:
			return fmt.Errorf("unknown op %q", req.Op)
		}
		return nil
	}, nil)
	return 0
}

// source is the test's source of truth (the registry, for the sidecar):
// names are added to it before the daemon is told.
type source struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *source) load() ([]testReq, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []testReq
	for n := range s.names {
		out = append(out, testReq{Op: "add", Name: n})
	}
	return out, nil
}

func (s *source) set(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.names[name] = true
	} else {
		delete(s.names, name)
	}
}

// newClient returns a client of a daemon in a fresh state directory, and
// kills whatever daemon is left there at cleanup.
func newClient(t testing.TB, env ...string) (*Client[testReq], *source) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	src := &source{names: map[string]bool{}}
	c := &Client[testReq]{
		Dir:     Dir{Path: dir, Name: "testd"},
		Binary:  filepath.Base(exe), // this test binary, found beside itself
		Env:     append([]string{envDaemon + "=" + dir}, env...),
		LogFile: "stderr",
		Load:    src.load,
	}
	t.Cleanup(func() {
		if pid, err := readPID(c.Dir); err == nil {
			kill(pid)
		}
	})
	return c, src
}

func readPID(d Dir) (int, error) {
	b, err := os.ReadFile(d.PIDFile())
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// kill kills a daemon this test process started, and reaps it.
func kill(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, 0, nil)
}

func mustPID(t testing.TB, d Dir) int {
	t.Helper()
	pid, err := readPID(d)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

func add(t testing.TB, c *Client[testReq], src *source, name string) {
	t.Helper()
	src.set(name, true)
	if err := c.Notify(testReq{Op: "add", Name: name}, true); err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
}

func count(t testing.TB, c *Client[testReq], n int) {
	t.Helper()
	if err := c.Send(testReq{Op: "count", N: n}); err != nil {
		t.Fatalf("count: %v", err)
	}
}

// lifeLockFree reports whether no daemon holds the life lock.
func lifeLockFree(t testing.TB, d Dir) bool {
	t.Helper()
	f, err := os.OpenFile(d.lifeLock(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	return err == nil
}

// TestStartServeExit: the first Notify starts the daemon, later ones reach
// the same process, and removing the last name makes it exit before it
// replies: socket, pid file and life lock are gone when Notify returns.
func TestStartServeExit(t *testing.T) {
	c, src := newClient(t)
	add(t, c, src, "a")
	pid := mustPID(t, c.Dir)
	add(t, c, src, "b")
	count(t, c, 2)
	if got := mustPID(t, c.Dir); got != pid {
		t.Fatalf("second Notify started another daemon: pid %d, then %d", pid, got)
	}
	if fi, err := os.Stat(c.Socket()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, %v; want mode 0600", fi, err)
	}
	if err := c.Send(testReq{Op: "nope"}); err == nil || !strings.Contains(err.Error(), `unknown op "nope"`) {
		t.Fatalf("handler error: got %v, want the daemon's message", err)
	}
	for _, n := range []string{"a", "b"} {
		src.set(n, false)
		if err := c.Notify(testReq{Op: "del", Name: n}, false); err != nil {
			t.Fatalf("del %s: %v", n, err)
		}
	}
	if err := c.Send(testReq{Op: "count"}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after the last name: got %v, want ErrNotRunning", err)
	}
	if _, err := os.Stat(c.PIDFile()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file after exit: %v, want none", err)
	}
	if !lifeLockFree(t, c.Dir) {
		t.Fatal("life lock still held after the reply to the last del")
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("daemon exit: %v, status %d; want 0", err, ws.ExitStatus())
	}
	// The next ADD starts a new one.
	add(t, c, src, "c")
	if got := mustPID(t, c.Dir); got == pid {
		t.Fatal("no new daemon after the old one exited")
	}
	count(t, c, 1)
}

// TestNotifyWithoutStart: a DEL with no daemon is fine, and creates no
// state directory.
func TestNotifyWithoutStart(t *testing.T) {
	c, _ := newClient(t)
	if err := c.Notify(testReq{Op: "del", Name: "a"}, false); err != nil {
		t.Fatalf("Notify without a daemon, without start: %v", err)
	}
	if _, err := os.Stat(c.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state directory: %v, want none", err)
	}
}

// TestRestartAfterCrash: a daemon killed with SIGKILL (socket and pid file
// left behind) is restarted by the next Notify with the whole state.
func TestRestartAfterCrash(t *testing.T) {
	c, src := newClient(t)
	add(t, c, src, "a")
	add(t, c, src, "b")
	old := mustPID(t, c.Dir)
	kill(old)
	if err := c.Send(testReq{Op: "count", N: 2}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after the crash: got %v, want ErrNotRunning", err)
	}
	add(t, c, src, "c")
	if mustPID(t, c.Dir) == old {
		t.Fatal("not restarted")
	}
	count(t, c, 3) // a and b from Load, c from Load or the request
}

// TestConcurrentStart: many plugins at once with no daemon start exactly
// one, and every change reaches it.
func TestConcurrentStart(t *testing.T) {
	c, src := newClient(t)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := "n" + strconv.Itoa(i)
			src.set(name, true)
			errs <- c.Notify(testReq{Op: "add", Name: name}, true)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	count(t, c, n)
	// One daemon: its pid holds the life lock, and it is the only child
	// of this process still running.
	pid := mustPID(t, c.Dir)
	var others []int
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err != nil || p <= 0 {
			break
		}
		others = append(others, p)
	}
	if len(others) > 0 {
		t.Fatalf("daemons that exited (started in vain): %v; serving: %d", others, pid)
	}
}

// TestStartupError: a daemon that cannot start says why, and Notify
// returns it.
func TestStartupError(t *testing.T) {
	c, src := newClient(t, envFail+"=cannot bind the thing")
	src.set("a", true)
	err := c.Notify(testReq{Op: "add", Name: "a"}, true)
	if err == nil || !strings.Contains(err.Error(), "cannot bind the thing") {
		t.Fatalf("got %v, want the daemon's startup error", err)
	}
	// Reap it (every other daemon of this process is reaped by its test).
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(-1, &ws, 0, nil)
}

// TestWaitsForExitingDaemon: a daemon started while another still holds
// the life lock (it is exiting) serves only once that one is gone.
func TestWaitsForExitingDaemon(t *testing.T) {
	c, src := newClient(t)
	if err := os.MkdirAll(c.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := os.OpenFile(c.lifeLock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(old.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	src.set("a", true)
	done := make(chan error, 1)
	go func() { done <- c.Notify(testReq{Op: "add", Name: "a"}, true) }()
	// The new daemon cannot have listened: it waits on the lock we hold.
	// Releasing it lets the start finish.
	if _, err := os.Stat(c.Socket()); err == nil {
		t.Fatal("control socket exists while the old daemon holds the life lock")
	}
	old.Close()
	if err := <-done; err != nil {
		t.Fatalf("Notify once the old daemon is gone: %v", err)
	}
	count(t, c, 1)
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "some-daemon")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CNI_PATH", "/nonexistent"+string(os.PathListSeparator)+dir)
	if got, err := Find("some-daemon"); err != nil || got != bin {
		t.Fatalf("Find in CNI_PATH: got %q, %v; want %q", got, err, bin)
	}
	if _, err := Find("not-there"); err == nil || !strings.Contains(err.Error(), "/nonexistent") {
		t.Fatalf("Find of a missing binary: got %v, want an error naming where it looked", err)
	}
}
