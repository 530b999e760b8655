package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/overlay"
	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

// cmdCheck verifies the reservation, the VXLAN device, the bridge, the
// container interface's addresses, the masquerade and (etcd) the daemon.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := cni.NeedPrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	if err := ipamFor(conf, args, leasedSubnet(conf)).Check(prev); err != nil {
		return err
	}
	fail := func(format string, a ...any) error {
		return cni.Errorf(cni.CodeKernel, "%s: check: %s", plugin, fmt.Sprintf(format, a...))
	}
	if l, err := netlink.LinkByName(conf.device()); err != nil {
		return fail("vxlan %s: %v", conf.device(), err)
	} else if _, ok := l.(*netlink.Vxlan); !ok {
		return fail("%s is a %s, not a vxlan", conf.device(), l.Type())
	}
	br, err := netlink.LinkByName(conf.bridge())
	if err != nil {
		return fail("bridge %s: %v", conf.bridge(), err)
	}
	cont, err := link.OpenNS(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
	}
	defer cont.Close()
	cl, err := cont.Handle.LinkByName(args.IfName)
	if err != nil {
		return fail("interface %s: %v", args.IfName, err)
	}
	addrs, err := cont.Handle.AddrList(cl, netlink.FAMILY_V4)
	if err != nil {
		return fail("addresses of %s: %v", args.IfName, err)
	}
	for _, ipc := range prev.IPs {
		found := false
		for _, a := range addrs {
			found = found || a.IP.Equal(ipc.Address.IP)
		}
		if !found {
			return fail("%s lacks address %s", args.IfName, ipc.Address.String())
		}
	}
	hv, err := netlink.LinkByIndex(cl.Attrs().ParentIndex)
	if err != nil || hv.Attrs().MasterIndex != br.Attrs().Index {
		return fail("host end of %s is not attached to %s", args.IfName, conf.bridge())
	}
	if conf.IPMasq {
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
		}
		if err := fw.CheckMasq(masqFor(conf, args, prev.IPs)); err != nil {
			return fail("ipMasq: %v", err)
		}
	}
	return nil
}

// cmdGC releases what attachments not in cni.dev/valid-attachments left:
// reservations, masquerade rules, attachment records (and the daemon's
// users).
func cmdGC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := ipamFor(conf, args, leasedSubnet(conf)).GC(); err != nil {
		return err
	}
	valid := cni.ValidSet(conf.ValidAttachments)
	if err := registry.GCAttachments(conf.AttachmentsDir, conf.Name, valid); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: attachments GC", plugin)
	}
	if conf.IPMasq {
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
		}
		if err := fw.GCMasq(conf.Name, valid); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: ipMasq GC: %v", plugin, err)
		}
	}
	keys, err := overlay.Attachments(conf.DataDir, conf.Name)
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: attachments: %v", plugin, err)
	}
	validKeys := map[string]bool{}
	for a := range valid {
		validKeys[registry.EntryName(a.ContainerID, a.IfName)] = true
	}
	for _, k := range keys {
		if validKeys[k] {
			continue
		}
		if err := overlay.RemoveAttachment(conf.DataDir, conf.Name, k); err != nil {
			return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
		}
		if conf.Store.Type == overlay.StoreEtcd {
			if err := conf.client().Notify(overlay.Request{Op: overlay.OpDel, Network: overlay.Network{Name: conf.Name}, Key: k}, false); err != nil {
				return cni.Errorf(cni.CodePluginNotAvailable, "%s: %v", plugin, err)
			}
		}
	}
	return nil
}

// cmdStatus: ready when the host holds a lease (it can add containers
// without etcd), or, without one, when etcd answers; code 50 otherwise.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := firewall.Ready(conf.IPMasqBackend); conf.IPMasq && err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: ipMasq: %v", plugin, err)
	}
	if l, err := overlay.ReadLease(conf.leaseFile()); err == nil && l != nil {
		return nil
	}
	if conf.Store.Type != overlay.StoreEtcd {
		return nil
	}
	store, err := etcdstore.OpenConfig(&registry.Config{Backend: registry.BackendEtcd, Endpoints: conf.Store.Endpoints, TLS: conf.Store.TLS, DialTimeout: 2 * time.Second})
	if err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: etcd %s: %v", plugin, strings.Join(conf.Store.Endpoints, ","), err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := store.Client().Get(ctx, "health"); err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: no subnet leased yet and etcd at %s does not answer: %v", plugin, strings.Join(conf.Store.Endpoints, ","), err)
	}
	return nil
}
