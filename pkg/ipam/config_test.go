package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func conf(ipam string) []byte {
	return []byte(`{"cniVersion":"1.0.0","name":"net1","type":"bridge","ipam":{"type":"host-local",` + ipam + `}}`)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		args     string
		wantCode uint
		wantMsg  string
	}{
		{"bad CIDR", conf(`"ranges":[[{"subnet":"10.1.0.0/33"}]]`), "", 7, "host-local: ranges[0][0].subnet 10.1.0.0/33: invalid CIDR"},
		{"legacy bad CIDR", conf(`"subnet":"banana"`), "", 7, "host-local: subnet banana: invalid CIDR"},
		{"host bits", conf(`"ranges":[[{"subnet":"10.1.0.1/24"}]]`), "", 7, "ranges[0][0].subnet 10.1.0.1/24: host bits set"},
		{"start outside", conf(`"ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.2.0.1"}]]`), "", 7, "ranges[0][0].rangeStart 10.2.0.1: not in subnet 10.1.0.0/24"},
		{"end outside", conf(`"ranges":[[{"subnet":"10.1.0.0/24","rangeEnd":"10.1.1.1"}]]`), "", 7, "ranges[0][0].rangeEnd 10.1.1.1: not in subnet"},
		{"end bad", conf(`"ranges":[[{"subnet":"10.1.0.0/24","rangeEnd":"x"}]]`), "", 7, "ranges[0][0].rangeEnd x: invalid IP address"},
		{"start after end", conf(`"ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.9","rangeEnd":"10.1.0.5"}]]`), "", 7, "rangeStart 10.1.0.9: after rangeEnd 10.1.0.5"},
		{"gateway family", conf(`"ranges":[[{"subnet":"10.1.0.0/24","gateway":"fd00::1"}]]`), "", 7, "ranges[0][0].gateway fd00::1: address family differs"},
		{"overlapping sets", conf(`"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"10.1.0.0/25"}]]`), "", 7, "ranges[1][0].subnet 10.1.0.0/25: range set 1 overlaps range set 0 (10.1.0.0/24)"},
		{"overlap in set", conf(`"ranges":[[{"subnet":"10.1.0.0/24"},{"subnet":"10.1.0.0/16"}]]`), "", 7, "ranges[0][1].subnet 10.1.0.0/16: overlaps ranges[0][0] 10.1.0.0/24"},
		{"mixed families", conf(`"ranges":[[{"subnet":"10.1.0.0/24"},{"subnet":"fd00::/64"}]]`), "", 7, "ranges[0][1].subnet fd00::/64: IPv6 in a range set of IPv4 ranges"},
		{"empty set", conf(`"ranges":[[]]`), "", 7, "ranges[0] []: empty range set"},
		{"no ranges", conf(`"routes":[]`), "", 7, "no IP ranges specified"},
		{"no ipam", []byte(`{"name":"n"}`), "", 7, "host-local: ipam: missing"},
		{"bad name", []byte(`{"name":"../x","ipam":{"subnet":"10.0.0.0/24"}}`), "", 7, `name "../x"`},
		{"reserved name", []byte(`{"name":".berth","ipam":{"subnet":"10.0.0.0/24"}}`), "", 7, "name .berth: names starting with .berth are reserved"},
		{"route dst", conf(`"subnet":"10.1.0.0/24","routes":[{"dst":"nope"}]`), "", 7, `routes[0].dst "nope": invalid CIDR`},
		{"route gw", conf(`"subnet":"10.1.0.0/24","routes":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]`), "", 7, "routes[0].gw fd00::1: address family differs"},
		{"auto with start", conf(`"ranges":[[{"subnet":"auto","rangeStart":"10.0.0.1"}]]`), "", 7, `ranges[0][0].rangeStart 10.0.0.1: cannot be set with "subnet": "auto"`},
		{"pool size", conf(`"ranges":[[{"subnet":"auto"}]],"subnetPools":[{"base":"10.0.0.0/16","size":8}]`), "", 7, "subnetPools[0].size 8: must be between 16 and 30"},
		{"requested bad", conf(`"subnet":"10.1.0.0/24"`), "IgnoreUnknown=1;IP=10.1.0.300", 7, "CNI_ARGS IP[0] 10.1.0.300: invalid IP address"},
		{"decode", []byte(`{"name":"n","ipam":{"ranges":"x"}}`), "", 6, "host-local: ipam.ranges: cannot use JSON string"},
		{"syntax", []byte(`{"name":`), "", 6, "host-local: decoding config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in, tt.args)
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *types.Error", err)
			}
			if ce.Code != tt.wantCode || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Fatalf("got code %d %q, want code %d containing %q", ce.Code, ce.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		want  string // range sets, "subnet start-end gw" per range
		wantR string // requested addresses
	}{
		{"legacy /24", conf(`"subnet":"10.1.0.0/24"`), "[10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1]", ""},
		{"explicit", conf(`"ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20","gateway":"10.1.0.254"}]]`), "[10.1.0.0/24 10.1.0.10-10.1.0.20 gw 10.1.0.254]", ""},
		{"/31", conf(`"subnet":"10.1.0.0/31"`), "[10.1.0.0/31 10.1.0.0-10.1.0.1 gw invalid IP]", ""},
		{"/32", conf(`"subnet":"10.1.0.7/32"`), "[10.1.0.7/32 10.1.0.7-10.1.0.7 gw invalid IP]", ""},
		{"v6", conf(`"ranges":[[{"subnet":"fd00::/120"}]]`), "[fd00::/120 fd00::1-fd00::ff gw fd00::1]", ""},
		{"order: ipRanges, legacy, ranges",
			[]byte(`{"name":"n","runtimeConfig":{"ipRanges":[[{"subnet":"10.3.0.0/24"}]]},"ipam":{"subnet":"10.1.0.0/24","ranges":[[{"subnet":"10.2.0.0/24"}]]}}`),
			"[10.3.0.0/24 10.3.0.1-10.3.0.254 gw 10.3.0.1] [10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1] [10.2.0.0/24 10.2.0.1-10.2.0.254 gw 10.2.0.1]", ""},
		{"requested, three ways",
			[]byte(`{"name":"n","args":{"cni":{"ips":["10.1.0.6"]}},"runtimeConfig":{"ips":["10.1.0.7/24"]},"ipam":{"subnet":"10.1.0.0/24"}}`),
			"[10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1]", "CNI_ARGS IP[0]=10.1.0.5 CNI_ARGS IP[1]=fd00::5 args.cni.ips[0]=10.1.0.6 runtimeConfig.ips[0]=10.1.0.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.in, "K8S_POD_NAME=x;IP=10.1.0.5,fd00::5")
			if err != nil {
				t.Fatal(err)
			}
			var sets []string
			for _, s := range c.RangeSets {
				var rs []string
				for _, r := range s {
					rs = append(rs, fmt.Sprintf("%s %s-%s gw %s", r.Subnet, r.Start, r.End, r.Gateway))
				}
				sets = append(sets, "["+strings.Join(rs, ", ")+"]")
			}
			if got := strings.Join(sets, " "); got != tt.want {
				t.Errorf("ranges: got %s, want %s", got, tt.want)
			}
			if tt.wantR != "" {
				var rq []string
				for _, r := range c.Requested {
					rq = append(rq, r.Source+"="+r.Addr.String())
				}
				if got := strings.Join(rq, " "); got != tt.wantR {
					t.Errorf("requested: got %s, want %s", got, tt.wantR)
				}
			}
			if c.DataDir != DefaultDataDir {
				t.Errorf("dataDir: got %s, want %s", c.DataDir, DefaultDataDir)
			}
		})
	}
}

func TestLastAddr(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"10.0.0.0/8", "10.255.255.255"}, {"10.1.2.0/23", "10.1.3.255"}, {"10.1.2.3/32", "10.1.2.3"},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff"}, {"0.0.0.0/0", "255.255.255.255"},
	} {
		if got := lastAddr(netip.MustParsePrefix(tt.in)).String(); got != tt.want {
			t.Errorf("lastAddr(%s): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	content := "# comment\n; other\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.test\nsearch a.test b.test\noptions ndots:2 edns0\nbogus\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	dns, err := ParseResolvConf(path)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v|%s|%v|%v", dns.Nameservers, dns.Domain, dns.Search, dns.Options)
	if want := "[10.0.0.53 fd00::53]|example.test|[a.test b.test]|[ndots:2 edns0]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := ParseResolvConf(path + ".missing"); err == nil {
		t.Error("missing file: got nil error")
	}
}
