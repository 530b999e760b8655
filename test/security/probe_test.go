package security

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// Ports of the probe servers every container runs.
const (
	tcpPort = 7000
	udpPort = 7001
)

// serveProbes runs a TCP and a UDP server on every address of n (both
// families) that answer with label, until cleanup.
func serveProbes(t testing.TB, n *nstest.NS, label string) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := n.Do(func(ns.NetNS) (err error) {
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", tcpPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", udpPort))
		return err
	}); err != nil {
		t.Fatalf("probe servers in %s: %v", n.Name, err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, label)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(label+"\n"), from)
		}
	}()
}

// probeTimeout bounds one probe: a blocked flow is one that gets no
// answer in that time. Positive flows run first (see expectFlows), so a
// path still being set up cannot pass for a blocked one.
const probeTimeout = 2 * time.Second

// probe reports whether from reaches addr with proto ("icmp", "tcp",
// "udp"): for TCP and UDP, whether the server on port (0: the probe
// servers' port) answered want.
func probe(from *nstest.NS, proto, addr string, port int, want string) (bool, error) {
	switch proto {
	case "icmp":
		_, err := from.Exec("ping", "-c", "1", "-W", fmt.Sprint(int(probeTimeout/time.Second)), addr)
		return err == nil, err
	case "tcp", "udp":
		switch {
		case port != 0:
		case proto == "udp":
			port = udpPort
		default:
			port = tcpPort
		}
		var got string
		err := from.Do(func(ns.NetNS) error {
			c, err := net.DialTimeout(proto, net.JoinHostPort(addr, fmt.Sprint(port)), probeTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(probeTimeout))
			if proto == "udp" {
				if _, err := c.Write([]byte("probe")); err != nil {
					return err
				}
			}
			got, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		if err != nil {
			return false, err
		}
		if strings.TrimSpace(got) != want {
			return false, fmt.Errorf("answer %q, want %q", strings.TrimSpace(got), want)
		}
		return true, nil
	}
	return false, fmt.Errorf("unknown protocol %q", proto)
}

// flow is one expectation: from reaches the server labelled want at addr
// over proto, or not.
type flow struct {
	what  string
	from  *nstest.NS
	proto string
	addr  string
	port  int // 0: the probe servers' port
	want  string
	ok    bool
}

// expectFlows runs the probes concurrently, those expected to pass first
// (which also warms neighbour caches, so that a blocked flow is blocked by
// policy, not by a path still being set up), and reports every mismatch
// with got before want.
func expectFlows(t *testing.T, flows []flow) {
	t.Helper()
	errs := make([]string, len(flows))
	for _, pass := range []bool{true, false} {
		var wg sync.WaitGroup
		for i, f := range flows {
			if f.ok != pass {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := probe(f.from, f.proto, f.addr, f.port, f.want)
				if got != f.ok {
					errs[i] = fmt.Sprintf("%s: %s to %s port %d: got reachable=%v (%v), want %v", f.what, f.proto, f.addr, f.port, got, err, f.ok)
				}
			}()
		}
		wg.Wait()
	}
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}
