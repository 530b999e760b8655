// Package portmap_test runs the portmap plugin chained after bridge and
// host-local, as containerd does, and checks published ports with real
// traffic from an "outside" namespace, the host, and containers.
package portmap_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
