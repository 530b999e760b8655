package inspect

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestLoadConfs: libcni's rules: .conflist files in name order first, then
// .conf/.json up-converted; the first file of a name wins; a file that does
// not parse is reported and skipped; state dirs come from the plugins'
// fields, else the defaults.
func TestLoadConfs(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"10-a.conflist":   `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge","bridge":"br-a","ipMasq":true,"attachmentsDir":"/x/att","ipam":{"type":"host-local","dataDir":"/x/ipam","ranges":[[{"subnet":"10.1.0.0/24"}]]}},{"type":"firewall","ingressPolicy":"same-bridge"},{"type":"dnsname","dataDir":"/x/dns"}]}`,
		"20-a.conflist":   `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"macvlan"}]}`,
		"30-b.conf":       `{"cniVersion":"1.0.0","name":"b","type":"bridge","ipam":{"type":"host-local","subnet":"10.2.0.0/16","gateway":"10.2.0.254"}}`,
		"05-a.conf":       `{"cniVersion":"1.0.0","name":"a","type":"ptp"}`,
		"40-bad.conflist": `{"name":`,
		"ignored.txt":     `{}`,
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	confs, errs := LoadConfs(dir)
	if len(errs) != 1 {
		t.Fatalf("errors %v, want one (40-bad.conflist)", errs)
	}
	if len(confs) != 2 || confs[0].List.Name != "a" || confs[1].List.Name != "b" {
		t.Fatalf("got %d networks", len(confs))
	}
	a, b := confs[0], confs[1]
	tests := []struct{ field, got, want string }{
		{"a file", filepath.Base(a.File), "10-a.conflist"},
		{"a driver", a.Driver(), "bridge"},
		{"a bridge", a.Bridge, "br-a"},
		{"a attachmentsDir", a.AttachmentsDir, "/x/att"},
		{"a ipamDir", a.IPAMDir, "/x/ipam"},
		{"a dnsDir", a.DNSDir, "/x/dns/registry"},
		{"a policy", a.IngressPolicy, "same-bridge"},
		{"a subnet", a.Ranges[0].Subnet, "10.1.0.0/24"},
		{"b file", filepath.Base(b.File), "30-b.conf"},
		{"b bridge default", b.Bridge, "cni0"},
		{"b attachmentsDir default", b.AttachmentsDir, "/run/cni/berth/attachments"},
		{"b ipamDir default", b.IPAMDir, "/var/lib/cni/networks"},
		{"b gateway", b.Ranges[0].Gateway, "10.2.0.254"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %q, want %q", tt.field, tt.got, tt.want)
		}
	}
	if _, err := FindConf(dir, "nope"); err == nil {
		t.Error("FindConf of an unknown name: no error")
	}
}

func TestRangeSize(t *testing.T) {
	tests := []struct {
		prefix string
		rc     RangeConf
		want   string
	}{
		{"10.0.0.0/24", RangeConf{}, "253"},
		{"10.0.0.0/24", RangeConf{Gateway: "10.0.0.1"}, "253"},
		{"10.0.0.0/24", RangeConf{RangeStart: "10.0.0.10", RangeEnd: "10.0.0.19"}, "10"},
		{"10.0.0.0/30", RangeConf{}, "1"},
		{"fd00::/64", RangeConf{}, "18446744073709551614"},
	}
	for _, tt := range tests {
		if got := rangeSize(netip.MustParsePrefix(tt.prefix), tt.rc).String(); got != tt.want {
			t.Errorf("%s %+v: %s, want %s", tt.prefix, tt.rc, got, tt.want)
		}
	}
}

func TestPortString(t *testing.T) {
	tests := []struct {
		p    Port
		want string
	}{
		{Port{80, "tcp", "0.0.0.0", 3000}, "80/tcp -> 0.0.0.0:3000"},
		{Port{53, "udp", "::", 5353}, "53/udp -> [::]:5353"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.p, got, tt.want)
		}
	}
}
