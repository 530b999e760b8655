package dnsplugin

import (
	"errors"
	"github.com/berthnet/berth/pkg/registry"
	"path/filepath"
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzParseConfig: loadConf, strict (ADD) and lenient (DEL), never
// panics; it refuses with a config code (lenient may also say the config
// was never added) or returns a config whose names and paths are safe to
// use.
func FuzzParseConfig(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "dnsname") {
		f.Add(s, "K8S_POD_NAME=web")
	}
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"dnsname","upstreams":["10.0.0.1","[fd00::1]:5353"],"registry":{"backend":"etcd","endpoints":["http://127.0.0.1:2379"]},"runtimeConfig":{"aliases":{"n":["db","db.a"]}}}`), "IgnoreUnknown=1;K8S_POD_NAME=a.b")
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		for _, lenient := range []bool{false, true} {
			c, err := loadConf(stdin, lenient)
			if lenient && errors.Is(err, errNeverAdded) {
				continue
			}
			cnifuzz.CheckErr(t, plugin, err)
			if err != nil {
				continue
			}
			if err := cni.SafeName("name", c.Name); err != nil {
				t.Fatalf("accepted network name %q: %v", c.Name, err)
			}
			if !filepath.IsAbs(c.DataDir) || !filepath.IsAbs(c.LogFile) {
				t.Fatalf("accepted relative paths %q %q", c.DataDir, c.LogFile)
			}
			if !lenient {
				if err := registry.ValidName(c.DomainName); err != nil {
					t.Fatalf("accepted domainName %q: %v", c.DomainName, err)
				}
				for _, a := range c.RuntimeConfig.Aliases[c.Name] {
					if err := registry.ValidName(a); err != nil {
						t.Fatalf("accepted alias %q: %v", a, err)
					}
				}
			}
			if _, err := cni.PrevResult(plugin, &c.NetConf); err != nil {
				cnifuzz.CheckErr(t, plugin, err)
			}
		}
		// CNI_ARGS as the plugin reads it: never a panic.
		_, _ = registry.ContainerNames(cniArgs, "fuzzed-id")
	})
}
