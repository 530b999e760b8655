// Package overlay_test runs the vxlan-overlay plugin and berth-overlayd on
// simulated hosts: each host is a private namespace with its own state
// directories, all linked by an underlay bridge in a namespace of its own,
// where a real etcd listens on the underlay address. Real VXLAN devices,
// real packets across hosts.
package overlay_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
