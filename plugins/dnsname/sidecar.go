package main

// The sidecar: one DNS server per host (per dataDir), serving every
// network's gateway address. One per host rather than one per network
// because it costs one process and one memory footprint however many
// networks there are, scoping by the asker's address already keeps the
// networks apart, and a single control socket keeps starting, crash
// recovery and shutdown in one place.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"

	"github.com/miekg/dns"

	bdns "github.com/berthnet/berth/pkg/dns"
	"github.com/berthnet/berth/pkg/registry"
)

// IsSidecar reports whether this process was started as the sidecar.
func IsSidecar() bool {
	_, ok := os.LookupEnv(sidecarEnv)
	return ok
}

// RunSidecar is the sidecar's main; it returns the exit code.
func RunSidecar() int {
	// fd 3 is the readiness pipe to the plugin that started us.
	ready := os.NewFile(3, "ready")
	fail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		if ready != nil {
			fmt.Fprintln(ready, msg)
			ready.Close()
		}
		return 1
	}
	var sc sidecarConfig
	if err := json.Unmarshal([]byte(os.Getenv(sidecarEnv)), &sc); err != nil {
		return fail("bad %s: %v", sidecarEnv, err)
	}
	if err := os.MkdirAll(filepath.Dir(sc.LogFile), 0o700); err != nil {
		return fail("log file: %v", err)
	}
	lf, err := os.OpenFile(sc.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail("log file: %v", err)
	}
	defer lf.Close()
	logger := log.New(lf, "dnsname["+strconv.Itoa(os.Getpid())+"]: ", log.LstdFlags|log.Lmicroseconds)

	// A small heap matters more here than GC CPU: the server holds little.
	debug.SetGCPercent(50)

	s, err := newSidecar(sc, logger)
	if err != nil {
		logger.Print(err)
		return fail("%v", err)
	}
	logger.Printf("serving %d names on %v", s.table.Len(), s.server.Addrs())
	fmt.Fprintln(ready, "ok")
	ready.Close()
	return s.run()
}

type sidecar struct {
	sc       sidecarConfig
	log      *log.Logger
	store    registry.Store
	table    *bdns.Table
	server   *bdns.Server
	resolver *bdns.Resolver
	ctl      net.Listener
	life     *os.File

	mu      sync.Mutex // serializes control requests
	exiting bool
	done    chan struct{}
}

func newSidecar(sc sidecarConfig, logger *log.Logger) (*sidecar, error) {
	s := &sidecar{sc: sc, log: logger, table: bdns.NewTable(), done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	// Held for life: a new sidecar started while an old one is exiting
	// waits here until the old one is gone (the kernel drops the lock when
	// it exits, even by SIGKILL).
	var err error
	s.life, err = os.OpenFile(sc.lifeLock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(s.life.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := writeFileAtomic(sc.pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return nil, err
	}
	s.store, err = registry.Open(sc.Registry)
	if err != nil {
		return nil, err
	}
	s.resolver = &bdns.Resolver{Table: s.table, Forwarder: &bdns.Forwarder{}, ErrorLog: logger}
	if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
		for _, srv := range cc.Servers {
			if a, err := netip.ParseAddr(srv); err == nil {
				port, _ := strconv.Atoi(cc.Port)
				s.resolver.Upstreams = append(s.resolver.Upstreams, netip.AddrPortFrom(a, uint16(port)))
			}
		}
	}
	s.server = &bdns.Server{Handler: s.resolver, Port: 53, ErrorLog: logger}
	// The registry is the truth: after a crash, everything comes back.
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	nets, err := s.store.Networks(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if err := s.reload(ctx, n); err != nil {
			return nil, err
		}
	}
	if err := s.server.Listen(s.table.Gateways()); err != nil {
		// Logged by the server; the affected networks' requests fail.
		logger.Printf("listen: %v", err)
	}
	_ = os.Remove(sc.socket()) // stale after a crash; we hold the life lock
	s.ctl, err = net.Listen("unix", sc.socket())
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(sc.socket(), 0o600); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ok = true
	return s, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// run serves control requests until the last name is gone or a signal.
func (s *sidecar) run() int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case v := <-sig:
			s.log.Printf("%v: shutting down", v)
			s.mu.Lock()
			s.shutdown()
			s.mu.Unlock()
		case <-s.done:
		}
	}()
	for {
		conn, err := s.ctl.Accept()
		if err != nil {
			break
		}
		go s.handle(conn)
	}
	<-s.done
	s.log.Print("exited")
	return 0
}

func (s *sidecar) handle(conn net.Conn) {
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		fmt.Fprintf(conn, "err bad request: %v\n", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exiting {
		fmt.Fprintln(conn, "exiting")
		return
	}
	if err := s.apply(req); err != nil {
		s.log.Printf("%s %s %s/%s: %v", req.Op, req.Network, req.ContainerID, req.IfName, err)
		fmt.Fprintf(conn, "err %v\n", err)
		return
	}
	if s.table.Len() == 0 {
		// The last name of the last network is gone: leave nothing
		// running. The listeners close before the reply, so when DEL
		// returns nothing answers any more.
		s.log.Print("no names left: exiting")
		s.shutdown()
	}
	fmt.Fprintln(conn, "ok")
}

func (s *sidecar) apply(req request) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	switch req.Op {
	case opPut:
		e, err := s.store.Get(ctx, req.Network, req.ContainerID, req.IfName)
		if errors.Is(err, registry.ErrNotFound) {
			// Deleted again meanwhile (an undone ADD): the same as del.
			s.table.Remove(req.Network, entryKey(req.ContainerID, req.IfName))
			return s.listen()
		}
		if err != nil {
			return err
		}
		n, rec := fromEntry(e)
		s.table.Set(n, rec)
		if err := s.listen(); err != nil {
			return err
		}
		return s.served(e.Gateways)
	case opDel:
		s.table.Remove(req.Network, entryKey(req.ContainerID, req.IfName))
		return s.listen()
	case opReload:
		if err := s.reload(ctx, req.Network); err != nil {
			return err
		}
		return s.listen()
	}
	return fmt.Errorf("unknown op %q", req.Op)
}

func (s *sidecar) listen() error {
	if s.table.Len() == 0 {
		return nil // about to exit
	}
	return s.server.Listen(s.table.Gateways())
}

// served checks that the server listens on every gateway.
func (s *sidecar) served(gws []netip.Addr) error {
	have := map[netip.Addr]bool{}
	for _, a := range s.server.Addrs() {
		have[a.Addr()] = true
	}
	for _, g := range gws {
		if !have[g] {
			return fmt.Errorf("not listening on %s port 53 (see %s)", g, s.sc.LogFile)
		}
	}
	return nil
}

func (s *sidecar) reload(ctx context.Context, network string) error {
	entries, err := s.store.List(ctx, network)
	if err != nil {
		return err
	}
	var n bdns.Network
	recs := make([]bdns.Record, 0, len(entries))
	for _, e := range entries {
		var rec bdns.Record
		n, rec = fromEntry(e)
		recs = append(recs, rec)
	}
	n.Name = network
	s.table.ReplaceNetwork(n, recs)
	return nil
}

func entryKey(containerID, ifName string) string { return containerID + "@" + ifName }

func fromEntry(e *registry.Entry) (bdns.Network, bdns.Record) {
	n := bdns.Network{Name: e.Network, Domain: e.DNS.Domain, Internal: e.DNS.Internal}
	for _, u := range e.DNS.Upstreams {
		if ap, err := parseUpstream(u); err == nil {
			n.Upstreams = append(n.Upstreams, ap)
		}
	}
	return n, bdns.Record{
		Key: entryKey(e.ContainerID, e.IfName), Names: e.Names, Aliases: e.Aliases,
		Addrs: e.IPs, Gateways: e.Gateways,
	}
}

// shutdown stops taking requests and queries; called with s.mu held.
func (s *sidecar) shutdown() {
	if s.exiting {
		return
	}
	s.exiting = true
	s.close()
	close(s.done)
}

func (s *sidecar) close() {
	if s.ctl != nil {
		s.ctl.Close() // also unlinks the socket
	}
	if s.server != nil {
		s.server.Shutdown()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.life != nil {
		os.Remove(s.sc.pidFile())
		// The lock goes with the process; closing early would let a new
		// sidecar in before our sockets are closed, which they now are.
		s.life.Close()
	}
}
