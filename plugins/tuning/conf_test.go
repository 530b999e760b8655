package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		key, ifName, want string
		wantErr           bool
	}{
		{"net.ipv4.conf.IFNAME.arp_filter", "eth0", "/proc/sys/net/ipv4/conf/eth0/arp_filter", false},
		{"net.ipv4.conf.IFNAME.arp_filter", "eth0.100", "/proc/sys/net/ipv4/conf/eth0.100/arp_filter", false},
		{"net/ipv6/conf/IFNAME/mtu", "net1", "/proc/sys/net/ipv6/conf/net1/mtu", false},
		{"net.core.somaxconn", "eth0", "/proc/sys/net/core/somaxconn", false},
		{"kernel.hostname", "eth0", "", true},
		{"net..x", "eth0", "", true},
		{"net/../kernel/x", "eth0", "", true},
		{"net.ipv4", "eth0", "", true},
		{"net.ipv4.conf.IFNAME.x", "..", "", true},
	}
	for _, tt := range tests {
		got, err := sysctlPath(tt.key, tt.ifName)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("sysctlPath(%q, %q) = %q, %v; want %q, err=%v", tt.key, tt.ifName, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseConf(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		args     string
		wantCode uint
		wantMsg  string
		check    func(*NetConf) string
	}{
		{name: "defaults", in: `{"name":"n","type":"tuning"}`, check: func(c *NetConf) string {
			if c.DataDir != defaultDataDir || c.AllowlistFile != defaultAllowlist {
				return c.DataDir + " " + c.AllowlistFile
			}
			return ""
		}},
		{name: "runtimeConfig mac wins over config and CNI_ARGS", in: `{"name":"n","mac":"02:00:00:00:00:01","runtimeConfig":{"mac":"02:00:00:00:00:03"}}`,
			args: "IgnoreUnknown=1;MAC=02:00:00:00:00:02", check: func(c *NetConf) string {
				if c.mac.String() != "02:00:00:00:00:03" {
					return c.mac.String()
				}
				return ""
			}},
		{name: "args.cni overrides", in: `{"name":"n","mtu":1400,"args":{"cni":{"mtu":1300,"sysctl":{"net.ipv4.conf.IFNAME.arp_filter":"1"}}}}`, check: func(c *NetConf) string {
			if c.Mtu != 1300 || c.SysCtl["net.ipv4.conf.IFNAME.arp_filter"] != "1" {
				return "not overridden"
			}
			return ""
		}},
		{name: "bad mac", in: `{"name":"n","mac":"zz"}`, wantCode: 7, wantMsg: "mac zz"},
		{name: "multicast mac", in: `{"name":"n","mac":"01:00:00:00:00:01"}`, wantCode: 7, wantMsg: "unicast"},
		{name: "mtu too small", in: `{"name":"n","mtu":20}`, wantCode: 7, wantMsg: "mtu 20"},
		{name: "negative txQLen", in: `{"name":"n","txQLen":-1}`, wantCode: 7, wantMsg: "txQLen -1"},
		{name: "not net", in: `{"name":"n","sysctl":{"kernel.panic":"1"}}`, wantCode: 7, wantMsg: "sysctl kernel.panic"},
		{name: "duplicate", in: `{"name":"n","sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}}`, wantCode: 7, wantMsg: "given twice"},
		{name: "wrong type", in: `{"name":"n","mtu":"big"}`, wantCode: 6, wantMsg: "mtu"},
		{name: "bad CNI_ARGS", in: `{"name":"n"}`, args: "MAC", wantCode: 4, wantMsg: "CNI_ARGS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConf([]byte(tt.in), tt.args)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if msg := tt.check(c); msg != "" {
					t.Fatalf("got %s", msg)
				}
				return
			}
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != tt.wantCode || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Fatalf("got %v, want code %d containing %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestAllowlist(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "allowlist.conf")
	if err := os.WriteFile(file, []byte("^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]+$\n\n^net\\.core\\.somaxconn$\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file, key string
		ok        bool
	}{
		{file, "net.ipv4.conf.IFNAME.arp_filter", true},
		{file, "net.core.somaxconn", true},
		{file, "net.ipv4.ip_forward", false},
		{filepath.Join(dir, "absent"), "net.ipv4.ip_forward", true},
	}
	for _, tt := range tests {
		c := &NetConf{AllowlistFile: tt.file, SysCtl: map[string]string{tt.key: "1"}}
		err := c.checkAllowed()
		if (err == nil) != tt.ok {
			t.Errorf("%s with %s: got %v, want ok=%v", tt.key, filepath.Base(tt.file), err, tt.ok)
		}
	}
}
