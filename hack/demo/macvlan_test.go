package main

import (
	"os"
	"testing"
)

// TestVLANDemo runs the macvlan scenario as `make demo` does. Here it shows
// the untagged part (and says where the VLAN part is) when the kernel
// lacks 802.1q; the VM lane (`make test-vm`) runs it with 802.1q, so the
// VLAN part is exercised too. Needs root and the built plugins
// (BERTH_CNI_PATH, or ./bin at the module root).
func TestVLANDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the demo needs root (network namespaces)")
	}
	root := os.Getenv("BERTH_MODULE_ROOT")
	if root == "" {
		root = "../.."
	}
	t.Chdir(root)
	d, err := newDemo()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	if err := macvlanLAN(d); err != nil {
		t.Fatal(err)
	}
}
