// Package macvlan_test runs the macvlan and host-local binaries through
// libcni in private namespaces, on a "physical network" made of a veth
// whose far end is a router namespace, and checks the kernel state and
// real traffic. The VLAN tests need 802.1q: where this kernel lacks it
// they skip here and run in the VM lane (`make test-vm`).
package macvlan_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
