// Package security tests berth's security promises as tests: state file
// permissions, isolation between networks and icc off for every protocol
// and family in both directions, host-IP-bound published ports, the DNS
// sidecar's audience.
package security

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
