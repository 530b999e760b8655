package main

import (
	"github.com/berthnet/berth/pkg/link"
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzLoadConf: loadConf never panics; it refuses with a config code or
// returns a config the rest of the plugin can use as is.
func FuzzLoadConf(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "bridge") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		c, err := loadConf(stdin)
		cnifuzz.CheckErr(t, plugin, err)
		if err != nil {
			return
		}
		if err := link.ValidName(c.BrName); err != nil || c.BrName == "" {
			t.Fatalf("accepted bridge %q: %v", c.BrName, err)
		}
		if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
			t.Fatalf("accepted mtu %d", c.MTU)
		}
		if c.mac != nil && (len(c.mac) != 6 || c.mac[0]&1 == 1) {
			t.Fatalf("accepted mac %v", c.mac)
		}
		if err := cni.SafeName("name", c.Name); err != nil {
			t.Fatalf("accepted network name %q: %v", c.Name, err)
		}
		if _, err := cni.PrevResult(plugin, &c.NetConf); err != nil {
			cnifuzz.CheckErr(t, plugin, err)
		}
	})
}
