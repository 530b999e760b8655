// Package dnsname_test runs the bridge + host-local + dnsname chain through
// libcni in private namespaces and asks real DNS questions from inside the
// containers.
package dnsname_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
