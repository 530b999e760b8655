package registry

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/pkg/cni"
)

// DefaultAttachmentsDir is the one registry that every berth plugin which
// attaches a container (bridge, macvlan, …) records it in, and where
// container-mode resolves CONTAINER=<name|ID|prefix> and records its joins.
// One file store (Files), keyed like any other: <network>/<id>@<ifname>.json.
//
// It is under /run/cni, not /var/lib/cni: an entry is only meaningful with
// the network namespace path it names, and namespaces (their /run/netns
// bind mounts, their /proc/<pid> paths) do not survive a reboot. /run is a
// tmpfs emptied at boot, so the entries go with the namespaces; under
// /var/lib/cni they would outlive them and name paths that the next boot
// may give to other containers. (IPAM reservations are different: they are
// under /var/lib/cni because addresses must not be handed out twice while
// a runtime still believes a container holds one.)
const DefaultAttachmentsDir = "/run/cni/berth/attachments"

// AttachConf is the config field an attaching plugin embeds in its NetConf
// to make the registry's location configurable (tests and demos point it
// at their own directory, as they do dataDir):
//
//	{"type": "bridge", "attachmentsDir": "/tmp/x/attachments", …}
type AttachConf struct {
	AttachmentsDir string `json:"attachmentsDir,omitempty"`
}

// AttachmentsDir returns the registry directory dir means (the default
// when empty); a relative path is a code-7 error naming the field.
func AttachmentsDir(dir string) (string, error) {
	if dir == "" {
		return DefaultAttachmentsDir, nil
	}
	if !filepath.IsAbs(dir) {
		return "", cni.InvalidField("registry", "attachmentsDir", fmt.Sprintf("%q", dir), "must be an absolute path")
	}
	return filepath.Clean(dir), nil
}

// AttachmentEntry is what an ADD's result says about the attachment
// (network, args.ContainerID, args.IfName): the container's names from
// CNI_ARGS, its netns, the interface's MAC and host end, its addresses,
// gateways, routes and DNS.
func AttachmentEntry(network string, args *skel.CmdArgs, res *current.Result) *Entry {
	// A K8S_POD_NAME that is no valid name is left out (the short ID
	// still names the container): recording must never fail an ADD that
	// the plugin itself accepts.
	names, _ := ContainerNames(args.Args, args.ContainerID)
	e := &Entry{
		Network: network, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns,
		Host: hostname(), Names: names, Routes: res.Routes, Created: time.Now().UTC(),
	}
	if !res.DNS.IsEmpty() {
		dns := res.DNS
		e.ResolvConf = &dns
	}
	ifIdx := -1
	for i, itf := range res.Interfaces {
		if itf.Name == args.IfName && itf.Sandbox != "" {
			ifIdx = i
			e.MAC = itf.Mac
			// The host end of a veth is, in every reference-shaped result
			// (bridge, ptp), the host interface listed right before it.
			if i > 0 && res.Interfaces[i-1].Sandbox == "" {
				e.HostIf = res.Interfaces[i-1].Name
			}
			break
		}
	}
	for _, ipc := range res.IPs {
		if ipc.Interface != nil && *ipc.Interface != ifIdx {
			continue
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		e.IPs = append(e.IPs, netip.PrefixFrom(a.Unmap(), ones))
		if g, ok := netip.AddrFromSlice(ipc.Gateway); ok && !slices.Contains(e.Gateways, g.Unmap()) {
			e.Gateways = append(e.Gateways, g.Unmap())
		}
	}
	return e
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// RecordAttachment records the attachment an ADD just made (see
// AttachmentEntry) in the registry at dir ("" is DefaultAttachmentsDir):
// one small file written atomically under the network's lock and a
// symlink per name for lookups (Attachments), no scan.
// Call it as the ADD's last step and undo it with ForgetAttachment if
// anything after it fails:
//
//	if err := registry.RecordAttachment(conf.AttachmentsDir, conf.Name, args, result); err != nil { … }
func RecordAttachment(dir, network string, args *skel.CmdArgs, res *current.Result) error {
	root, err := AttachmentsDir(dir)
	if err != nil {
		return err
	}
	a, err := OpenAttachments(root)
	if err != nil {
		return err
	}
	return a.Put(context.Background(), AttachmentEntry(network, args, res))
}

// ForgetAttachment removes the entry of (network, args.ContainerID,
// args.IfName), for DEL: a missing entry or registry, and a key or dir that
// cannot have been recorded (a config ADD refused), are not errors, and
// nothing is created.
func ForgetAttachment(dir, network string, args *skel.CmdArgs) error {
	root, err := AttachmentsDir(dir)
	if err != nil {
		return nil //nolint:nilerr // RecordAttachment refused it: nothing recorded
	}
	if ValidKey(network, args.ContainerID, args.IfName) != nil || !isDir(root) {
		return nil
	}
	a := &Attachments{Files: &Files{root: root}}
	return a.Delete(context.Background(), network, args.ContainerID, args.IfName)
}

// GCAttachments removes the network's entries whose attachment is not in
// valid (GC's cni.dev/valid-attachments).
func GCAttachments(dir, network string, valid map[cni.Attachment]bool) error {
	root, err := AttachmentsDir(dir)
	if err != nil {
		return err
	}
	if !isDir(root) {
		return nil
	}
	a := &Attachments{Files: &Files{root: root}}
	ctx := context.Background()
	entries, err := a.List(ctx, network)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if valid[e.Key()] {
			continue
		}
		if err := a.Delete(ctx, e.Network, e.ContainerID, e.IfName); err != nil {
			return err
		}
	}
	return a.Sweep()
}

// isDir reports whether the registry root is a directory: if it is not
// (missing, or a file in the way), nothing can have been recorded there.
func isDir(root string) bool {
	fi, err := os.Stat(root)
	return err == nil && fi.IsDir()
}
