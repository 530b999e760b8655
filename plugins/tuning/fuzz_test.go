package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzParseConf: loadConf (config and CNI_ARGS) never panics; it refuses
// with a config code or returns a config whose sysctl keys map to paths
// under /proc/sys and whose values are one line.
func FuzzParseConf(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "tuning") {
		f.Add(s, "")
	}
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"tuning","sysctl":{"net.ipv4.conf.IFNAME.rp_filter":"1"},"mac":"02:00:00:00:00:01","mtu":1400,"txQLen":10,"args":{"cni":{"mtu":1300,"sysctl":{"net.ipv6.conf.IFNAME.accept_ra":"0"}}}}`), "IgnoreUnknown=1;MAC=02:00:00:00:00:02")
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"tuning","sysctl":{"net/ipv4/../../../etc/passwd":"x"}}`), "MAC=zz")
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		c, err := loadConf(stdin, cniArgs)
		cnifuzz.CheckErr(t, plugin, err)
		if err != nil {
			return
		}
		if c.Mtu != 0 && (c.Mtu < 68 || c.Mtu > 65535) {
			t.Fatalf("accepted mtu %d", c.Mtu)
		}
		for k, v := range c.SysCtl {
			p, err := sysctlPath(k, "eth0")
			if err != nil {
				t.Fatalf("accepted sysctl %q: %v", k, err)
			}
			// Inside /proc/sys with no "." or ".." component ("..0" is a
			// name like any other).
			if !strings.HasPrefix(p, "/proc/sys/") || filepath.Clean(p) != p {
				t.Fatalf("sysctl %q maps to %q", k, p)
			}
			if strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("accepted sysctl value %q", v)
			}
		}
		if _, err := cni.PrevResult(plugin, &c.NetConf); err != nil {
			cnifuzz.CheckErr(t, plugin, err)
		}
	})
}
