package dnsname_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
	"github.com/berthnet/berth/pkg/registry"
)

// TestEtcdOtherHost: on a network whose registry is etcd, a name another
// host registers resolves here, and goes when that host removes it, with
// no ADD, DEL or GC on this host in between; names of other hosts do not
// keep the sidecar running once this host's last container is gone.
func TestEtcdOtherHost(t *testing.T) {
	e := newEnv(t)
	ep := startEtcd(t, e.Host)
	const prefix = "/berth-test/"
	list := e.network("overnet", 1, dnsField("registry", map[string]any{"backend": "etcd", "endpoints": []any{ep}, "prefix": prefix}))
	a := e.attach(list, "alpha")
	if got := a.lookup(t, "udp", "alpha", dns.TypeA); got != "NOERROR "+a.ip(t, "4") {
		t.Fatalf("alpha, registered in etcd: got %q", got)
	}
	pid := e.sidecarPID()
	fd := pidfd(t, pid)

	// Another host registers a container on the same network.
	other := &registry.Entry{
		Network: "overnet", ContainerID: "0123456789abcdef", IfName: "eth0", Host: "some-other-host",
		IPs: []netip.Prefix{netip.MustParsePrefix("10.89.1.200/24")}, Gateways: []netip.Addr{netip.MustParseAddr("10.89.1.1")},
		Names: []string{"faraway"}, DNS: registry.DNSConfig{Domain: "dns.podman"},
	}
	key := prefix + "overnet/" + registry.EntryName(other.ContainerID, other.IfName)
	val, err := json.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	e.syncSidecar(t, "overnet", etcdCall(t, e.Host, ep, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64(string(val))}))
	if got := a.lookup(t, "udp", "faraway.dns.podman", dns.TypeA); got != "NOERROR 10.89.1.200" {
		t.Fatalf("name registered by another host: got %q, want NOERROR 10.89.1.200", got)
	}
	e.syncSidecar(t, "overnet", etcdCall(t, e.Host, ep, "/v3/kv/deleterange", map[string]string{"key": b64(key)}))
	if got := a.lookup(t, "udp", "faraway", dns.TypeA); got != "NXDOMAIN" {
		t.Fatalf("name removed by another host: got %q, want NXDOMAIN", got)
	}

	// Registered again; then this host's last container goes.
	e.syncSidecar(t, "overnet", etcdCall(t, e.Host, ep, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64(string(val))}))
	if got := a.lookup(t, "udp", "faraway", dns.TypeA); got != "NOERROR 10.89.1.200" {
		t.Fatalf("name registered again: got %q", got)
	}
	e.del(list, a)
	if err := waitExit(fd, 5*time.Second); err != nil {
		t.Fatalf("sidecar %d with only another host's names left: %v", pid, err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// syncSidecar waits, through the sidecar's sync barrier, until its etcd
// watch of network has applied revision rev: the event, not a resync.
func (e *env) syncSidecar(t *testing.T, network string, rev int64) {
	t.Helper()
	c := &sidecar.Client{Config: sidecar.Config{DataDir: e.sidecarDir()}}
	req := sidecar.Request{Op: sidecar.OpSync, Network: nameserver.Network{Name: network}, Revision: rev}
	if err := c.Notify(req, false); err != nil {
		t.Fatalf("sidecar sync: %v", err)
	}
}

// etcdCall posts a JSON gateway request to etcd from inside host (etcd
// listens on host's loopback only) and returns the revision it made.
func etcdCall(t *testing.T, host *nstest.NS, ep, path string, body any) int64 {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := host.Exec("curl", "-sSf", "-m", "10", "-X", "POST", ep+path, "-d", string(b))
	if err != nil {
		t.Fatalf("etcd %s: %v\n%s", path, err, out)
	}
	var resp struct {
		Header struct {
			Revision int64 `json:"revision,string"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Header.Revision == 0 {
		t.Fatalf("etcd %s: no revision in %q: %v", path, out, err)
	}
	return resp.Header.Revision
}

// startEtcd runs a throwaway etcd (Debian's etcd-server) on the private
// host namespace's loopback, with free ports and a temp data dir, killed on
// cleanup, and returns its client URL once it is ready: etcd tells systemd
// (here, a socket of ours in NOTIFY_SOCKET) when it serves, so nobody polls.
func startEtcd(t *testing.T, host *nstest.NS) string {
	t.Helper()
	var ports [2]int
	err := host.Do(func(ns.NetNS) error {
		for i := range ports {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			ports[i] = l.Addr().(*net.TCPAddr).Port
			defer l.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("free ports in %s: %v", host.Name, err)
	}
	cu, pu := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := host.Command("etcd", "--name", "t", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "t="+pu)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("etcd: %v (apt-get install -y etcd-server)", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("etcd never said READY=1: %v\n%s", err, b)
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return cu
		}
	}
}

// TestSidecarNotAPlugin: the sidecar binary sits in the CNI directory, so a
// runtime given "type": "dnsname-sidecar" gets a CNI error, not a server.
func TestSidecarNotAPlugin(t *testing.T) {
	cmd := exec.Command(filepath.Join(nstest.CNIPath(t), sidecar.Binary))
	cmd.Env = []string{"CNI_COMMAND=VERSION"}
	out, err := cmd.Output()
	var ce struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if err == nil || json.Unmarshal(out, &ce) != nil || ce.Code != 4 || !strings.Contains(ce.Msg, "not a CNI plugin") {
		t.Fatalf("got %v, output %q; want exit status 1 and a CNI error with code 4", err, out)
	}
}
