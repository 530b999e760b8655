package link

import "testing"

func TestSysctlPath(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net/ipv4/conf/eth0.100/forwarding", "/proc/sys/net/ipv4/conf/eth0.100/forwarding"},
		{"/net/core/somaxconn", "/proc/sys/net/core/somaxconn"},
	} {
		if got := SysctlPath(tt.key); got != tt.want {
			t.Errorf("SysctlPath(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}
