package nameserver

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"syscall"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Server serves Handler over UDP and TCP on a set of addresses that can
// change while it runs (networks come and go). The zero value is usable
// once Handler is set.
type Server struct {
	// Handler answers the queries.
	Handler dns.Handler
	// Port is the port on every address: 53 in production. Zero picks a
	// free UDP port per address and the same number for TCP (tests).
	Port int
	// ErrorLog receives listener failures; nil discards them.
	ErrorLog *log.Logger
	// NotifyStartedFunc, if set, is called for each address once both its
	// UDP and TCP servers are accepting queries.
	NotifyStartedFunc func(netip.AddrPort)

	mu        sync.Mutex
	listeners map[netip.Addr]*listener
}

type listener struct {
	addr     netip.AddrPort
	udp, tcp *dns.Server
}

// Listen makes the server listen on exactly addrs: it starts what is new
// and stops what is no longer wanted. Sockets are bound with IP_FREEBIND,
// so an address that is not (yet) configured, such as a gateway whose IPv6
// duplicate address detection is still running, does not fail the call.
// Errors of individual addresses are joined; the others keep serving.
func (s *Server) Listen(addrs []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners == nil {
		s.listeners = map[netip.Addr]*listener{}
	}
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	for a, l := range s.listeners {
		if !want[a] {
			l.stop()
			delete(s.listeners, a)
		}
	}
	var errs []error
	for a := range want {
		if s.listeners[a] != nil {
			continue
		}
		l, err := s.start(a)
		if err != nil {
			errs = append(errs, err)
			if s.ErrorLog != nil {
				s.ErrorLog.Printf("listen on %s: %v", a, err)
			}
			continue
		}
		s.listeners[a] = l
		if s.NotifyStartedFunc != nil {
			s.NotifyStartedFunc(l.addr)
		}
	}
	return errors.Join(errs...)
}

// Addrs returns the addresses being served, with their ports.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(s.listeners))
	for _, l := range s.listeners {
		out = append(out, l.addr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

// Shutdown stops every listener.
func (s *Server) Shutdown() {
	_ = s.Listen(nil)
}

func freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "udp6" || network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func (s *Server) start(a netip.Addr) (*listener, error) {
	lc := net.ListenConfig{Control: freebind}
	ctx := context.Background()
	net4 := "4"
	if a.Is6() {
		net4 = "6"
	}
	pc, err := lc.ListenPacket(ctx, "udp"+net4, netip.AddrPortFrom(a, uint16(s.Port)).String())
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := lc.Listen(ctx, "tcp"+net4, net.JoinHostPort(a.String(), strconv.Itoa(port)))
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("tcp: %w", err)
	}
	l := &listener{addr: netip.AddrPortFrom(a, uint16(port))}
	l.udp = &dns.Server{PacketConn: pc, Handler: s.Handler}
	l.tcp = &dns.Server{Listener: ln, Handler: s.Handler}
	for _, srv := range []*dns.Server{l.udp, l.tcp} {
		started := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
		select {
		case <-started:
		case err := <-failed:
			l.stop()
			return nil, fmt.Errorf("serve %s: %w", l.addr, err)
		}
	}
	return l, nil
}

func (l *listener) stop() {
	for _, srv := range []*dns.Server{l.udp, l.tcp} {
		if srv == nil {
			continue
		}
		// Shutdown fails only for a server that never started; close its
		// socket ourselves then.
		if err := srv.Shutdown(); err != nil {
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
		}
	}
}
