// Package firewall_test checks pkg/firewall's backends in private network
// namespaces: the kernel state they leave and real traffic through it.
package firewall_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
