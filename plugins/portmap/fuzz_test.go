package main

import (
	"fmt"
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzParseConfig: loadConf never panics; it refuses with a config code
// or returns mappings within the port and protocol ranges, without two on
// the same host address, port and protocol.
func FuzzParseConfig(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "portmap") {
		f.Add(s)
	}
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}]}}`))
	f.Fuzz(func(t *testing.T, stdin []byte) {
		c, err := loadConf(stdin)
		cnifuzz.CheckErr(t, plugin, err)
		if err != nil {
			return
		}
		if err := cni.SafeName("name", c.Name); err != nil {
			t.Fatalf("accepted network name %q: %v", c.Name, err)
		}
		seen := map[string]bool{}
		for _, m := range c.mappings {
			if m.HostPort < 0 || m.HostPort > 65535 || m.ContainerPort < 1 || m.ContainerPort > 65535 {
				t.Fatalf("accepted mapping %+v", m)
			}
			switch m.Protocol {
			case "tcp", "udp", "sctp":
			default:
				t.Fatalf("accepted protocol %q", m.Protocol)
			}
			k := fmt.Sprintf("%s/%s/%d", m.HostIP, m.Protocol, m.HostPort)
			if m.HostPort != 0 && seen[k] { // hostPort 0: chosen at ADD
				t.Fatalf("accepted a duplicate mapping %+v", m)
			}
			seen[k] = true
		}
		if _, err := cni.PrevResult(plugin, &c.NetConf); err != nil {
			cnifuzz.CheckErr(t, plugin, err)
		}
	})
}
