// Package hostd runs the per-host daemons berth's plugins start on demand
// (the DNS sidecar today): processes that outlive the plugin that started
// them, serve every container of the host, and exit with the last one.
//
// The lifecycle lives here once, for every such daemon:
//
//   - A plugin sends each change as one JSON line on the daemon's control
//     socket (Client.Notify) and waits for the reply, so the change is in
//     effect when the plugin returns.
//   - No daemon (never started, exited, crashed): the plugin takes the
//     start lock, asks again (another plugin may have just started one),
//     and otherwise starts the daemon itself, streaming it the whole state
//     (Client.Load, read from the plugin's source of truth) on its stdin.
//     A crashed daemon is thus restarted, with its state, by the next
//     plugin call that needs it.
//   - The daemon reports readiness, or why it could not start, on a pipe
//     (fd 3; Ready), so nobody sleeps or polls.
//   - The daemon holds the life lock for as long as it runs (the kernel
//     drops it when it exits, even by SIGKILL): a new daemon started while
//     an old one is still exiting waits on it before taking over.
//   - When a request removes the last user, the daemon shuts down before
//     replying; requests that reach it while it exits are answered
//     "exiting" (ErrExiting), and the plugin starts a new one.
//
// Files in the state directory (Dir): control.sock, start.lock, and
// <name>.pid and <name>.lock (the life lock).
package hostd

import (
	"errors"
	"path/filepath"
)

// Dir is a daemon's state directory and name.
type Dir struct {
	// Path is the directory holding the socket, pid file and locks; the
	// client creates it (0700) when it first starts the daemon.
	Path string
	// Name names the pid file and life lock.
	Name string
}

// Socket is the control socket.
func (d Dir) Socket() string { return filepath.Join(d.Path, "control.sock") }

// PIDFile is where the running daemon writes its pid.
func (d Dir) PIDFile() string { return filepath.Join(d.Path, d.Name+".pid") }

func (d Dir) lifeLock() string  { return filepath.Join(d.Path, d.Name+".lock") }
func (d Dir) startLock() string { return filepath.Join(d.Path, "start.lock") }

// Replies, one line each.
const (
	replyOK      = "ok"
	replyExiting = "exiting"
	replyErr     = "err "
)

var (
	// ErrNotRunning: no daemon is there to take the request.
	ErrNotRunning = errors.New("not running")
	// ErrExiting, returned by a Handler, answers "exiting": the daemon is
	// shutting down and did not apply the request. The client takes it
	// for ErrNotRunning.
	ErrExiting = errors.New("exiting")
)
