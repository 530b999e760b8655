// Package tuning tests the tuning plugin end to end: the real binary run
// through libcni inside a private host namespace, chained (by a prevResult)
// after an interface the test makes with a veth pair into a private
// container namespace.
package tuning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// env is one host namespace and one container with eth0 (10.5.0.2/24)
// veth-linked to the host's h0 (10.5.0.1/24).
type env struct {
	*nstest.Env
	ctr       *nstest.NS
	dataDir   string // tuning's
	allowlist string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Env: nstest.NewEnv(t), ctr: nstest.NewNS(t, "ctr")}
	nstest.Veth(t, e.Host, "h0", "10.5.0.1/24", e.ctr, "eth0", "10.5.0.2/24")
	e.dataDir = filepath.Join(e.DataDir, "tuning")
	e.allowlist = filepath.Join(t.TempDir(), "allowlist.conf") // absent unless a test writes it
	return e
}

// conf builds a tuning config chained after a fake previous plugin that
// reported eth0 in the container.
func (e *env) conf(t testing.TB, version string, fields map[string]any) *libcni.PluginConfig {
	t.Helper()
	m := map[string]any{
		"cniVersion": version, "name": "tun", "type": "tuning",
		"dataDir": e.dataDir, "allowlistFile": e.allowlist,
		"prevResult": map[string]any{
			"cniVersion": version,
			"interfaces": []any{
				map[string]any{"name": "h0", "mac": "02:00:00:00:00:aa"},
				map[string]any{"name": "eth0", "mac": "02:00:00:00:00:bb", "sandbox": e.ctr.Path},
			},
			"ips": []any{map[string]any{"address": "10.5.0.2/24", "gateway": "10.5.0.1", "interface": 1}},
		},
	}
	if version < "0.4.0" {
		m["prevResult"].(map[string]any)["ips"].([]any)[0].(map[string]any)["version"] = "4"
	}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := libcni.NetworkPluginConfFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) rt(id, ifName string) *libcni.RuntimeConf {
	return nstest.Attachment(id, e.ctr, ifName)
}

func (e *env) add(c *libcni.PluginConfig, rt *libcni.RuntimeConf) (res types.Result, err error) {
	err = e.Host.Do(func(ns.NetNS) error {
		res, err = e.RT.CNI.AddNetwork(context.Background(), c, rt)
		return err
	})
	return res, err
}

func (e *env) del(c *libcni.PluginConfig, rt *libcni.RuntimeConf) error {
	return e.Host.Do(func(ns.NetNS) error { return e.RT.CNI.DelNetwork(context.Background(), c, rt) })
}

func (e *env) check(c *libcni.PluginConfig, rt *libcni.RuntimeConf) error {
	return e.Host.Do(func(ns.NetNS) error { return e.RT.CNI.CheckNetwork(context.Background(), c, rt) })
}

// linkState is what tuning can change on a link, read through netlink.
type linkState struct {
	Mac      string
	MTU      int
	Promisc  bool
	Allmulti bool
	TxQLen   int
}

func (e *env) link(t testing.TB, name string) linkState {
	t.Helper()
	h, err := netns.GetFromPath(e.ctr.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a := l.Attrs()
	return linkState{a.HardwareAddr.String(), a.MTU, a.Promisc != 0, a.RawFlags&unix.IFF_ALLMULTI != 0, a.TxQLen}
}

func (e *env) sysctl(t testing.TB, key string) string {
	t.Helper()
	return strings.TrimSpace(e.ctr.MustExec(t, "sysctl", "-n", key))
}

// pingDF sends one unfragmentable ICMP echo of size bytes (payload) from
// the container to the host end.
func (e *env) pingDF(size int) error {
	_, err := e.ctr.Exec("ping", "-c1", "-W1", "-M", "do", "-s", fmt.Sprint(size), "10.5.0.1")
	return err
}

func TestApplyAndRestore(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t)
			before := e.link(t, "eth0")
			beforeArp := e.sysctl(t, "net.ipv4.conf.eth0.arp_filter")
			beforeConn := e.sysctl(t, "net.core.somaxconn")
			if err := e.pingDF(1450); err != nil {
				t.Fatalf("ping of 1478 bytes before ADD (mtu %d): %v", before.MTU, err)
			}
			want := linkState{Mac: "02:42:0a:05:00:02", MTU: 1400, Promisc: true, Allmulti: !before.Allmulti, TxQLen: before.TxQLen + 500}
			c := e.conf(t, v, map[string]any{
				"sysctl": map[string]string{"net.ipv4.conf.IFNAME.arp_filter": "1", "net.core.somaxconn": "1234"},
				"mac":    want.Mac, "mtu": want.MTU, "promisc": true, "allmulti": want.Allmulti, "txQLen": want.TxQLen,
			})
			rt := e.rt("ctr-"+strings.ReplaceAll(v, ".", ""), "eth0")

			res, err := e.add(c, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if got := e.link(t, "eth0"); got != want {
				t.Fatalf("link after ADD: got %+v, want %+v", got, want)
			}
			if got := e.sysctl(t, "net.ipv4.conf.eth0.arp_filter"); got != "1" {
				t.Errorf("arp_filter after ADD: got %s, want 1", got)
			}
			if got := e.sysctl(t, "net.core.somaxconn"); got != "1234" {
				t.Errorf("somaxconn after ADD: got %s, want 1234", got)
			}
			cur, err := current.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if got := cur.Interfaces[1].Mac; got != want.Mac {
				t.Errorf("result eth0 mac: got %s, want %s", got, want.Mac)
			}
			if got := cur.Interfaces[0].Mac; got != "02:00:00:00:00:aa" {
				t.Errorf("result h0 mac: got %s, want it unchanged", got)
			}
			// Real packets: the smaller MTU stops a large DF ping.
			if err := e.pingDF(1450); err == nil {
				t.Error("DF ping of 1478 bytes got through an MTU of 1400")
			}
			if err := e.pingDF(1300); err != nil {
				t.Errorf("ping of 1328 bytes with MTU 1400: %v", err)
			}
			file := filepath.Join(e.dataDir, rt.ContainerID+"_eth0.json")
			assertMode(t, file, 0o600)
			assertMode(t, e.dataDir, 0o700|os.ModeDir)

			if v >= "0.4.0" {
				if err := e.check(c, rt); err != nil {
					t.Fatalf("CHECK after ADD: %v", err)
				}
				e.ctr.MustExec(t, "ip", "link", "set", "eth0", "mtu", "1500")
				if err := e.check(c, rt); err == nil || !strings.Contains(err.Error(), "mtu") {
					t.Errorf("CHECK with mtu changed by hand: got %v, want an error about mtu", err)
				}
				e.ctr.MustExec(t, "ip", "link", "set", "eth0", "mtu", "1400")
			}

			if err := e.del(c, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if got := e.link(t, "eth0"); got != before {
				t.Errorf("link after DEL: got %+v, want %+v", got, before)
			}
			if got := e.sysctl(t, "net.ipv4.conf.eth0.arp_filter"); got != beforeArp {
				t.Errorf("arp_filter after DEL: got %s, want %s", got, beforeArp)
			}
			if got := e.sysctl(t, "net.core.somaxconn"); got != beforeConn {
				t.Errorf("somaxconn after DEL: got %s, want %s", got, beforeConn)
			}
			if err := e.pingDF(1450); err != nil {
				t.Errorf("ping of 1478 bytes after DEL: %v", err)
			}
			if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("backup after DEL: got %v, want it removed", err)
			}
			if err := e.del(c, rt); err != nil {
				t.Fatalf("second DEL: %v", err)
			}
		})
	}
}

func assertMode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode(); got != want {
		t.Errorf("%s mode: got %v, want %v", path, got, want)
	}
}

// TestRepeatedAddKeepsOriginal: a second ADD with other values must not
// overwrite the saved originals with the first ADD's values.
func TestRepeatedAddKeepsOriginal(t *testing.T) {
	e := newEnv(t)
	before := e.link(t, "eth0")
	rt := e.rt("ctr-rep", "eth0")
	for _, mtu := range []int{1400, 1300} {
		if _, err := e.add(e.conf(t, "1.0.0", map[string]any{"mtu": mtu}), rt); err != nil {
			t.Fatalf("ADD mtu %d: %v", mtu, err)
		}
	}
	if got := e.link(t, "eth0").MTU; got != 1300 {
		t.Fatalf("mtu after two ADDs: got %d, want 1300", got)
	}
	if err := e.del(e.conf(t, "1.0.0", map[string]any{"mtu": 1300}), rt); err != nil {
		t.Fatal(err)
	}
	if got := e.link(t, "eth0").MTU; got != before.MTU {
		t.Errorf("mtu after DEL: got %d, want %d", got, before.MTU)
	}
}

// TestFailedAddLeavesNothing: a sysctl value the kernel refuses makes ADD
// fail, and every change made before it is undone.
func TestFailedAddLeavesNothing(t *testing.T) {
	e := newEnv(t)
	before := e.link(t, "eth0")
	beforeConn := e.sysctl(t, "net.core.somaxconn")
	c := e.conf(t, "1.0.0", map[string]any{
		"sysctl": map[string]string{"net.core.somaxconn": "1234", "net.ipv4.conf.IFNAME.arp_filter": "not-a-number"},
		"mtu":    1400, "mac": "02:42:0a:05:00:09",
	})
	rt := e.rt("ctr-fail", "eth0")
	_, err := e.add(c, rt)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != 102 || !strings.Contains(ce.Msg, "arp_filter") {
		t.Fatalf("ADD: got %v, want code 102 naming arp_filter", err)
	}
	if got := e.link(t, "eth0"); got != before {
		t.Errorf("link after failed ADD: got %+v, want %+v", got, before)
	}
	if got := e.sysctl(t, "net.core.somaxconn"); got != beforeConn {
		t.Errorf("somaxconn after failed ADD: got %s, want %s", got, beforeConn)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "ctr-fail_eth0.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup after failed ADD: got %v, want none", err)
	}
}

func TestBadConfig(t *testing.T) {
	e := newEnv(t)
	if err := os.WriteFile(e.allowlist, []byte(`^net\.ipv4\.conf\.IFNAME\.arp_filter$`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	beforeConn := e.sysctl(t, "net.core.somaxconn")
	noPrev := func(c *libcni.PluginConfig) *libcni.PluginConfig {
		var m map[string]any
		_ = json.Unmarshal(c.Bytes, &m)
		delete(m, "prevResult")
		b, _ := json.Marshal(m)
		out, err := libcni.NetworkPluginConfFromBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name     string
		conf     *libcni.PluginConfig
		ifName   string
		wantCode uint
		wantMsg  string
	}{
		{"allowlist denies", e.conf(t, "1.0.0", map[string]any{"sysctl": map[string]string{"net.core.somaxconn": "1"}}), "eth0", 7, "sysctl net.core.somaxconn"},
		{"allowlist allows but global sysctl", e.conf(t, "1.0.0", map[string]any{"allowlistFile": e.allowlist + ".none", "sysctl": map[string]string{"net.core.netdev_max_backlog": "1"}}), "eth0", 7, "sysctl net.core.netdev_max_backlog"},
		{"not net", e.conf(t, "1.0.0", map[string]any{"sysctl": map[string]string{"kernel.panic": "1"}}), "eth0", 7, "sysctl kernel.panic"},
		{"no prevResult", noPrev(e.conf(t, "1.0.0", nil)), "eth0", 7, "prevResult"},
		{"bad mac", e.conf(t, "1.0.0", map[string]any{"mac": "02:00"}), "eth0", 7, "mac 02:00"},
		{"bad mtu", e.conf(t, "1.0.0", map[string]any{"mtu": 70000}), "eth0", 7, "mtu 70000"},
		{"wrong type", e.conf(t, "1.0.0", map[string]any{"promisc": "yes"}), "eth0", 6, "promisc"},
		{"no such interface", e.conf(t, "1.0.0", map[string]any{"mtu": 1400}), "eth9", 102, "eth9"},
		{"unsupported version", e.conf(t, "0.2.0", nil), "eth0", 1, "0.2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.add(tt.conf, e.rt("ctr-bad", tt.ifName))
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CNI error", err)
			}
			if ce.Code != tt.wantCode || !strings.Contains(ce.Msg+ce.Details, tt.wantMsg) {
				t.Fatalf("got code %d %q, want code %d mentioning %q", ce.Code, ce.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if got := e.sysctl(t, "net.core.somaxconn"); got != beforeConn {
		t.Errorf("somaxconn after refused ADDs: got %s, want %s", got, beforeConn)
	}
	if entries, _ := os.ReadDir(e.dataDir); len(entries) != 0 {
		t.Errorf("backups after refused ADDs: got %d files, want none", len(entries))
	}
}

func TestDelIdempotent(t *testing.T) {
	e := newEnv(t)
	c := e.conf(t, "1.0.0", map[string]any{"mtu": 1400})
	tests := []struct {
		name string
		rt   *libcni.RuntimeConf
	}{
		{"no prior ADD", e.rt("ctr-none", "eth0")},
		{"no netns", &libcni.RuntimeConf{ContainerID: "ctr-nons", IfName: "eth0"}},
		{"netns gone", &libcni.RuntimeConf{ContainerID: "ctr-gone", IfName: "eth0", NetNS: "/run/netns/" + nstest.UniqueName("gone")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 2; i++ {
				if err := e.del(c, tt.rt); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
		})
	}

	// Namespace removed after ADD: DEL succeeds and drops the backup.
	gone := nstest.NewNS(t, "gone")
	nstest.Veth(t, e.Host, "h1", "", gone, "eth0", "")
	rt := nstest.Attachment("ctr-later-gone", gone, "eth0")
	if _, err := e.add(c, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	file := filepath.Join(e.dataDir, "ctr-later-gone_eth0.json")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("backup after ADD: %v", err)
	}
	// The runtime lost the namespace (the container died): DEL gets a
	// path that no longer exists.
	rt.NetNS = "/run/netns/" + nstest.UniqueName("vanished")
	if err := e.del(c, rt); err != nil {
		t.Fatalf("DEL with netns gone: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup after DEL: got %v, want it removed", err)
	}
}

// TestGC: GC drops the backups of attachments not listed as valid, of this
// network only.
func TestGC(t *testing.T) {
	e := newEnv(t)
	nstest.Veth(t, e.Host, "h1", "", e.ctr, "eth1", "")
	keep, drop := e.rt("ctr-keep", "eth0"), e.rt("ctr-drop", "eth1")
	for _, rt := range []*libcni.RuntimeConf{keep, drop} {
		if _, err := e.add(e.conf(t, "1.1.0", map[string]any{"mtu": 1400}), rt); err != nil {
			t.Fatalf("ADD %s: %v", rt.IfName, err)
		}
	}
	// A backup of another network in the same dataDir.
	other := e.conf(t, "1.1.0", map[string]any{"name": "other", "txQLen": 10})
	otherRT := e.rt("ctr-other", "eth0")
	if _, err := e.add(other, otherRT); err != nil {
		t.Fatalf("ADD other network: %v", err)
	}
	list := nstest.Conflist(t, []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"tun","plugins":[{"type":"tuning","dataDir":%q}]}`, e.dataDir)))
	if err := e.RT.GC(context.Background(), list, keep); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var got []string
	entries, _ := os.ReadDir(e.dataDir)
	for _, en := range entries {
		got = append(got, en.Name())
	}
	want := "ctr-keep_eth0.json,ctr-other_eth0.json"
	if strings.Join(got, ",") != want {
		t.Errorf("backups after GC: got %v, want %s", got, want)
	}
}

// TestRuntimeConfigMac: the mac capability (runtimeConfig.mac) as a runtime
// passes it through libcni.
func TestRuntimeConfigMac(t *testing.T) {
	e := newEnv(t)
	c := e.conf(t, "1.0.0", map[string]any{"capabilities": map[string]bool{"mac": true}})
	rt := e.rt("ctr-mac", "eth0")
	rt.CapabilityArgs = map[string]any{"mac": "02:42:0a:05:00:77"}
	before := e.link(t, "eth0").Mac
	res, err := e.add(c, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if got := e.link(t, "eth0").Mac; got != "02:42:0a:05:00:77" {
		t.Errorf("mac after ADD: got %s, want 02:42:0a:05:00:77", got)
	}
	cur, _ := current.NewResultFromResult(res)
	if got := cur.Interfaces[1].Mac; got != "02:42:0a:05:00:77" {
		t.Errorf("result mac: got %s, want 02:42:0a:05:00:77", got)
	}
	// The host end must still reach the container at its new MAC.
	if _, err := e.ctr.Exec("ping", "-c1", "-W1", "10.5.0.1"); err != nil {
		t.Errorf("ping after MAC change: %v", err)
	}
	if err := e.del(c, rt); err != nil {
		t.Fatal(err)
	}
	if got := e.link(t, "eth0").Mac; got != before {
		t.Errorf("mac after DEL: got %s, want %s", got, before)
	}
}

// TestCNIArgsOfRuntimes: the keys Podman and kubelets put in CNI_ARGS
// (without IgnoreUnknown) are not an error; MAC from CNI_ARGS applies.
func TestCNIArgsOfRuntimes(t *testing.T) {
	e := newEnv(t)
	c := e.conf(t, "1.0.0", nil)
	rt := e.rt("ctr-args", "eth0")
	rt.Args = [][2]string{{"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "web"}, {"MAC", "02:42:0a:05:00:78"}}
	if _, err := e.add(c, rt); err != nil {
		t.Fatalf("ADD with runtime CNI_ARGS: %v", err)
	}
	if got := e.link(t, "eth0").Mac; got != "02:42:0a:05:00:78" {
		t.Errorf("mac after ADD: got %s, want 02:42:0a:05:00:78", got)
	}
	if err := e.del(c, rt); err != nil {
		t.Fatal(err)
	}
}

// TestBareConfig: Podman's default chain has {"type": "tuning"} with
// nothing to set. ADD passes prevResult through and leaves no backup; DEL
// and CHECK work without one; a bad CNI_NETNS is still code 3.
func TestBareConfig(t *testing.T) {
	e := newEnv(t)
	c := e.conf(t, "1.1.0", nil)
	before := e.link(t, "eth0")
	rt := e.rt("ctr-bare", "eth0")
	res, err := e.add(c, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil || len(r.Interfaces) != 2 || r.Interfaces[1].Mac != "02:00:00:00:00:bb" || len(r.IPs) != 1 {
		t.Fatalf("ADD result is not prevResult: %+v, %v", res, err)
	}
	if entries, _ := os.ReadDir(e.dataDir); len(entries) != 0 {
		t.Errorf("ADD with nothing to set left %d files in dataDir", len(entries))
	}
	if got := e.link(t, "eth0"); got != before {
		t.Errorf("eth0 changed: %+v, was %+v", got, before)
	}
	if err := e.check(c, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := e.del(c, rt); err != nil {
		t.Errorf("DEL: %v", err)
	}

	bad := &libcni.RuntimeConf{ContainerID: "ctr-bare-bad", IfName: "eth0", NetNS: "/run/netns/" + nstest.UniqueName("nonexistent")}
	_, err = e.add(c, bad)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrInvalidNetNS {
		t.Errorf("ADD with a missing netns: %v, want code %d", err, types.ErrInvalidNetNS)
	}
}
