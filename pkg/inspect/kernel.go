package inspect

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

// CheckKernel cross-checks an entry with the kernel: its namespace path
// still names a namespace, the container's interface is in it, and its
// host end is in the caller's namespace (the node's, where the plugins
// ran). It returns the state and, unless live, why, and the interface's
// MAC as the kernel has it ("" when not read). A MAC other than the
// recorded one does not make an attachment stale: a plugin chained after
// the one that recorded it (tuning) may set it.
func CheckKernel(e *registry.Entry) (state, reason, mac string) {
	if e.Netns == "" {
		return Unknown, "no netns recorded", ""
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.Netns, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Stale, "netns " + e.Netns + " is gone", ""
		}
		return Unknown, fmt.Sprintf("netns %s: %v", e.Netns, err), ""
	}
	// A /run/netns path whose mount went away is an empty file on the
	// parent file system, no namespace.
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return Stale, "netns " + e.Netns + " is no longer a namespace", ""
	}
	ns, err := link.OpenNS(e.Netns)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Stale, "netns " + e.Netns + " is gone", ""
		}
		return Unknown, err.Error(), ""
	}
	defer ns.Close()
	l, err := ns.Handle.LinkByName(e.IfName)
	if err != nil {
		if link.IsNotFound(err) {
			return Stale, fmt.Sprintf("interface %s is gone from netns %s", e.IfName, e.Netns), ""
		}
		return Unknown, fmt.Sprintf("interface %s: %v", e.IfName, err), ""
	}
	mac = l.Attrs().HardwareAddr.String()
	if e.HostIf != "" {
		if _, err := netlink.LinkByName(e.HostIf); err != nil {
			if link.IsNotFound(err) {
				return Stale, "host veth " + e.HostIf + " is gone", mac
			}
			return Unknown, fmt.Sprintf("host veth %s: %v", e.HostIf, err), mac
		}
	}
	return Live, "", mac
}
