// Package bridge_test runs the bridge, host-local and loopback binaries
// through libcni in private namespaces and checks the kernel state and real
// traffic: seed scenario 1, the default bridge.
package bridge_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
