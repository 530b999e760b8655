// Package storm_test puts berth under a runtime's load and a host restart:
// many concurrent ADD/DEL cycles over Docker's chain, then an audit of
// everything berth can leave behind; and GC reconciling state kept on disk
// across a reboot. Real binaries through libcni in private namespaces.
package storm_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
