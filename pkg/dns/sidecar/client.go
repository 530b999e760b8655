package sidecar

// The plugin side: start the sidecar when needed and tell it about each
// change, synchronously, so that a name resolves the moment ADD returns
// and is gone the moment DEL returns.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berthnet/berth/internal/flock"
)

// ErrNotRunning: no sidecar is there to take the request.
var ErrNotRunning = errors.New("dns sidecar not running")

// controlTimeout bounds one request; the sidecar answers in microseconds
// unless something is badly wrong.
const controlTimeout = 10 * time.Second

// Client talks to the sidecar of one data directory.
type Client struct {
	Config
	// Load returns the registry's whole contents, as replace requests,
	// for a sidecar being started. It runs under the start lock, so every
	// change made after it is also sent to the sidecar it starts.
	Load func() ([]Request, error)
}

// Notify sends req to the sidecar. With start, a missing (or exiting, or
// crashed) sidecar is started first; without, a missing one is fine: it
// will get the registry's contents when it next starts.
func (c *Client) Notify(req Request, start bool) error {
	err := c.send(req)
	if !errors.Is(err, ErrNotRunning) {
		return err
	}
	// A sidecar being started loads the registry under the start lock, and
	// that load may predate our change; once the lock is ours, the start
	// is over, so ask again: either it is running now and takes req, or
	// nobody is and the next start's load includes our change.
	unlock, err := c.lockStart(start)
	if err != nil {
		return err
	}
	defer unlock()
	err = c.send(req)
	switch {
	case !errors.Is(err, ErrNotRunning):
		return err
	case !start:
		return nil
	}
	if err := c.start(); err != nil {
		return err
	}
	// The fresh sidecar loaded the whole registry, this change included,
	// but the request also confirms it is served.
	return c.send(req)
}

// lockStart takes the start lock. Without create, a missing lock file
// means no sidecar was ever started here (DEL without ADD must not create
// the data directory), and a no-op unlock is returned.
func (c *Client) lockStart(create bool) (func(), error) {
	flags := 0
	if create {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("dns sidecar: %w", err)
		}
		flags |= os.O_CREATE
	}
	lock, err := flock.Open(c.startLock(), flags)
	if !create && errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dns sidecar: %w", err)
	}
	return func() { lock.Close() }, nil
}

func (c *Client) send(req Request) error {
	conn, err := net.DialTimeout("unix", c.socket(), controlTimeout)
	if err != nil {
		// ENOENT: never started or exited; ECONNREFUSED: crashed.
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(controlTimeout))
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("dns sidecar: encoding request: %w", err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			// It died or exited between accepting and answering.
			return fmt.Errorf("%w: %v", ErrNotRunning, err)
		}
		return fmt.Errorf("dns sidecar: %w", err)
	}
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		return nil
	case line == "exiting":
		return fmt.Errorf("%w: it is exiting", ErrNotRunning)
	default:
		return fmt.Errorf("dns sidecar: %s", strings.TrimPrefix(line, "err "))
	}
}

// Find returns the sidecar binary: next to the running plugin (where
// `make install` and every runtime's CNI directory put it), else in one of
// CNI_PATH's directories.
func Find() (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), Binary)
		if isExec(p) {
			return p, nil
		}
		tried = append(tried, filepath.Dir(exe))
	}
	for _, d := range filepath.SplitList(os.Getenv("CNI_PATH")) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, Binary)
		if isExec(p) {
			return p, nil
		}
		tried = append(tried, d)
	}
	return "", fmt.Errorf("dns sidecar: %s not found in %s: install it beside the dnsname plugin", Binary, strings.Join(tried, ", "))
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// start starts the sidecar, with the start lock held. It streams Load's
// requests on the sidecar's stdin; the sidecar reports readiness (or its
// startup error) on a pipe, so nobody sleeps or polls.
//
// An old sidecar may still be exiting (it answered "exiting"): the new one
// waits for it to be gone on the life lock before it listens.
func (c *Client) start() error {
	var state []Request
	if c.Load != nil {
		var err error
		if state, err = c.Load(); err != nil {
			return fmt.Errorf("dns sidecar: loading registry: %w", err)
		}
	}
	exe, err := Find()
	if err != nil {
		return err
	}
	cfg, err := json.Marshal(c.Config)
	if err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{ConfigEnv + "=" + string(cfg), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	// Its stdout and stderr are /dev/null (exec's default for nil): libcni
	// waits for EOF on the plugin's stdout and stderr, so the sidecar must
	// not hold them. Setsid detaches it from the runtime's session and
	// signals.
	cmd.ExtraFiles = []*os.File{w} // fd 3: readiness
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		w.Close()
		return fmt.Errorf("dns sidecar: %w", err)
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("dns sidecar: starting %s: %w", exe, err)
	}
	w.Close()
	// The sidecar outlives us; not waiting for it is deliberate (init, or
	// the runtime's subreaper, reaps it).
	defer func() { _ = cmd.Process.Release() }()
	// Written while we wait for readiness, whose deadline also bounds a
	// sidecar that never reads (one stuck behind an old one's life lock).
	written := make(chan error, 1)
	go func() {
		enc := json.NewEncoder(stdin)
		var err error
		for _, req := range state {
			if err = enc.Encode(req); err != nil {
				break
			}
		}
		stdin.Close()
		written <- err
	}()
	_ = r.SetReadDeadline(time.Now().Add(controlTimeout))
	msg, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("dns sidecar: waiting for it to start: %w (log: %s)", err, c.LogFile)
	}
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		if s == "" {
			s = "exited during startup"
			select {
			case werr := <-written:
				if werr != nil {
					s += fmt.Sprintf(" (sending it the registry: %v)", werr)
				}
			default:
			}
		}
		return fmt.Errorf("dns sidecar: %s (log: %s)", s, c.LogFile)
	}
	return nil
}
