package hostd

// The daemon side: the life lock, the pid file, readiness, the control
// socket and shutdown.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/flock"
)

// Handler applies one request (a JSON line, without the newline). nil is
// answered "ok", ErrExiting "exiting", any other error "err <message>".
// Handlers run concurrently, one goroutine per connection.
type Handler func(req []byte) error

// Daemon is the running daemon's side of the lifecycle.
type Daemon struct {
	dir  Dir
	log  *log.Logger
	life *os.File
	ctl  net.Listener

	once sync.Once
	done chan struct{}
}

// Lock takes the daemon's life lock, waiting until a previous daemon of
// dir that is still exiting is gone, and writes the pid file. The state
// directory must exist (the client makes it).
func Lock(dir Dir, logger *log.Logger) (*Daemon, error) {
	life, err := flock.Open(dir.lifeLock(), os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("life lock: %w", err)
	}
	d := &Daemon{dir: dir, log: logger, life: life, done: make(chan struct{})}
	if err := atomicfile.Write(dir.PIDFile(), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		life.Close()
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return d, nil
}

// Listen opens the control socket (0600). Call it once the state is
// loaded: a client that connects is served from then on.
func (d *Daemon) Listen() error {
	// A socket left by a crashed daemon; we hold the life lock, so it is
	// not a live one's.
	_ = os.Remove(d.dir.Socket())
	ctl, err := net.Listen("unix", d.dir.Socket())
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(d.dir.Socket(), 0o600); err != nil {
		ctl.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	d.ctl = ctl
	return nil
}

// Serve answers requests with h until Shutdown, and returns once Shutdown
// is done. SIGTERM and SIGINT call stop, which must end in Shutdown (nil:
// Shutdown itself); stop is where the daemon takes its own locks around its
// own shutdown.
func (d *Daemon) Serve(h Handler, stop func()) {
	if stop == nil {
		stop = d.Shutdown
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	go func() {
		select {
		case v := <-sig:
			d.log.Printf("%v: shutting down", v)
			stop()
		case <-d.done:
		}
	}()
	for d.ctl != nil {
		conn, err := d.ctl.Accept()
		if err != nil {
			break // closed by Shutdown
		}
		go d.handle(conn, h)
	}
	<-d.done
}

func (d *Daemon) handle(conn net.Conn, h Handler) {
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return
	}
	err = h(line[:len(line)-1])
	switch {
	case err == nil:
		fmt.Fprintln(conn, replyOK)
	case errors.Is(err, ErrExiting):
		fmt.Fprintln(conn, replyExiting)
	default:
		// One line: the protocol's framing.
		fmt.Fprintln(conn, replyErr+strings.ReplaceAll(err.Error(), "\n", " "))
	}
}

// Shutdown closes the control socket (unlinking it), removes the pid file
// and releases the life lock, so that a new daemon can start. Call it once
// everything a new daemon would need (its listening sockets) is closed.
// Safe to call more than once, and on a Daemon that never listened.
func (d *Daemon) Shutdown() {
	d.once.Do(func() {
		if d.ctl != nil {
			d.ctl.Close()
		}
		os.Remove(d.dir.PIDFile())
		d.life.Close()
		close(d.done)
	})
}

// Done is closed by Shutdown.
func (d *Daemon) Done() <-chan struct{} { return d.done }

var readyOnce sync.Once

// Ready tells the client that started the daemon (through fd 3) that it is
// serving (nil) or why it is not (err, which the client returns). Only the
// first call counts; without a client (run by hand, fd 3 is no pipe) it
// does nothing.
func Ready(err error) {
	readyOnce.Do(func() {
		var st unix.Stat_t
		if unix.Fstat(3, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return
		}
		f := os.NewFile(3, "ready")
		defer f.Close()
		msg := replyOK
		if err != nil {
			msg = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		_, _ = io.WriteString(f, msg+"\n")
	})
}
