package main

// The multi-host scenario: three simulated hosts (namespaces with state
// directories of their own) on one underlay, a real etcd on the underlay,
// and vxlan-overlay joining their containers into one network.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/sandbox"
)

// overlayUnderlay is the hosts' shared segment (198.18.0.0/15 is for
// benchmarks: nothing beyond these namespaces has it); etcd is .254.
const overlayUnderlay = "198.18.0."

// overlayHost is one simulated host: its namespace, runtime and network.
type overlayHost struct {
	name string
	ns   *sandbox.NS
	rt   *sandbox.Runtime
	list *libcni.NetworkConfigList
}

func overlayHosts(d *demo) error {
	ul, err := d.newNS("underlay")
	if err != nil {
		return err
	}
	for _, c := range [][]string{
		// A fixed MAC: a bridge would otherwise take its lowest port's and
		// change it as hosts join, staling the hosts' ARP entries.
		{"link", "add", "ulbr", "address", "02:00:c6:12:00:fe", "type", "bridge"},
		{"addr", "add", overlayUnderlay + "254/24", "dev", "ulbr"},
		{"link", "set", "ulbr", "up"},
	} {
		if _, err := ul.Exec(append([]string{"ip"}, c...)...); err != nil {
			return err
		}
	}
	etcdURL, err := d.startOverlayEtcd(ul)
	if err != nil {
		return err
	}
	// The containers go while etcd still runs (the demo's cleanup stops
	// processes first): dnsname's DEL unregisters names there.
	defer func() {
		for i := len(d.dels) - 1; i >= 0; i-- {
			d.dels[i]()
		}
		d.dels = nil
	}()
	fmt.Printf("  underlay 198.18.0.0/24 on a bridge; etcd at %s (in the underlay namespace)\n", etcdURL)
	var hosts []*overlayHost
	for i := 1; i <= 3; i++ {
		h, err := d.overlayHost(ul, i, etcdURL)
		if err != nil {
			return err
		}
		hosts = append(hosts, h)
	}
	fmt.Println("  every host: conf-examples/overlay-etcd.conflist (vni 42, 10.96.0.0/16, a /24 per host; dnsname with the etcd registry), underlay ul0")
	c1, err := d.runOn(hosts[0], "web")
	if err != nil {
		return err
	}
	c3, err := d.runOn(hosts[2], "db")
	if err != nil {
		return err
	}
	fmt.Printf("  host1: run web -> %s; host3: run db -> %s\n", c1.res.IPs[0].Address.String(), c3.res.IPs[0].Address.String())
	if _, err := sh(hosts[0].ns, "host1", "ip", "route", "show", "dev", "berthvx42"); err != nil {
		return err
	}
	if _, err := sh(hosts[0].ns, "host1", "bridge", "fdb", "show", "dev", "berthvx42"); err != nil {
		return err
	}
	// As a runtime does: the container's resolv.conf from the result
	// (dnsname's server on host 1's gateway, which learns host 3's names
	// from etcd).
	if err := d.resolvConf(c1, c1.res.DNS.Nameservers, c1.res.DNS.Search); err != nil {
		return err
	}
	if _, err := sh(c1.ns, "web", "ping", "-c", "2", "-W", "2", "db"); err != nil {
		return fmt.Errorf("web (host 1) cannot reach db (host 3) by name: %w", err)
	}
	if _, err := sh(c3.ns, "db", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", c1.ipv4()); err != nil {
		return fmt.Errorf("a full-MTU packet with DF does not cross: %w", err)
	}
	return nil
}

// startOverlayEtcd runs etcd in ns on the underlay address, ready when it
// tells its notify socket so; stopped with the scenario.
func (d *demo) startOverlayEtcd(ns *sandbox.NS) (string, error) {
	dir := filepath.Join(d.stateDir, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	cu, pu := "http://"+overlayUnderlay+"254:2379", "http://"+overlayUnderlay+"254:2380"
	notify := filepath.Join(dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		return "", err
	}
	defer nc.Close()
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := ns.Command("etcd", "--name", "demo", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "demo="+pu)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("etcd: %w (apt-get install etcd-server)", err)
	}
	d.procs = append(d.procs, cmd)
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			return "", fmt.Errorf("etcd did not get ready (log: %s): %w", logf.Name(), err)
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return cu, nil
		}
	}
}

// overlayHost makes host i: a namespace linked to the underlay bridge as
// ul0 (198.18.0.i), its own runtime and state directories.
func (d *demo) overlayHost(ul *sandbox.NS, i int, etcdURL string) (*overlayHost, error) {
	name := fmt.Sprintf("host%d", i)
	ns, err := d.newNS(name)
	if err != nil {
		return nil, err
	}
	tmp := fmt.Sprintf("%sov%d", d.prefix, i)
	port := fmt.Sprintf("h%d", i)
	for _, c := range [][]string{
		{"ip", "link", "add", tmp, "netns", ns.Name, "type", "veth", "peer", "name", port, "netns", ul.Name},
		{"ip", "-n", ns.Name, "link", "set", tmp, "name", "ul0"},
		{"ip", "-n", ns.Name, "addr", "add", fmt.Sprintf("%s%d/24", overlayUnderlay, i), "dev", "ul0"},
		{"ip", "-n", ns.Name, "link", "set", "ul0", "up"},
		{"ip", "-n", ul.Name, "link", "set", port, "master", "ulbr", "up"},
	} {
		if _, err := runCmd(c); err != nil {
			return nil, err
		}
	}
	state := filepath.Join(d.stateDir, name)
	raw, err := os.ReadFile(filepath.Join("conf-examples", "overlay-etcd.conflist"))
	if err != nil {
		return nil, err
	}
	list, err := withDataDir(raw, state, func(m map[string]any) {
		for _, p := range m["plugins"].([]any) {
			switch pm := p.(map[string]any); pm["type"] {
			case "vxlan-overlay":
				pm["underlay"] = "ul0"
				pm["store"].(map[string]any)["endpoints"] = []string{etcdURL}
			case "dnsname":
				pm["registry"].(map[string]any)["endpoints"] = []string{etcdURL}
				// Other names go to a closed port on the host's loopback,
				// never to the machine's resolver.
				pm["upstreams"] = []string{"127.0.0.1:5353"}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	// Its own hostname too: dnsname tells hosts apart by it.
	uts, err := sandbox.NewUTS(name)
	if err != nil {
		return nil, err
	}
	d.dels = append([]func(){func() { uts.Close() }}, d.dels...)
	rt := sandbox.NewRuntime(ns, filepath.Join(state, "cache"), d.cniPath)
	rt.UTS = uts
	return &overlayHost{name: name, ns: ns, rt: rt, list: list}, nil
}

// runOn is `docker run` on one of the hosts.
func (d *demo) runOn(h *overlayHost, name string) (*ctr, error) {
	n, err := d.newNS(name)
	if err != nil {
		return nil, err
	}
	c := &ctr{name: name, ns: n}
	rc := sandbox.Attachment(d.prefix+"-"+name, n, "eth0")
	rc.Args = [][2]string{{"K8S_POD_NAME", name}}
	c.res, err = h.rt.Add(context.Background(), h.list, rc)
	if err != nil {
		return nil, fmt.Errorf("ADD %s on %s: %w", name, h.name, err)
	}
	d.dels = append(d.dels, func() {
		if err := h.rt.Del(context.Background(), h.list, rc); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: DEL %s on %s: %v\n", name, h.name, err)
		}
	})
	return c, nil
}

func runCmd(c []string) (string, error) {
	out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%v: %w: %s", c, err, out)
	}
	return string(out), nil
}
