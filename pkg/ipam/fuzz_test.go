package ipam

import (
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzParse: Parse (the whole network config and CNI_ARGS) never panics;
// it refuses with a config code or returns a config that validates again,
// whose network name is one safe path component and whose requested
// addresses are valid.
func FuzzParse(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "bridge") {
		f.Add(s, "")
	}
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"type":"host-local","subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1","mtu":1400,"table":5}]},"runtimeConfig":{"ips":["10.1.0.12/24"]},"args":{"cni":{"ips":["10.1.0.13"]}}}`), "IgnoreUnknown=1;IP=10.1.0.14,10.1.0.15;K8S_POD_NAME=x")
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"type":"host-local","ranges":[[{"subnet":"auto"}],[{"subnet":"fd00::/64"}]],"subnetPools":[{"base":"10.128.0.0/9","size":24}]},"runtimeConfig":{"ipRanges":[[{"subnet":"10.2.0.0/16"}]]}}`), "IP=fd00::9")
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"../../etc","ipam":{"subnet":"10.0.0.0/33"}}`), "IP=10.0.0.999")
	f.Fuzz(func(t *testing.T, stdin []byte, envArgs string) {
		c, err := Parse(stdin, envArgs)
		cnifuzz.CheckErr(t, Plugin, err)
		if err != nil {
			return
		}
		if err := cni.SafeName("name", c.Name); err != nil || strings.HasPrefix(c.Name, metaDirName) {
			t.Fatalf("accepted network name %q: %v", c.Name, err)
		}
		if len(c.RangeSets) == 0 {
			t.Fatal("accepted a config without ranges")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		for _, r := range c.Requested {
			if !r.Addr.IsValid() {
				t.Fatalf("accepted requested address %v from %s", r.Addr, r.Source)
			}
		}
	})
}
