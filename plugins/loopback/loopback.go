package main

import (
	"errors"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
)

const plugin = "loopback"

// lo is always the interface acted on, whatever CNI_IFNAME says: the
// reference plugin ignores it too, and runtimes pass "lo" or anything else.
const lo = "lo"

// NetConf is the common CNI config: loopback has no fields of its own.
type NetConf struct {
	types.NetConf

	// prev is the decoded prevResult, if chained.
	prev *current.Result
}

// loadConf decodes and validates stdin; every error is a CNI error.
func loadConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := cni.Decode(plugin, stdin, conf); err != nil {
		return nil, err
	}
	var err error
	if conf.prev, err = cni.PrevResult(plugin, &conf.NetConf); err != nil {
		return nil, err
	}
	return conf, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	prev := conf.prev
	ns, err := link.OpenNS(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %q: %v", plugin, args.Netns, err)
	}
	defer ns.Close()
	h := ns.Handle

	l, err := h.LinkByName(lo)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: finding %s in %s: %v", plugin, lo, args.Netns, err)
	}
	// Same as: ip link set lo up. The kernel adds 127.0.0.1/8 and ::1/128
	// while handling the change, so they are listed right after.
	if err := h.LinkSetUp(l); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: setting %s up in %s: %v", plugin, lo, args.Netns, err)
	}

	// Chained after another plugin: pass its result through unchanged, as
	// the reference does.
	if prev != nil {
		return cni.Print(prev, conf.CNIVersion)
	}

	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: lo, Mac: "00:00:00:00:00:00", Sandbox: args.Netns}},
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		addrs, err := link.AddrList(h, l, fam)
		if err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: listing addresses of %s: %v", plugin, lo, err)
		}
		for _, a := range addrs {
			// Someone put a routable address on lo: refuse rather than
			// report it as the container's loopback (as the reference does).
			if !a.IP.IsLoopback() {
				return cni.Errorf(cni.CodeInvalidConfig, "%s: %s in %s has non-loopback address %s", plugin, lo, args.Netns, a.IPNet)
			}
		}
		// Only the first address of each family, like the reference.
		if len(addrs) > 0 {
			res.IPs = append(res.IPs, &current.IPConfig{Interface: current.Int(0), Address: *addrs[0].IPNet})
		}
	}
	return cni.Print(res, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	if _, err := loadConf(args.StdinData); err != nil {
		return err
	}
	// No netns, or it is gone: the container's lo went with it.
	if args.Netns == "" {
		return nil
	}
	ns, err := link.OpenNS(args.Netns)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %q: %v", plugin, args.Netns, err)
	}
	defer ns.Close()
	h := ns.Handle
	l, err := h.LinkByName(lo)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: finding %s in %s: %v", plugin, lo, args.Netns, err)
	}
	// Same as: ip link set lo down.
	if err := h.LinkSetDown(l); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: setting %s down in %s: %v", plugin, lo, args.Netns, err)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	if _, err := loadConf(args.StdinData); err != nil {
		return err
	}
	ns, err := link.OpenNS(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %q: %v", plugin, args.Netns, err)
	}
	defer ns.Close()
	h := ns.Handle
	l, err := h.LinkByName(lo)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: finding %s in %s: %v", plugin, lo, args.Netns, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return cni.Errorf(cni.CodeKernel, "%s: %s in %s is down", plugin, lo, args.Netns)
	}
	return nil
}

// cmdGC has nothing to release: loopback keeps no state outside the netns.
func cmdGC(args *skel.CmdArgs) error {
	_, err := loadConf(args.StdinData)
	return err
}

// cmdStatus: loopback needs nothing outside the container to work.
func cmdStatus(args *skel.CmdArgs) error {
	_, err := loadConf(args.StdinData)
	return err
}
