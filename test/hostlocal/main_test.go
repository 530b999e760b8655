// Package hostlocal tests the host-local binary as runtimes use it: through
// libcni, with every plugin process started in a private "host" namespace,
// and side by side with the reference host-local v1.9.1 on one store.
package hostlocal

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
