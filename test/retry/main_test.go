// Package retry_test holds the regression tests of issue 8's defects: what
// a runtime's retries, stale DELs and reused addresses must not break. Real
// binaries through libcni in private namespaces, real traffic.
package retry_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
