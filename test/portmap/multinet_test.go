package portmap_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/cni"
)

// TestSameContainerOnTwoNetworks is `podman network connect other web` of
// a container started with -p 8080:80: Podman hands the container's
// mappings to every network it joins, so portmap gets the same host port
// from one container ID on two networks. Both ADDs succeed, the port is
// served through one attachment at a time and keeps working through the
// other when either is deleted (Docker: disconnecting one network keeps
// the publication); it goes with the last. Another container asking for
// the port still gets code 101 throughout. (Failed before: the second
// ADD got code 101.)
func TestSameContainerOnTwoNetworks(t *testing.T) {
	type removal int
	const (
		byDEL removal = iota
		// byBareDEL: DEL without prevResult (a runtime that lost its
		// cache): the entries are found by their tag.
		byBareDEL
		// byGC: the plugins' GC of the network without the attachment
		// among the valid ones (a DEL that never came; from a runtime
		// without cache, which would otherwise DEL it first), then its
		// late DEL.
		byGC
	)
	var tests []struct {
		backend string
		// firstGone is the attachment removed first: 0 (the one that
		// published the port first) or 1.
		firstGone int
		how       removal
	}
	for _, b := range backends {
		for _, first := range []int{0, 1} {
			for _, how := range []removal{byDEL, byBareDEL, byGC} {
				tests = append(tests, struct {
					backend   string
					firstGone int
					how       removal
				}{b, first, how})
			}
		}
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/network-%d-first/%s", tt.backend, tt.firstGone, map[removal]string{byDEL: "DEL", byBareDEL: "DEL-without-prevResult", byGC: "GC"}[tt.how])
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			lists := []*libcni.NetworkConfigList{e.list(t, tt.backend), e.secondList(t, tt.backend)}
			web := e.newContainer(t, "web", mapping{8080, 80, "tcp", ""}, mapping{9090, 80, "tcp", hostOutIP}, mapping{5353, 53, "udp", ""})
			rcs := []*libcni.RuntimeConf{web.rc, nstest.Attachment("web", web.ns, "eth1")}
			rcs[1].CapabilityArgs = web.rc.CapabilityArgs
			for i, list := range lists {
				if _, err := e.RT.Add(ctx, list, rcs[i]); err != nil {
					t.Fatalf("ADD of web to %s: %v", list.Name, err)
				}
				list, rc := list, rcs[i]
				t.Cleanup(func() { _ = e.RT.Del(context.Background(), list, rc) })
			}
			web.serve(t)
			hello := "hello from web"
			// A UDP client that keeps its flow (one source port): after
			// the serving attachment goes, conntrack must not keep
			// sending it to that attachment's address.
			early := udpConn(t, e.out, outIP+":40000")
			reachable := func(when string, udp bool) {
				t.Helper()
				wantHTTP(t, when+": outside via host address", e.out, "http://"+hostOutIP+":8080/", hello)
				wantHTTP(t, when+": host via 127.0.0.1", e.Host, "http://127.0.0.1:8080/", hello)
				wantHTTP(t, when+": hostIP mapping", e.out, "http://"+hostOutIP+":9090/", hello)
				if !udp {
					return
				}
				if got, err := udpAsk(early, hostOutIP+":5353"); err != nil || got != "pong web" {
					t.Errorf("%s: UDP from a client that kept its flow: got %q, %v; want %q", when, got, err, "pong web")
				}
			}
			// thief asks for 8080 on each network: code 101 naming web.
			thiefRefused := func(when string) {
				t.Helper()
				for _, list := range lists {
					thief := e.newContainer(t, "thief", mapping{8080, 80, "tcp", ""})
					_, err := e.RT.Add(ctx, list, thief.rc)
					var ce *types.Error
					if !errors.As(err, &ce) || ce.Code != cni.CodeConflict || !strings.Contains(ce.Msg, "8080/tcp") || !strings.Contains(ce.Msg, "web") {
						t.Errorf("%s: ADD of another container's 8080/tcp to %s: got %v, want code %d naming 8080/tcp and web", when, list.Name, err, cni.CodeConflict)
					}
					if err := e.RT.Del(ctx, list, thief.rc); err != nil {
						t.Errorf("%s: DEL after the failed ADD: %v", when, err)
					}
				}
			}
			check := func(when string, i int) {
				t.Helper()
				if err := e.RT.Check(ctx, lists[i], rcs[i]); err != nil {
					t.Errorf("%s: CHECK of web on %s: %v", when, lists[i].Name, err)
				}
			}

			reachable("on both networks", true)
			check("on both networks", 0)
			check("on both networks", 1)
			thiefRefused("on both networks")
			reachable("after the refused ADDs", true)

			first, second := tt.firstGone, 1-tt.firstGone
			gone := "after leaving " + lists[first].Name
			switch tt.how {
			case byBareDEL:
				if err := nstest.NewRuntime(t, e.Host).Del(ctx, lists[first], rcs[first]); err != nil {
					t.Fatalf("DEL without prevResult of web from %s: %v", lists[first].Name, err)
				}
				reachable(gone+" by a DEL without prevResult", true)
			case byGC:
				if err := nstest.NewRuntime(t, e.Host).GC(ctx, lists[first]); err != nil {
					t.Fatalf("GC of %s: %v", lists[first].Name, err)
				}
				// Not UDP: GC leaves the container's first interface,
				// and its answers from a wildcard socket take the
				// source address of that interface's default route,
				// which the new flow's conntrack entry does not expect.
				// A container GC gives up on is gone in real life.
				reachable(gone+" by GC", false)
			}
			// Twice: a repeated (or, after GC, late) DEL must not take
			// the port from the attachment serving it now.
			for i := 0; i < 2; i++ {
				if err := e.RT.Del(ctx, lists[first], rcs[first]); err != nil {
					t.Fatalf("DEL #%d of web from %s: %v", i+1, lists[first].Name, err)
				}
			}
			reachable(gone, true)
			check(gone, second)
			thiefRefused(gone)
			if got := e.tagged(t, tt.backend, "web/"+rcs[first].IfName); got != "" {
				t.Errorf("%s: entries of that attachment left:\n%s", gone, got)
			}

			if err := e.RT.Del(ctx, lists[second], rcs[second]); err != nil {
				t.Fatalf("DEL of web from %s: %v", lists[second].Name, err)
			}
			wantNoHTTP(t, "after leaving both", e.out, "http://"+hostOutIP+":8080/")
			if got := e.tagged(t, tt.backend, "/web/"); got != "" {
				t.Errorf("after leaving both: entries of web left:\n%s", got)
			}
		})
	}
}

// secondList is another Docker-like network with portmap, on its own
// bridge and subnet, without loopback: lo belongs to the container's
// first network (loopback's DEL takes it down, as the reference's does).
func (e *env) secondList(t *testing.T, backend string) *libcni.NetworkConfigList {
	t.Helper()
	return nstest.Conflist(t, nstest.Example(t, "docker-bridge-ports.conflist"), nstest.DataDir(e.DataDir), setPortmapBackend(backend),
		func(m map[string]any) {
			m["name"] = "ports-b"
			m["plugins"] = m["plugins"].([]any)[:2] // bridge, portmap
		},
		nstest.SetField(0, "bridge", "brb"),
		nstest.SetField(0, "ipam", map[string]any{"type": "host-local",
			"ranges": [][]map[string]any{{{"subnet": "172.18.0.0/16", "gateway": "172.18.0.1"}}}}))
}

// tagged returns the lines of the host's firewall state (the nftables
// ruleset, or iptables-save of both families) that contain s.
func (e *env) tagged(t *testing.T, backend, s string) string {
	t.Helper()
	var dumps []string
	if backend == "nftables" {
		dumps = append(dumps, e.Host.MustExec(t, "nft", "list", "ruleset"))
	} else {
		dumps = append(dumps, e.Host.MustExec(t, "iptables-save"), e.Host.MustExec(t, "ip6tables-save"))
	}
	var out []string
	for _, d := range dumps {
		for _, l := range strings.Split(d, "\n") {
			if strings.Contains(l, s) {
				out = append(out, strings.TrimSpace(l))
			}
		}
	}
	return strings.Join(out, "\n")
}
