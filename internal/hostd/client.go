package hostd

// The plugin side: start the daemon when needed and send it each change,
// synchronously.

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

// DefaultTimeout bounds one request, and a daemon's start, when
// Client.Timeout is zero. A daemon answers in microseconds unless something
// is badly wrong.
const DefaultTimeout = 10 * time.Second

// Client talks to the daemon of one state directory; R is its request type,
// sent as JSON.
type Client[R any] struct {
	Dir
	// Binary is the daemon's file name, looked up by Find.
	Binary string
	// Env is the daemon's whole environment (its configuration, say);
	// PATH is added.
	Env []string
	// LogFile is where the daemon logs, named in startup errors.
	LogFile string
	// Load returns the whole state, as requests streamed to a daemon being
	// started. It runs under the start lock, so every change made after it
	// is also sent to the daemon it starts.
	Load func() ([]R, error)
	// Timeout bounds one request and a start; DefaultTimeout if zero.
	Timeout time.Duration
}

func (c *Client[R]) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Notify sends req to the daemon. With start, a missing (or exiting, or
// crashed) daemon is started first; without, a missing one is fine: it will
// get the whole state when it next starts.
func (c *Client[R]) Notify(req R, start bool) error {
	err := c.Send(req)
	if !errors.Is(err, ErrNotRunning) {
		return err
	}
	// A daemon being started loads the state under the start lock, and
	// that load may predate our change; once the lock is ours, the start
	// is over, so ask again: either it is running now and takes req, or
	// nobody is and the next start's load includes our change.
	unlock, err := c.lockStart(start)
	if err != nil {
		return err
	}
	defer unlock()
	err = c.Send(req)
	switch {
	case !errors.Is(err, ErrNotRunning):
		return err
	case !start:
		return nil
	}
	if err := c.start(); err != nil {
		return err
	}
	// The fresh daemon loaded the whole state, this change included, but
	// the request also confirms it is served.
	return c.Send(req)
}

// lockStart takes the start lock. Without create, a missing lock file
// means no daemon was ever started here (a DEL without ADD must not create
// the state directory), and a no-op unlock is returned.
func (c *Client[R]) lockStart(create bool) (func(), error) {
	flags := 0
	if create {
		if err := os.MkdirAll(c.Path, 0o700); err != nil {
			return nil, err
		}
		flags = os.O_CREATE
	}
	lock, err := flock.Open(c.startLock(), flags)
	if !create && errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	return func() { lock.Close() }, nil
}

// Send sends req to a running daemon, without starting one: ErrNotRunning
// when there is none, or it is exiting.
func (c *Client[R]) Send(req R) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	conn, err := net.DialTimeout("unix", c.Socket(), c.timeout())
	if err != nil {
		// ENOENT: never started or exited; ECONNREFUSED: crashed.
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(c.timeout()))
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			// It died or exited between accepting and answering.
			return fmt.Errorf("%w: %v", ErrNotRunning, err)
		}
		return err
	}
	line = strings.TrimSpace(line)
	switch {
	case line == replyOK:
		return nil
	case line == replyExiting:
		return fmt.Errorf("%w: it is exiting", ErrNotRunning)
	default:
		return errors.New(strings.TrimPrefix(line, replyErr))
	}
}

// Find returns the path of binary: next to the running executable (where
// `make install` and every runtime's CNI directory put berth's binaries),
// else in one of CNI_PATH's directories.
func Find(binary string) (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), binary)
		if isExec(p) {
			return p, nil
		}
		tried = append(tried, filepath.Dir(exe))
	}
	for _, d := range filepath.SplitList(os.Getenv("CNI_PATH")) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, binary)
		if isExec(p) {
			return p, nil
		}
		tried = append(tried, d)
	}
	return "", fmt.Errorf("%s not found in %s: install it beside the plugins", binary, strings.Join(tried, ", "))
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// start starts the daemon, with the start lock held. It streams Load's
// requests on the daemon's stdin and waits for its readiness (or startup
// error) on a pipe.
//
// An old daemon may still be exiting (it answered "exiting"): the new one
// waits for it to be gone on the life lock before it listens.
func (c *Client[R]) start() error {
	var state []R
	if c.Load != nil {
		var err error
		if state, err = c.Load(); err != nil {
			return fmt.Errorf("loading state: %w", err)
		}
	}
	exe, err := Find(c.Binary)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(append([]string(nil), c.Env...), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	// Its stdout and stderr are /dev/null (exec's default for nil): libcni
	// waits for EOF on the plugin's stdout and stderr, so the daemon must
	// not hold them. Setsid detaches it from the runtime's session and
	// signals.
	cmd.ExtraFiles = []*os.File{w} // fd 3: readiness
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		w.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting %s: %w", exe, err)
	}
	w.Close()
	// The daemon outlives us; not waiting for it is deliberate (init, or
	// the runtime's subreaper, reaps it).
	defer func() { _ = cmd.Process.Release() }()
	// Written while we wait for readiness, whose deadline also bounds a
	// daemon that never reads (one stuck behind an old one's life lock).
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
	_ = r.SetReadDeadline(time.Now().Add(c.timeout()))
	msg, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("waiting for %s to start: %w (log: %s)", c.Binary, err, c.LogFile)
	}
	if s := strings.TrimSpace(string(msg)); s != replyOK {
		if s == "" {
			s = "exited during startup"
			select {
			case werr := <-written:
				if werr != nil {
					s += fmt.Sprintf(" (sending it its state: %v)", werr)
				}
			default:
			}
		}
		return fmt.Errorf("%s: %s (log: %s)", c.Binary, s, c.LogFile)
	}
	return nil
}
