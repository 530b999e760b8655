package main

// The plugin side of the sidecar: start it when needed and tell it about
// each change, synchronously, so that a name resolves the moment ADD
// returns and is gone the moment DEL returns.
//
// The sidecar is this same binary, re-executed with sidecarEnv set: the
// runtime only ever installs the plugin binaries in its CNI path, so a
// separate server binary would have to be found and kept in step with
// them; re-executing /proc/self/exe needs neither.

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

	"github.com/berthnet/berth/pkg/registry"
)

// sidecarEnv carries the sidecar's JSON config; its presence makes the
// binary run as the sidecar instead of as a CNI plugin.
const sidecarEnv = "BERTH_DNSNAME_SIDECAR"

// sidecarConfig is what the sidecar needs to know.
type sidecarConfig struct {
	DataDir  string          `json:"dataDir"`
	LogFile  string          `json:"logFile"`
	Registry registry.Config `json:"registry"`
}

// Files in DataDir.
func (s sidecarConfig) socket() string    { return filepath.Join(s.DataDir, "control.sock") }
func (s sidecarConfig) pidFile() string   { return filepath.Join(s.DataDir, "sidecar.pid") }
func (s sidecarConfig) lifeLock() string  { return filepath.Join(s.DataDir, "sidecar.lock") }
func (s sidecarConfig) startLock() string { return filepath.Join(s.DataDir, "start.lock") }

// Control protocol: one JSON request per line, one reply line: "ok",
// "exiting" (the sidecar is shutting down and did not apply the request)
// or "err <message>".
type request struct {
	Op          string `json:"op"`
	Network     string `json:"network"`
	ContainerID string `json:"containerID,omitempty"`
	IfName      string `json:"ifName,omitempty"`
}

const (
	opPut    = "put"    // (re)load one entry from the registry
	opDel    = "del"    // forget one entry
	opReload = "reload" // reload a whole network from the registry (GC)
)

// errNotRunning: no sidecar is there to take the request.
var errNotRunning = errors.New("dns sidecar not running")

// controlTimeout bounds one request; the sidecar answers in microseconds
// unless something is badly wrong.
const controlTimeout = 10 * time.Second

// notify sends req to the sidecar. With start, a missing (or exiting, or
// crashed) sidecar is started first; without, a missing one is fine: it
// will load the registry when it next starts.
func notify(sc sidecarConfig, req request, start bool) error {
	err := send(sc, req)
	if !errors.Is(err, errNotRunning) {
		return err
	}
	if !start {
		return nil
	}
	if err := ensureSidecar(sc); err != nil {
		return err
	}
	// A fresh sidecar loaded the whole registry, this entry included, but
	// the request also confirms it is served.
	return send(sc, req)
}

func send(sc sidecarConfig, req request) error {
	conn, err := net.DialTimeout("unix", sc.socket(), controlTimeout)
	if err != nil {
		// ENOENT: never started or exited; ECONNREFUSED: crashed.
		return fmt.Errorf("%w: %v", errNotRunning, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(controlTimeout))
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%w: %v", errNotRunning, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			// It died or exited between accepting and answering.
			return fmt.Errorf("%w: %v", errNotRunning, err)
		}
		return fmt.Errorf("dns sidecar: %w", err)
	}
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		return nil
	case line == "exiting":
		return fmt.Errorf("%w: it is exiting", errNotRunning)
	default:
		return fmt.Errorf("dns sidecar: %s", strings.TrimPrefix(line, "err "))
	}
}

// ensureSidecar starts the sidecar unless another plugin process just did.
// Starters serialize on start.lock; the sidecar reports readiness (or its
// startup error) on a pipe, so nobody sleeps or polls.
func ensureSidecar(sc sidecarConfig) error {
	if err := os.MkdirAll(sc.DataDir, 0o700); err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	lock, err := os.OpenFile(sc.startLock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("dns sidecar: lock: %w", err)
	}
	// Someone may have started it while we waited for the lock.
	if conn, err := net.Dial("unix", sc.socket()); err == nil {
		conn.Close()
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dns sidecar: finding own binary: %w", err)
	}
	cfg, _ := json.Marshal(sc)
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Args = []string{"berth-dnsname-sidecar"}
	cmd.Env = []string{sidecarEnv + "=" + string(cfg), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	// Its stdio is /dev/null (exec's default for nil): libcni waits for EOF
	// on the plugin's stdout and stderr, so the sidecar must not hold them.
	// Setsid detaches it from the runtime's session and signals.
	cmd.ExtraFiles = []*os.File{w} // fd 3: readiness
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("dns sidecar: starting %s: %w", exe, err)
	}
	w.Close()
	_ = r.SetReadDeadline(time.Now().Add(controlTimeout))
	msg, err := io.ReadAll(r)
	// The sidecar outlives us; not waiting for it is deliberate (init, or
	// the runtime's subreaper, reaps it).
	_ = cmd.Process.Release()
	if err != nil {
		return fmt.Errorf("dns sidecar: waiting for it to start: %w (log: %s)", err, sc.LogFile)
	}
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		if s == "" {
			s = "exited during startup"
		}
		return fmt.Errorf("dns sidecar: %s (log: %s)", s, sc.LogFile)
	}
	return nil
}
