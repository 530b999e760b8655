package storm_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
)

// stormConf is Docker's user-defined network as berth runs it: a bridge
// with masquerade, host-local, published ports, Docker's isolation and
// names. The /24 makes host-local hand freed addresses out again within a
// few hundred cycles.
const stormConf = `{
  "cniVersion": "1.1.0",
  "name": "storm",
  "plugins": [
    {"type": "bridge", "bridge": "brstorm", "isGateway": true, "isDefaultGateway": true,
     "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.60.0.0/24", "gateway": "10.60.0.1"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "ingressPolicy": "same-bridge"},
    {"type": "dnsname", "domainName": "dns.test", "upstreams": ["192.0.2.53"], "capabilities": {"aliases": true}},
    {"type": "loopback"}
  ]
}`

// world is a host namespace with a libcni runtime whose result cache the
// test can audit.
type world struct {
	*nstest.Env
	cache string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	e := nstest.NewEnv(t)
	w := &world{Env: e, cache: t.TempDir()}
	e.RT = &nstest.Runtime{Runtime: sandbox.NewRuntime(e.Host.NS, w.cache, nstest.CNIPath(t)), Host: e.Host}
	// Whatever happens, no sidecar of this test outlives it (it would also
	// keep the host namespace alive).
	t.Cleanup(func() {
		for _, pid := range w.sidecars() {
			p, err := os.FindProcess(pid)
			if err == nil {
				_ = p.Kill()
			}
		}
	})
	return w
}

// sidecars are the pids of DNS sidecars started with this test's state
// directory (their config, in the environment, names it).
func (w *world) sidecars() []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	needle := []byte(filepath.Join(w.DataDir, "dnsname"))
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !bytes.Contains(env, []byte("BERTH_DNSNAME_SIDECAR=")) || !bytes.Contains(env, needle) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(filepath.Base(d), &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// leaks lists what berth left of network in the world: links in the host
// namespace besides lo, the bridge and the test's own; reservations;
// nftables elements and chains of the network (and, with no attachment
// left at all, any element); iptables rules naming it; registry entries;
// sidecar processes; libcni cache entries. keep names attachments that
// are still meant to be there ("id/ifname").
func (w *world) leaks(t testing.TB, network, bridge string, keepIDs map[string]bool, extraLinks ...string) []string {
	t.Helper()
	var out []string
	allowed := map[string]bool{"lo": true, bridge: true}
	for _, l := range extraLinks {
		allowed[l] = true
	}
	for _, line := range strings.Split(strings.TrimSpace(w.Host.MustExec(t, "ip", "-o", "link", "show")), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		if !allowed[name] && !keepLink(line, keepIDs) {
			out = append(out, "link: "+name)
		}
	}
	for _, r := range reservations(w.DataDir, network) {
		if !keepIDs[r.owner] {
			out = append(out, "reservation: "+r.addr+" of "+r.owner)
		}
	}
	ruleset, _ := w.Host.Exec("nft", "list", "ruleset")
	for _, line := range strings.Split(ruleset, "\n") {
		if i := strings.Index(line, `comment "`+network+`/`); i >= 0 && !keepTagged(line[i:], network, keepIDs) {
			out = append(out, "nft: "+strings.TrimSpace(line))
		}
	}
	if len(keepIDs) == 0 {
		for _, line := range strings.Split(ruleset, "\n") {
			if strings.Contains(line, `comment "`+network+`"`) || strings.Contains(line, "chain masq-10.") ||
				strings.Contains(line, "-net-"+network+" ") {
				out = append(out, "nft: "+strings.TrimSpace(line))
			}
		}
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		s, _ := w.Host.Exec(cmd)
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, network+"/") {
				out = append(out, cmd+": "+line)
			}
		}
	}
	entries, _ := filepath.Glob(filepath.Join(w.DataDir, "dnsname", "registry", network, "*.json"))
	for _, e := range entries {
		id := strings.TrimSuffix(filepath.Base(e), ".json")
		if !keepIDs[strings.Replace(id, "@", "/", 1)] {
			out = append(out, "registry: "+filepath.Base(e))
		}
	}
	if len(keepIDs) == 0 {
		for _, pid := range w.sidecars() {
			// The last DEL's answer may precede the sidecar's exit by a
			// moment: wait for the exit (pidfd), bounded.
			if !exits(pid, 5*time.Second) {
				out = append(out, "sidecar process: "+strconv.Itoa(pid))
			}
		}
	}
	cached, _ := filepath.Glob(filepath.Join(w.cache, "results", network+"-*"))
	for _, c := range cached {
		id := strings.TrimPrefix(filepath.Base(c), network+"-")
		keep := false
		for k := range keepIDs {
			if strings.HasPrefix(id, strings.Split(k, "/")[0]+"-") {
				keep = true
			}
		}
		if !keep {
			out = append(out, "libcni cache: "+filepath.Base(c))
		}
	}
	return out
}

// keepLink: a host veth whose alias marks it as a kept attachment's.
func keepLink(line string, keepIDs map[string]bool) bool {
	for k := range keepIDs {
		if strings.Contains(line, "alias berth:"+k) {
			return true
		}
	}
	return false
}

func keepTagged(comment, network string, keepIDs map[string]bool) bool {
	for k := range keepIDs {
		if strings.HasPrefix(comment, `comment "`+network+"/"+k+`"`) {
			return true
		}
	}
	return false
}

type reservation struct{ addr, owner string }

// reservations reads host-local's reservation files of network: the file
// name is the address, the content "<containerID>\n<ifname>".
func reservations(dataDir, network string) []reservation {
	dir := filepath.Join(dataDir, "networks", network)
	entries, _ := os.ReadDir(dir)
	var out []reservation
	for _, en := range entries {
		n := en.Name()
		if en.IsDir() || n == "lock" || strings.HasPrefix(n, "last_reserved_ip") || strings.HasPrefix(n, ".") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, n))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		owner := strings.TrimSpace(lines[0])
		if len(lines) > 1 {
			owner += "/" + strings.TrimSpace(lines[1])
		}
		out = append(out, reservation{addr: n, owner: owner})
	}
	return out
}

// exits reports whether process pid exits within d, waiting on a pidfd.
func exits(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	defer unix.Close(fd)
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(d.Milliseconds()))
	return err == nil && n == 1
}
