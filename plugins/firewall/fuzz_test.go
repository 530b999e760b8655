package main

import (
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzParseConf: loadConf never panics; it refuses with a config code or
// returns a config with a safe network name and a known backend.
func FuzzParseConf(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "firewall") {
		f.Add(s)
	}
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"firewall","backend":"iptables","iptablesAdminChainName":"ADMIN","ingressPolicy":"same-bridge"}`))
	f.Fuzz(func(t *testing.T, stdin []byte) {
		c, err := loadConf(stdin)
		// firewall.NewIsolator and Isolation.Validate answer as "firewall:"
		// too, the plugin's name.
		cnifuzz.CheckErr(t, plugin, err)
		if err != nil {
			return
		}
		if c.iso == nil {
			t.Fatal("accepted config without an isolator")
		}
		if err := cni.SafeName("name", c.Name); err != nil {
			t.Fatalf("accepted network name %q: %v", c.Name, err)
		}
		if _, err := cni.PrevResult(plugin, &c.NetConf); err != nil {
			cnifuzz.CheckErr(t, plugin, err)
		}
	})
}
