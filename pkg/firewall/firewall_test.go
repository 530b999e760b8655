package firewall

import (
	"net"
	"strings"
	"testing"

	"github.com/berthnet/berth/pkg/cni"
)

func TestTag(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct {
		net, id, ifn string
		wantNet      string
	}{
		{"bridge", "abc", "eth0", "bridge"},
		{long, long, "eth0", shorten(long)},
	}
	for _, tt := range tests {
		got := tag(tt.net, tt.id, tt.ifn)
		if len(got) > 255 || tagNetwork(got) != tt.wantNet || got != tag(tt.net, tt.id, tt.ifn) {
			t.Errorf("tag(%q…): got %q (network %q), want at most 255 bytes, network %q, stable", tt.net[:3], got, tagNetwork(got), tt.wantNet)
		}
	}
	valid := validTags("n", map[cni.Attachment]bool{{ContainerID: "c", IfName: "eth0"}: true})
	if !valid["n/c/eth0"] || len(valid) != 1 {
		t.Errorf("validTags: got %v, want {n/c/eth0}", valid)
	}
}

func TestIntervalOf(t *testing.T) {
	tests := []struct {
		cidr       string
		start, end string // end "" when the interval runs to the top
	}{
		{"172.17.0.5/16", "172.17.0.0", "172.18.0.0"},
		{"10.0.0.1/32", "10.0.0.1", "10.0.0.2"},
		{"255.255.255.0/24", "255.255.255.0", ""},
		{"fd00::5/64", "fd00::", "fd00:0:0:1::"},
	}
	for _, tt := range tests {
		ip, n, _ := net.ParseCIDR(tt.cidr)
		n.IP = ip
		els := intervalOf(familyOf(ip), n)
		got := []string{net.IP(els[0].Key).String()}
		if len(els) > 1 {
			got = append(got, net.IP(els[1].Key).String())
			if !els[1].IntervalEnd {
				t.Errorf("%s: second element is not an interval end", tt.cidr)
			}
		}
		want := []string{tt.start}
		if tt.end != "" {
			want = append(want, tt.end)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("intervalOf(%s): got %v, want %v", tt.cidr, got, want)
		}
	}
}

func TestNewPortMapperUnknownBackend(t *testing.T) {
	for _, b := range []string{"", NFTables, IPTables, "pf"} {
		_, err := NewPortMapper(b)
		if (err != nil) != (b == "pf") {
			t.Errorf("NewPortMapper(%q): got %v", b, err)
		}
	}
}

func TestPadded(t *testing.T) {
	tests := []struct {
		in   []byte
		want int
	}{{[]byte{6}, 4}, {[]byte{0, 80}, 4}, {make([]byte, 4), 4}, {make([]byte, 16), 16}}
	for _, tt := range tests {
		if got := len(padded(tt.in)); got != tt.want {
			t.Errorf("padded(%v): got %d bytes, want %d", tt.in, got, tt.want)
		}
	}
}
