package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/inspect"
	"github.com/berthnet/berth/pkg/link"
)

func ctxBG() context.Context { return context.Background() }

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// cleanup are the flags of the commands that change state.
type cleanup struct {
	force    bool
	cniPath  string
	cacheDir string
}

func (cl *cleanup) flags(fs interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
}) {
	fs.BoolVar(&cl.force, "force", false, "act; without it only print what would be done (dry run)")
	fs.StringVar(&cl.cniPath, "cni-path", envOr("CNI_PATH", "/opt/cni/bin"), "plugin `dirs` for DEL, colon-separated (env CNI_PATH)")
	fs.StringVar(&cl.cacheDir, "cache-dir", os.Getenv("CNI_CACHE_DIR"), "libcni cache `dir` (env CNI_CACHE_DIR; default libcni's, /var/lib/cni)")
}

// plan prints or does one step; failures are counted, not fatal, so one
// stuck attachment does not keep the rest from being cleaned.
type plan struct {
	e      *env
	force  bool
	failed int
}

func (p *plan) step(what string, do func() error) bool {
	if !p.force {
		fmt.Fprintf(p.e.stdout, "would %s\n", what)
		return true
	}
	if err := do(); err != nil {
		p.failed++
		fmt.Fprintf(p.e.stdout, "failed to %s: %v\n", what, err)
		return false
	}
	fmt.Fprintf(p.e.stdout, "did %s\n", what)
	return true
}

func (p *plan) result() error {
	if p.failed > 0 {
		return &cmdError{ExitPartial, fmt.Errorf("%d actions failed", p.failed)}
	}
	if !p.force {
		fmt.Fprintln(p.e.stdout, "(dry run: pass --force to act)")
	}
	return nil
}

// delStale runs the chain's DEL through libcni for each stale attachment
// (its namespace is gone), as the runtime would have: every plugin of the
// conflist removes its part (veth, reservation, nftables elements, names,
// registry entry). It returns how many it could not DEL (or would DEL).
func delStale(p *plan, cl *cleanup, cf *inspect.Conf, n *inspect.Network) int {
	left := 0
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(cl.cniPath), cl.cacheDir, nil)
	for _, a := range n.Attachments {
		if a.State != inspect.Stale {
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, IfName: a.IfName}
		what := fmt.Sprintf("DEL %s (%s) %s on network %s: %s", short(a.ContainerID), a.Name, a.IfName, n.Name, a.Reason)
		if !p.step(what, func() error { return cni.DelNetworkList(ctxBG(), cf.List, rt) }) || !p.force {
			left++
		}
	}
	return left
}

func gc(e *env, args []string) error {
	fs, c := newFlags(e, "gc [--force] [flags]",
		"For every network, runs the plugins' DEL (through libcni, with the network's\nconflist) for each stale attachment: one whose netns or interface is gone.\nDry run unless --force.")
	var cl cleanup
	cl.flags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("gc takes no arguments, got %q", pos)
	}
	p := &plan{e: e, force: cl.force}
	if _, _, err := inspectEach(e, c, func(cf *inspect.Conf, n *inspect.Network) { delStale(p, &cl, cf, n) }); err != nil {
		return err
	}
	return p.result()
}

func networkPrune(e *env, args []string) error {
	fs, c := newFlags(e, "network prune [--force] [flags]",
		"For each network with no live attachment: DELs its stale attachments (see gc),\nthen removes what berth left for it: the nftables elements tagged with the\nnetwork, its attachments and dnsname registry directories, and its bridge if\nberth created it (alias \"berth\") and it has no port left. A network with an\nattachment in state \"unknown\" is left alone. IPAM stores are left (their\nreservations go with the DELs). Dry run unless --force.")
	var cl cleanup
	cl.flags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("network prune takes no arguments, got %q", pos)
	}
	p := &plan{e: e, force: cl.force}
	_, _, err = inspectEach(e, c, func(cf *inspect.Conf, n *inspect.Network) {
		if n.LiveAttachments > 0 {
			return
		}
		if n.RegistryUnreadable {
			fmt.Fprintf(e.stdout, "skip network %s: its attachments could not be read\n", n.Name)
			return
		}
		if unknown := countState(n, inspect.Unknown); unknown > 0 {
			fmt.Fprintf(e.stdout, "skip network %s: %d attachments could not be checked\n", n.Name, unknown)
			return
		}
		if left := delStale(p, &cl, cf, n); left > 0 && cl.force {
			fmt.Fprintf(e.stdout, "skip network %s: %d stale attachments not removed\n", n.Name, left)
			return
		}
		pruneNetwork(p, cf, n)
	})
	if err != nil {
		return err
	}
	return p.result()
}

func countState(n *inspect.Network, state string) int {
	k := 0
	for _, a := range n.Attachments {
		if a.State == state {
			k++
		}
	}
	return k
}

// pruneNetwork removes what berth keeps for a network with no attachment.
func pruneNetwork(p *plan, cf *inspect.Conf, n *inspect.Network) {
	els, err := firewall.NetworkElements(n.Name)
	if err != nil {
		fmt.Fprintf(p.e.stderr, "berth: warning: nftables not read for %s: %v\n", n.Name, err)
	}
	if total, detail := countElements(els); total > 0 {
		p.step(fmt.Sprintf("remove %d nftables elements tagged with network %s (%s)", total, n.Name, detail),
			func() error { return firewall.RemoveNetwork(n.Name) })
	}
	for _, d := range []string{n.StateDirs.Attachments, n.StateDirs.DNS} {
		if d == "" {
			continue
		}
		dir := filepath.Join(d, n.Name)
		if isDir(dir) || exists(dir+".lock") {
			p.step("remove registry directory "+dir, func() error { return removeRegistryDir(dir) })
		}
	}
	if cf.Bridge != "" {
		// The host veths of the stale attachments go with their DEL
		// (done before this in --force, only planned in a dry run), and a
		// deleted netns takes its veth pair with it asynchronously.
		going := map[string]bool{}
		for _, a := range n.Attachments {
			if a.State == inspect.Stale && a.HostVeth != "" {
				going[a.HostVeth] = true
			}
		}
		if ok, why := ourEmptyBridge(cf.Bridge, going); ok {
			p.step("delete bridge "+cf.Bridge+" (berth's, no port left)", func() error {
				l, err := netlink.LinkByName(cf.Bridge)
				if err != nil {
					return err
				}
				return netlink.LinkDel(l)
			})
		} else if why != "" {
			fmt.Fprintf(p.e.stdout, "keep bridge %s: %s\n", cf.Bridge, why)
		}
	}
}

func countElements(els map[string]int) (int, string) {
	total := 0
	var parts []string
	for s, k := range els {
		total += k
		parts = append(parts, fmt.Sprintf("%s: %d", s, k))
	}
	sort.Strings(parts)
	return total, strings.Join(parts, ", ")
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// removeRegistryDir removes a network's registry directory only if it
// holds no entry (an entry written since the check belongs to a new
// attachment), and its lock file.
func removeRegistryDir(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".json") && !strings.HasPrefix(de.Name(), ".") {
			return fmt.Errorf("%s has an entry again (%s)", dir, de.Name())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Remove(dir + ".lock"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ourEmptyBridge says whether the bridge exists, carries berth's owner
// alias and has no port but those going (stale attachments' host veths); why explains a bridge that is kept ("" when there
// is none).
func ourEmptyBridge(name string, going map[string]bool) (ok bool, why string) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return false, ""
	}
	if _, isBr := l.(*netlink.Bridge); !isBr {
		return false, "not a bridge"
	}
	if l.Attrs().Alias != link.BridgeAlias {
		return false, "not created by berth (no alias \"" + link.BridgeAlias + "\")"
	}
	links, err := netlink.LinkList()
	if err != nil {
		return false, err.Error()
	}
	for _, o := range links {
		if o.Attrs().MasterIndex == l.Attrs().Index && !going[o.Attrs().Name] {
			return false, "port " + o.Attrs().Name + " is still on it"
		}
	}
	return true, ""
}
