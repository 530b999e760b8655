// Command berth-overlayd is the per-host daemon of the vxlan-overlay
// plugin (pkg/overlay, on internal/hostd): it keeps this host's subnet
// lease alive in etcd and programs a route, a neighbour and an FDB entry
// for every other host of each overlay. The plugin starts it on the first
// ADD of an etcd-backed overlay; it exits with the host's last overlay
// container.
package main

import (
	"os"

	"github.com/berthnet/berth/pkg/overlay"
)

func main() { os.Exit(overlay.Main()) }
