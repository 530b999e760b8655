package overlay_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
)

// ownHostname gives host h a UTS namespace of its own, named hostN, that
// its plugins (and the daemons they start) run in: dnsname tells its own
// entries from other hosts' by the hostname, which all simulated hosts
// would otherwise share with the machine.
func (h *host) ownHostname(t *testing.T) {
	t.Helper()
	uts, err := sandbox.NewUTS(fmt.Sprintf("host%d", h.n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uts.Close() })
	h.RT.UTS = uts
}

// runNamed is Run with the container's name in K8S_POD_NAME (dnsname's
// source of names).
func (h *host) runNamed(list *libcni.NetworkConfigList, name string) *nstest.Container {
	h.T.Helper()
	return h.Run(list, name, func(rc *libcni.RuntimeConf) { rc.Args = [][2]string{{"K8S_POD_NAME", name}} })
}

// dig asks the container's nameserver (its gateway) for name's A record.
func dig(t *testing.T, c *nstest.Container, name string) string {
	t.Helper()
	out := c.NS.MustExec(t, "dig", "+short", "+time=2", "+tries=1", "@"+c.Res.IPs[0].Gateway.String(), name, "A")
	return strings.TrimSpace(out)
}

// TestNamesAcrossHosts: dnsname chained after vxlan-overlay with the etcd
// registry: a container resolves one on another host by name and reaches
// it at that address.
func TestNamesAcrossHosts(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	// conf-examples/overlay-etcd.conflist, pointed at this cluster.
	raw := exampleEtcd(t, c)
	h1.ownHostname(t)
	h2.ownHostname(t)
	a := h1.runNamed(h1.list(raw), "alpha")
	b := h2.runNamed(h2.list(raw), "bravo")
	// Wait, on the sidecars' sync barrier, until both have applied etcd's
	// revision after both ADDs (the names of the other host come by watch).
	rev := c.revision(t)
	for _, h := range []*host{h1, h2} {
		sc := &sidecar.Client{Config: sidecar.Config{DataDir: filepath.Join(h.DataDir, "dnsname")}}
		if err := sc.Notify(sidecar.Request{Op: sidecar.OpSync, Network: nameserver.Network{Name: "overlay"}, Revision: rev}, false); err != nil {
			t.Fatalf("host %d's sidecar sync to revision %d: %v", h.n, rev, err)
		}
	}
	if got := dig(t, a, "bravo.overlay.internal"); got != b.IP(t, "4") {
		full, _ := a.NS.Exec("dig", "+time=2", "+tries=1", "@"+a.Res.IPs[0].Gateway.String(), "bravo.overlay.internal", "A")
		log, _ := os.ReadFile(filepath.Join(h1.DataDir, "dnsname", "dnsname.log"))
		t.Fatalf("bravo (host 2) from alpha (host 1): %q, want %s\n%s\nsidecar log:\n%s", got, b.IP(t, "4"), full, log)
	}
	if got := dig(t, b, "alpha"); got != a.IP(t, "4") {
		t.Fatalf("alpha (host 1) from bravo (host 2): %q, want %s", got, a.IP(t, "4"))
	}
	nstest.Ping(t, a.NS, dig(t, a, "bravo"))
}

// exampleEtcd is conf-examples/overlay-etcd.conflist with this cluster's
// etcd and underlay, and DNS forwarding to a closed port on the host's
// loopback (other names are not the tests' business).
func exampleEtcd(t *testing.T, c *cluster) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(nstest.Example(t, "overlay-etcd.conflist"), &m); err != nil {
		t.Fatal(err)
	}
	for _, p := range m["plugins"].([]any) {
		pm := p.(map[string]any)
		switch pm["type"] {
		case "vxlan-overlay":
			pm["underlay"] = "ul0"
			pm["store"].(map[string]any)["endpoints"] = []string{c.etcd.url}
		case "dnsname":
			pm["registry"].(map[string]any)["endpoints"] = []string{c.etcd.url}
			pm["upstreams"] = []string{"127.0.0.1:5353"}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// revision is etcd's current revision, asked through its JSON gateway
// from the underlay namespace.
func (c *cluster) revision(t *testing.T) int64 {
	t.Helper()
	out, err := c.ul.Exec("curl", "-sSf", "-m", "10", "-X", "POST", c.etcd.url+"/v3/kv/range", "-d", `{"key":"AA=="}`)
	if err != nil {
		t.Fatalf("etcd revision: %v", err)
	}
	var resp struct {
		Header struct {
			Revision int64 `json:"revision,string"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Header.Revision == 0 {
		t.Fatalf("etcd revision: %q: %v", out, err)
	}
	return resp.Header.Revision
}
