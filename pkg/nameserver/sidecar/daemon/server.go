// Package daemon is the dnsname sidecar's server side: the process
// cmd/dnsname-sidecar runs. It is apart from package sidecar (the
// requests and the client the plugin uses) because it follows etcd, and a
// binary that links the etcd client pays ~2-3 ms of package init (gRPC,
// protobuf) at every start: the dnsname plugin must not link it.
package daemon

// The sidecar: one DNS server per host (per data directory), serving every
// network's gateway address. One per host rather than one per network
// because it costs one process and one memory footprint however many
// networks there are, scoping by the asker's address already keeps the
// networks apart, and a single control socket keeps starting, crash
// recovery and shutdown in one place.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/berthnet/berth/internal/hostd"
	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
	"github.com/berthnet/berth/pkg/registry"
)

// Main is the sidecar binary's main; it returns the exit code. The plugin
// starts it with ConfigEnv set, the registry's contents as requests on
// stdin and a readiness pipe on fd 3.
func Main() int {
	var c sidecar.Config
	logger, closeLog, err := hostd.Startup(sidecar.ConfigEnv, sidecar.Binary, "the DNS server the dnsname plugin starts", &c, func() string { return c.LogFile })
	if err != nil {
		return 1
	}
	defer closeLog()

	// A small heap matters more here than GC CPU: the server holds little.
	debug.SetGCPercent(50)

	s, err := newServer(c, logger, os.Stdin)
	if err != nil {
		logger.Print(err)
		hostd.Ready(err)
		return 1
	}
	logger.Printf("serving %d names (%d local) on %v", s.table.Len(), s.table.LocalLen(), s.server.Addrs())
	hostd.Ready(nil)
	return s.run()
}

type server struct {
	cfg      sidecar.Config
	log      *log.Logger
	table    *nameserver.Table
	server   *nameserver.Server
	resolver *nameserver.Resolver
	daemon   *hostd.Daemon

	self     string // this host's name (registry.Entry.Host)
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // etcd watches
	mu       sync.Mutex     // serializes changes to the table
	watches  map[string]*watch
	progress chan struct{} // closed and replaced when a watch applies a revision
	exiting  bool
	idle     int // bumped each time the last name goes: a linger timer acts only on its own
}

func newServer(c sidecar.Config, logger *log.Logger, state io.Reader) (*server, error) {
	s := &server{cfg: c, log: logger, table: nameserver.NewTable(), watches: map[string]*watch{}, progress: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var err error
	if s.self, err = os.Hostname(); err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	// A new sidecar started while an old one is exiting waits here until
	// the old one is gone.
	if s.daemon, err = hostd.Lock(c.Dir(), logger); err != nil {
		return nil, err
	}
	s.resolver = &nameserver.Resolver{Table: s.table, Forwarder: &nameserver.Forwarder{}, ErrorLog: logger}
	rc := c.ResolvConf
	if rc == "" {
		rc = "/etc/resolv.conf"
	}
	if cc, err := dns.ClientConfigFromFile(rc); err == nil {
		for _, srv := range cc.Servers {
			if a, err := netip.ParseAddr(srv); err == nil {
				port, _ := strconv.Atoi(cc.Port)
				s.resolver.Upstreams = append(s.resolver.Upstreams, netip.AddrPortFrom(a, uint16(port)))
			}
		}
	}
	s.server = &nameserver.Server{Handler: s.resolver, Port: 53, ErrorLog: logger}
	// The registry is the truth: after a crash, everything comes back. The
	// plugin that started us streams it here.
	dec := json.NewDecoder(state)
	for {
		var req sidecar.Request
		if err := dec.Decode(&req); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading the registry from stdin: %w", err)
		}
		s.mu.Lock()
		err := s.apply(req)
		s.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", req.Network.Name, err)
		}
	}
	if err := s.server.Listen(s.table.Gateways()); err != nil {
		// Logged by the server; the affected networks' requests fail.
		logger.Printf("listen: %v", err)
	}
	if err := s.daemon.Listen(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// run serves control requests until the last name is gone or a signal.
func (s *server) run() int {
	s.daemon.Serve(s.handle, func() {
		s.mu.Lock()
		s.shutdown()
		s.mu.Unlock()
	})
	s.wg.Wait() // the watches, stopped by shutdown
	s.log.Print("exited")
	return 0
}

// handle applies one control request (a hostd.Handler).
func (s *server) handle(line []byte) error {
	var req sidecar.Request
	if err := json.Unmarshal(line, &req); err != nil {
		return fmt.Errorf("bad request: %w", err)
	}
	if req.Op == sidecar.OpSync {
		// Not under s.mu: the watches need it to make progress.
		if err := s.waitApplied(req.Network.Name, req.Revision); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exiting {
		return hostd.ErrExiting
	}
	err := s.apply(req)
	if err == nil {
		err = s.listen(req)
	}
	if err != nil {
		s.log.Printf("%s %s %s: %v", req.Op, req.Network.Name, req.Key, err)
		return err
	}
	if s.table.LocalLen() == 0 {
		// The last name of the last network is gone (names of other
		// hosts' containers serve nobody here). The listeners close
		// before the reply, so when DEL returns nothing answers any
		// more; the process stays for linger in case a name comes back
		// (podman run --rm, one container after another on a network of
		// its own: starting the sidecar again cost each ADD 7-10 ms),
		// and then leaves nothing running.
		if err := s.server.Listen(nil); err != nil {
			s.log.Printf("closing the listeners: %v", err)
		}
		s.idle++
		gen := s.idle
		s.log.Printf("no names left: exiting unless one comes within %v", linger)
		time.AfterFunc(linger, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.idle == gen && s.table.LocalLen() == 0 {
				s.log.Print("no names left: exiting")
				s.shutdown()
			}
		})
	}
	return nil
}

// linger is how long the sidecar outlives its last name: long enough for
// an engine's next container, short enough that nothing is left running a
// second after the last DEL.
const linger = 800 * time.Millisecond

// apply changes the table; called with s.mu held.
func (s *server) apply(req sidecar.Request) error {
	w := s.watches[req.Network.Name]
	if w == nil && req.Registry != nil && req.Registry.Backend == registry.BackendEtcd && (req.Op == sidecar.OpPut || req.Op == sidecar.OpReplace) {
		w = s.follow(req.Network, req.Registry, req.Records)
		if req.Op == sidecar.OpReplace {
			// The watch's initial state is this request's remote records.
			s.table.ReplaceNetwork(req.Network, req.Records)
			return nil
		}
	}
	switch req.Op {
	case sidecar.OpPut:
		if req.Record == nil {
			return fmt.Errorf("put without a record")
		}
		if req.Record.Remote && w != nil {
			return nil // the watch has it, in etcd's order
		}
		s.table.Set(req.Network, *req.Record)
	case sidecar.OpDel:
		s.table.Remove(req.Network.Name, req.Key)
		if w != nil {
			delete(w.remote, req.Key)
		}
	case sidecar.OpReplace:
		recs := req.Records
		if w != nil {
			recs = w.withRemote(recs)
		}
		s.table.ReplaceNetwork(req.Network, recs)
	default:
		return fmt.Errorf("unknown op %q", req.Op)
	}
	return nil
}

// listen brings the listeners in line with the table and, for a put,
// checks that the record's gateways are served before the plugin returns.
func (s *server) listen(req sidecar.Request) error {
	if s.table.LocalLen() == 0 {
		return nil // handle closes the listeners and starts the linger
	}
	if err := s.server.Listen(s.table.Gateways()); err != nil {
		return err
	}
	if req.Op != sidecar.OpPut {
		return nil
	}
	have := map[netip.Addr]bool{}
	for _, a := range s.server.Addrs() {
		have[a.Addr()] = true
	}
	for _, g := range req.Record.Gateways {
		if !have[g] {
			return fmt.Errorf("not listening on %s port 53 (see %s)", g, s.cfg.LogFile)
		}
	}
	return nil
}

// shutdown stops taking requests and queries; called with s.mu held.
func (s *server) shutdown() {
	if s.exiting {
		return
	}
	s.exiting = true
	s.close()
}

func (s *server) close() {
	s.cancel() // stops the etcd watches
	if s.server != nil {
		s.server.Shutdown()
	}
	if s.daemon != nil {
		// Last: releasing the life lock lets a new sidecar in, which must
		// find our DNS sockets closed.
		s.daemon.Shutdown()
	}
}
