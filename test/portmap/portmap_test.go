package portmap_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
)

var backends = []string{"nftables", "iptables"}

// TestPublishedPorts is `docker run -p 8080:80 -p 5353:53/udp -p
// 192.0.2.1:9090:80 -p 7000-7002:80` on the Docker-like bridge.
func TestPublishedPorts(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			list := e.list(t, backend)
			ctx := context.Background()

			// A UDP client that talks to the port before anything is
			// published: its conntrack entry must not keep the flow away
			// from the container published later.
			early := udpConn(t, e.out, outIP+":40000")
			if got, err := udpAsk(early, hostOutIP+":5353"); err == nil {
				t.Fatalf("UDP before ADD: got %q, want no answer", got)
			}

			web := e.newContainer(t, "web", mapping{8080, 80, "tcp", ""}, mapping{5353, 53, "udp", ""},
				mapping{9090, 80, "tcp", hostOutIP},
				mapping{7000, 80, "tcp", ""}, mapping{7001, 80, "tcp", ""}, mapping{7002, 80, "tcp", ""})
			if err := e.add(t, list, web); err != nil {
				t.Fatalf("ADD web: %v", err)
			}
			web.serve(t)
			other := e.newContainer(t, "other")
			if err := e.add(t, list, other); err != nil {
				t.Fatalf("ADD other: %v", err)
			}
			hello := "hello from web"

			wantHTTP(t, "outside via host address", e.out, "http://"+hostOutIP+":8080/", hello)
			wantHTTP(t, "host via 127.0.0.1", e.Host, "http://127.0.0.1:8080/", hello)
			wantHTTP(t, "host via its own address", e.Host, "http://"+hostOutIP+":8080/", hello)
			wantHTTP(t, "other container via bridge address (hairpin)", other.ns, "http://"+bridgeGW+":8080/", hello)
			wantHTTP(t, "other container via host address", other.ns, "http://"+hostOutIP+":8080/", hello)
			wantHTTP(t, "container itself via host address", web.ns, "http://"+hostOutIP+":8080/", hello)
			wantHTTP(t, "hostIP mapping via that address", e.out, "http://"+hostOutIP+":9090/", hello)
			wantNoHTTP(t, "hostIP mapping via another host address", other.ns, "http://"+bridgeGW+":9090/")
			for _, p := range []string{"7000", "7001", "7002"} {
				wantHTTP(t, "port range", e.out, "http://"+hostOutIP+":"+p+"/", hello)
			}
			wantNoHTTP(t, "unpublished port", e.out, "http://"+hostOutIP+":8081/")
			if got, err := udpAsk(early, hostOutIP+":5353"); err != nil || got != "pong web" {
				t.Errorf("UDP from the early client: got %q, %v; want %q", got, err, "pong web")
			}
			fresh := udpConn(t, e.out, outIP+":0")
			if got, err := udpAsk(fresh, hostOutIP+":5353"); err != nil || got != "pong web" {
				t.Errorf("UDP: got %q, %v; want %q", got, err, "pong web")
			}

			if err := e.RT.Check(ctx, list, web.rc); err != nil {
				t.Errorf("CHECK web: %v", err)
			}

			// A second container asking for 8080/tcp fails with a
			// conflict naming the port, and the first keeps working.
			thief := e.newContainer(t, "thief", mapping{8080, 80, "tcp", ""})
			err := e.add(t, list, thief)
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != cni.CodeConflict || !strings.Contains(ce.Msg, "8080/tcp") || !strings.Contains(ce.Msg, "web") {
				t.Errorf("ADD of a second 8080/tcp: got %v, want code %d naming 8080/tcp and web", err, cni.CodeConflict)
			}
			if err := e.RT.Del(ctx, list, thief.rc); err != nil { // as containerd does after a failed ADD
				t.Errorf("DEL after failed ADD: %v", err)
			}
			wantHTTP(t, "first container after the conflict", e.out, "http://"+hostOutIP+":8080/", hello)
			if err := e.RT.Check(ctx, list, web.rc); err != nil {
				t.Errorf("CHECK web after the conflict: %v", err)
			}

			// GC with web still valid keeps it; without, removes it.
			if err := e.RT.GC(ctx, list, web.rc, other.rc); err != nil {
				t.Fatalf("GC: %v", err)
			}
			wantHTTP(t, "after GC keeping web", e.out, "http://"+hostOutIP+":8080/", hello)

			if err := e.RT.Del(ctx, list, web.rc); err != nil {
				t.Fatalf("DEL web: %v", err)
			}
			if err := e.RT.Del(ctx, list, web.rc); err != nil {
				t.Fatalf("second DEL web: %v", err)
			}
			wantNoHTTP(t, "after DEL", e.out, "http://"+hostOutIP+":8080/")

			// The port is free again for a new container, and a client
			// that kept its UDP flow reaches the new one.
			web2 := e.newContainer(t, "web2", mapping{8080, 80, "tcp", ""}, mapping{5353, 53, "udp", ""})
			if err := e.add(t, list, web2); err != nil {
				t.Fatalf("ADD web2 on the freed port: %v", err)
			}
			web2.serve(t)
			wantHTTP(t, "new container on the freed port", e.out, "http://"+hostOutIP+":8080/", "hello from web2")
			if got, err := udpAsk(early, hostOutIP+":5353"); err != nil || got != "pong web2" {
				t.Errorf("UDP flow after the port moved: got %q, %v; want %q", got, err, "pong web2")
			}

			// GC without web2 removes its mappings.
			if err := e.RT.GC(ctx, list, other.rc); err != nil {
				t.Fatalf("GC: %v", err)
			}
			wantNoHTTP(t, "after GC dropping web2", e.out, "http://"+hostOutIP+":8080/")
			if err := e.RT.Check(ctx, list, web2.rc); err == nil {
				t.Errorf("CHECK web2 after GC: got nil, want an error")
			}
			if err := e.RT.Status(ctx, list); err != nil {
				t.Errorf("STATUS: %v", err)
			}
		})
	}
}
