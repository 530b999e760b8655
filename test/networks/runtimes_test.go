package networks_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"

	"github.com/berthnet/berth/internal/nstest"
)

// TestRuntimeConfigs runs the conflists nerdctl 1.x and Podman 4 (CNI
// backend) write for `network create mynet`, as they are (only the state
// directories move into the test's), with the runtime arguments those
// engines pass: ADD, CHECK, traffic between two containers, DEL.
//
// The one exception is Podman's dnsname entry, which gets "upstreams":
// unmodified, the DNS sidecar would forward to the resolver in the
// machine's /etc/resolv.conf, which the network-safety rules
// (ARCHITECTURE.md) forbid in tests. It is pointed at the outside namespace instead (nothing
// listens there; only names of the network are asked).
func TestRuntimeConfigs(t *testing.T) {
	for _, tc := range []struct {
		example, bridge, subnet, gw string
		podman                      bool
	}{
		{"nerdctl-network.conflist", "br-11c844f95e28", "10.4.1.0/24", "10.4.1.1", false},
		{"podman-network.conflist", "cni-podman1", "10.89.0.0/24", "10.89.0.1", true},
	} {
		t.Run(tc.example, func(t *testing.T) {
			w := newWorld(t)
			var patches []func(map[string]any)
			var opts []func(*libcni.RuntimeConf)
			if tc.podman {
				patches = append(patches, func(m map[string]any) {
					for _, p := range m["plugins"].([]any) {
						if pm := p.(map[string]any); pm["type"] == "dnsname" {
							pm["upstreams"] = []any{outsideIP}
						}
					}
				})
				killSidecar(t, w)
			}
			raw := nstest.Example(t, tc.example)
			list := w.Conflist(raw, patches...)
			if list.Name != "mynet" {
				t.Fatalf("network name: got %q, want mynet", list.Name)
			}
			if !tc.podman {
				// nerdctl derives the ID from the name and the bridge
				// from the ID (pkg/netutil: networkID, "br-"+id[:12]).
				var nc struct {
					ID string `json:"nerdctlID"`
				}
				if err := json.Unmarshal(raw, &nc); err != nil {
					t.Fatal(err)
				}
				if want := containerID(list.Name); nc.ID != want || "br-"+want[:12] != tc.bridge {
					t.Fatalf("nerdctlID: got %s (bridge %s), want %s (bridge br-%s)", nc.ID, tc.bridge, want, want[:12])
				}
			}

			var ctrs []*nstest.Container
			for _, name := range []string{"web", "client"} {
				if tc.podman {
					opts = []func(*libcni.RuntimeConf){podmanArgs(name)}
				}
				c := w.Run(list, containerID(name), opts...)
				ctrs = append(ctrs, c)
				if got := subnetOf(t, c.Res) + " gw " + gateway(t, c.Res); got != tc.subnet+" gw "+tc.gw {
					t.Errorf("%s: got %s, want %s gw %s", name, got, tc.subnet, tc.gw)
				}
				check(t, w, list, c.RC)
			}
			web, client := ctrs[0], ctrs[1]
			if _, err := w.Host.Exec("ip", "link", "show", "dev", tc.bridge); err != nil {
				t.Errorf("bridge %s in the host: %v", tc.bridge, err)
			}
			serve(t, web.NS, ":80", "web")
			pingBoth(t, web, client)
			expect(t, []reach{
				{"client to web", client.NS, web.IP(t, "4"), 80, "web " + client.IP(t, "4"), true},
				{"client to the gateway", client.NS, tc.gw, 0, "", true},
			})
			if tc.podman {
				if got, err := lookup(client, "web.dns.podman"); err != nil || got != web.IP(t, "4") {
					t.Errorf("client: web.dns.podman: got %q (%v), want %s", got, err, web.IP(t, "4"))
				}
			}

			for _, c := range ctrs {
				if err := w.RT.Del(context.Background(), list, c.RC); err != nil {
					t.Errorf("DEL %s: %v", c.ID, err)
				}
				if out, err := c.NS.Exec("ip", "link", "show", "dev", "eth0"); err == nil {
					t.Errorf("%s eth0 after DEL: got %q, want no such device", c.ID, out)
				}
			}
		})
	}
}

// containerID is a 64-hex-digit ID derived from name, as nerdctl derives a
// network's ID (sha256 of the name); containers get such IDs too.
func containerID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// podmanArgs are the arguments Podman 4's CNI backend passes: CNI_ARGS with
// the container's name, and its aliases on the network.
func podmanArgs(name string) func(*libcni.RuntimeConf) {
	return func(rc *libcni.RuntimeConf) {
		rc.Args = [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", name},
			{"K8S_POD_NAME", name},
			{"K8S_POD_INFRA_CONTAINER_ID", rc.ContainerID},
		}
		rc.CapabilityArgs = map[string]any{"aliases": map[string][]string{"mynet": {name, rc.ContainerID[:12]}}}
	}
}

// lookup asks, from inside c, the first nameserver its result reports for
// name's A record.
func lookup(c *nstest.Container, name string) (string, error) {
	if len(c.Res.DNS.Nameservers) == 0 {
		return "", &net.DNSError{Err: "result has no dns.nameservers", Name: name}
	}
	server := net.JoinHostPort(c.Res.DNS.Nameservers[0], "53")
	var resp *dns.Msg
	err := c.NS.Do(func(ns.NetNS) (err error) {
		cl := &dns.Client{Timeout: 3 * time.Second}
		resp, _, err = cl.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA), server)
		return err
	})
	if err != nil {
		return "", err
	}
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	return "", &net.DNSError{Err: dns.RcodeToString[resp.Rcode], Name: name}
}

// killSidecar makes sure no dnsname sidecar outlives the test: on cleanup
// (after the containers' DELs) it kills the one whose pid file is in the
// test's state directory, if that process is still a dnsname sidecar.
func killSidecar(t *testing.T, w *world) {
	t.Cleanup(func() {
		b, err := os.ReadFile(filepath.Join(w.DataDir, "dnsname", "sidecar.pid"))
		if err != nil {
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return
		}
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && strings.HasPrefix(filepath.Base(exe), "dnsname") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}
