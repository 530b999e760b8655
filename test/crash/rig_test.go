package crash_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
)

// chain is the Docker-like network every crash run uses: bridge with
// masquerade, a sysctl, isolation, published ports and names.
const chain = `{
  "cniVersion": "1.1.0",
  "name": "crashnet",
  "plugins": [
    {
      "type": "bridge", "bridge": "br-crash", "isGateway": true, "ipMasq": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.rp_filter": "2"}},
    {"type": "firewall", "ingressPolicy": "same-bridge"},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "dnsname", "internal": true}
  ]
}`

// rig is a private host with the chain, a bystander container that stays
// attached through every run (and must stay intact), and one victim
// namespace that every run attaches and detaches.
type rig struct {
	t        testing.TB
	env      *nstest.Env
	cache    string // libcni's cache: a failed or killed ADD must leave no entry
	list     *libcni.NetworkConfigList
	by       *nstest.Container
	victim   *nstest.NS
	hostIno  uint64
	hostLink *netlink.Handle
	vicLink  *netlink.Handle
}

func newRig(t testing.TB, backend string) *rig {
	t.Helper()
	nstest.RequireRoot(t)
	host := nstest.NewNS(t, "host")
	r := &rig{t: t, cache: t.TempDir()}
	var st syscall.Stat_t
	if err := syscall.Stat(host.Path, &st); err != nil {
		t.Fatal(err)
	}
	r.hostIno = st.Ino
	// Registered first, so it runs last: no sidecar outlives the test.
	t.Cleanup(func() {
		for _, pid := range r.sidecars() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	rt := &nstest.Runtime{Runtime: sandbox.NewRuntime(host.NS, r.cache, nstest.CNIPath(t)), Host: host}
	r.env = &nstest.Env{T: t, Host: host, RT: rt, DataDir: t.TempDir()}
	r.list = r.env.Conflist([]byte(chain), setBackend(backend))
	r.hostLink = handleIn(t, host)
	r.by = r.env.Run(r.list, "bystander0", publish(9090))
	r.victim = nstest.NewNS(t, "victim")
	r.vicLink = handleIn(t, r.victim)
	return r
}

// setBackend picks the firewall backend of every plugin of the chain.
func setBackend(backend string) func(map[string]any) {
	return func(m map[string]any) {
		for _, p := range m["plugins"].([]any) {
			pm := p.(map[string]any)
			switch pm["type"] {
			case "bridge":
				pm["ipMasqBackend"] = backend
			case "firewall", "portmap":
				pm["backend"] = backend
			}
		}
	}
}

func handleIn(t testing.TB, n *nstest.NS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func publish(port int) func(*libcni.RuntimeConf) {
	return func(rc *libcni.RuntimeConf) {
		rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
			{"hostPort": port, "containerPort": 80, "protocol": "tcp"},
		}}
	}
}

// rc is the victim's attachment under a run's container ID, publishing
// the same host port every time: a mapping left behind by a crashed run
// makes the next ADD conflict.
func (r *rig) rc(id string) *libcni.RuntimeConf {
	rc := nstest.Attachment(id, r.victim, "eth0")
	publish(8080)(rc)
	return rc
}

func (r *rig) add(id string) error {
	_, err := r.env.RT.Add(context.Background(), r.list, r.rc(id))
	return err
}

func (r *rig) del(id string) error {
	return r.env.RT.Del(context.Background(), r.list, r.rc(id))
}

// gc is the runtime's GC with its valid list: only the bystander.
func (r *rig) gc() error {
	return r.env.RT.GC(context.Background(), r.list, r.by.RC)
}

// recover is what a runtime does after a crash: DEL the attachment (it
// must succeed, whatever is left), then GC with the valid list.
func (r *rig) recover(id string) {
	r.t.Helper()
	if err := r.del(id); err != nil {
		r.t.Fatalf("%s: DEL after the crash: %v", id, err)
	}
	if err := r.gc(); err != nil {
		r.t.Fatalf("%s: GC after the crash: %v", id, err)
	}
}

// leaks lists what is left of attachment id anywhere berth keeps state,
// and what the bystander lost.
func (r *rig) leaks(id string) []string {
	r.t.Helper()
	var out []string
	links, err := r.hostLink.LinkList()
	if err != nil {
		r.t.Fatal(err)
	}
	veths := 0
	for _, l := range links {
		if l.Type() == "veth" {
			veths++
		}
	}
	if veths != 1 {
		out = append(out, fmt.Sprintf("%d veths in the host namespace, want 1 (the bystander's)", veths))
	}
	if _, err := r.vicLink.LinkByName("eth0"); err == nil {
		out = append(out, "eth0 still in the victim's namespace")
	}
	for _, dir := range []string{r.env.DataDir, r.cache} {
		out = append(out, filesNaming(r.t, dir, id)...)
	}
	if n := len(filesNaming(r.t, r.env.DataDir, r.by.ID)); n < 2 {
		out = append(out, fmt.Sprintf("bystander has %d state files, want its reservation and registry entry", n))
	}
	rules := r.rules()
	if strings.Contains(rules, id+"/") {
		out = append(out, "nftables elements tagged "+id)
	}
	if c := strings.Count(rules, r.by.ID+"/"); c < 3 {
		out = append(out, fmt.Sprintf("bystander has %d nftables elements, want its masquerade, isolation and port", c))
	}
	if n := len(r.sidecars()); n != 1 {
		out = append(out, fmt.Sprintf("%d DNS sidecars, want 1 (the bystander's network)", n))
	}
	return out
}

// rules is the host namespace's firewall as text: the nftables ruleset and
// the iptables rules with their comments (iptables-nft rules show their
// comments only there), both carrying the owner tags.
func (r *rig) rules() string {
	r.t.Helper()
	var b strings.Builder
	for _, cmd := range [][]string{{"nft", "list", "ruleset"}, {"iptables-save"}, {"ip6tables-save"}} {
		out, err := r.env.Host.Exec(cmd...)
		if err != nil {
			r.t.Fatal(err)
		}
		b.WriteString(out)
	}
	return b.String()
}

// filesNaming lists files under dir (logs aside) whose name or content
// contains id.
func filesNaming(t testing.TB, dir, id string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".log") || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		if strings.Contains(d.Name(), id) {
			out = append(out, "file "+p)
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(id)) {
			out = append(out, "file "+p+" names "+id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sidecars are the DNS sidecar processes running in the rig's host
// namespace.
func (r *rig) sidecars() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
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
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == r.hostIno {
			out = append(out, pid)
		}
	}
	return out
}

// reattach proves the next ADD works: a clean ADD and DEL of a fresh ID.
func (r *rig) reattach(id string) {
	r.t.Helper()
	if err := r.add(id); err != nil {
		r.t.Fatalf("ADD after the crash: %v", err)
	}
	if err := r.del(id); err != nil {
		r.t.Fatalf("DEL of the ADD after the crash: %v", err)
	}
	if l := r.leaks(id); len(l) > 0 {
		r.t.Fatalf("after a clean ADD and DEL of %s: %s", id, strings.Join(l, "; "))
	}
}

// withEnv runs f with key=value in the environment libcni hands to the
// plugins it starts (its own environment).
func withEnv(key, value string, f func()) {
	os.Setenv(key, value)
	defer os.Unsetenv(key)
	f()
}

// waitNoSidecar waits (on pidfds, without polling) for every sidecar of
// the host namespace to exit.
func (r *rig) waitNoSidecar(timeout time.Duration) error {
	for _, pid := range r.sidecars() {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // already gone
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(timeout/time.Millisecond))
		unix.Close(fd)
		if err != nil || n == 0 {
			return fmt.Errorf("sidecar %d still running after %v", pid, timeout)
		}
	}
	return nil
}

// finish detaches the bystander and runs GC with an empty valid list:
// then nothing of any attachment is left, and the network's DNS sidecar
// has exited.
func (r *rig) finish() {
	r.t.Helper()
	if err := r.env.RT.Del(context.Background(), r.list, r.by.RC); err != nil {
		r.t.Fatalf("DEL of the bystander: %v", err)
	}
	if err := r.env.RT.GC(context.Background(), r.list); err != nil {
		r.t.Fatalf("GC with no valid attachment: %v", err)
	}
	links, err := r.hostLink.LinkList()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, l := range links {
		if l.Type() == "veth" {
			r.t.Errorf("veth %s left after the last DEL", l.Attrs().Name)
		}
	}
	for _, f := range append(filesNaming(r.t, r.env.DataDir, "victim"), filesNaming(r.t, r.env.DataDir, r.by.ID)...) {
		r.t.Errorf("left after the last DEL: %s", f)
	}
	rules := r.rules()
	if strings.Contains(rules, "victim") || strings.Contains(rules, r.by.ID+"/") {
		r.t.Errorf("nftables elements of an attachment left after the last DEL:\n%s", rules)
	}
	if err := r.waitNoSidecar(5 * time.Second); err != nil {
		r.t.Error(err)
	}
}
