package security

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

// everything is a network with every plugin that keeps state: host-local
// reservations (bridge, in-process), tuning's backups, the firewall's and
// portmap's (nftables only), dnsname's registry and its sidecar's socket,
// pid and log.
const everything = `{"cniVersion":"1.1.0","name":"permnet","plugins":[
	{"type":"bridge","bridge":"br-perm","isGateway":true,"ipMasq":true,
	 "ipam":{"type":"host-local","ranges":[[{"subnet":"auto"}],[{"subnet":"fd41::/64"}]]}},
	{"type":"tuning","sysctl":{"net.ipv4.conf.IFNAME.rp_filter":"1"}},
	{"type":"firewall","ingressPolicy":"same-bridge"},
	{"type":"portmap","capabilities":{"portMappings":true}},
	{"type":"dnsname","internal":true}]}`

// TestStatePermissions: every directory berth creates is 0700 and every
// file 0600 (sockets included), owned by root: reservations, registry
// entries and tuning backups name containers and their addresses, and the
// sidecar's control socket changes what names resolve to.
func TestStatePermissions(t *testing.T) {
	e := nstest.NewEnv(t)
	t.Cleanup(func() { killSidecars(e.Host) })
	list := e.Conflist([]byte(everything))
	e.Run(list, "perm1", func(rc *libcni.RuntimeConf) {
		rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}
	})
	seen := map[string]int{}
	err := filepath.WalkDir(e.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == e.DataDir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.DataDir, p)
		mode := fi.Mode()
		want := fs.FileMode(0o600)
		kind := "file"
		switch {
		case mode.IsDir():
			want, kind = 0o700, "directory"
		case mode&fs.ModeSocket != 0:
			kind = "socket"
		case !mode.IsRegular():
			t.Errorf("%s: unexpected %v", rel, mode)
			return nil
		}
		seen[kind]++
		if got := mode.Perm(); got != want {
			t.Errorf("%s %s: mode %#o, want %#o", kind, rel, got, want)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s %s: owned by %d:%d, want root", kind, rel, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have seen the state it is about.
	if seen["file"] < 3 || seen["directory"] < 3 || seen["socket"] < 1 {
		t.Fatalf("walked %v under %s: want reservations, registry, backups and the sidecar's socket", seen, e.DataDir)
	}
	t.Log(fmt.Sprint(seen))
}

// killSidecars kills the DNS sidecars running in host (a test that fails
// half way must not leave one holding the namespace).
func killSidecars(host *nstest.NS) {
	var hs syscall.Stat_t
	if syscall.Stat(host.Path, &hs) != nil {
		return
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Base(exe) != "dnsname-sidecar" {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == hs.Ino {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
