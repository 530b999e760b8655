package macvlan_test

import (
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

// TestBadInput: each bad config is a CNI error with the right code naming
// the field and value, and the failed ADD leaves no link in the container,
// no reservation and no shared-link state.
func TestBadInput(t *testing.T) {
	l := newLAN(t)
	ctr := nstest.NewNS(t, "ctr")
	// A macvlan in the host namespace, to be refused as a parent.
	l.Host.MustExec(t, "ip", "link", "add", "mv0", "link", parent, "type", "macvlan", "mode", "bridge")
	l.Host.MustExec(t, "ip", "link", "set", "mv0", "up")
	ipamDir := l.DataDir + "/networks"
	conf := func(extra string) []byte {
		return []byte(`{"cniVersion":"1.0.0","name":"bad","type":"macvlan","dataDir":"` + l.DataDir + `/macvlan",` + extra +
			`"ipam":{"type":"host-local","dataDir":"` + ipamDir + `","ranges":[[{"subnet":"192.168.1.0/24","rangeStart":"192.168.1.100","rangeEnd":"192.168.1.120"}]]}}`)
	}
	env := func(cmd string) []string {
		return []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=bad-input", "CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0"}
	}
	tests := []struct {
		name     string
		conf     []byte
		wantCode uint
		wantMsg  string
	}{
		{"missing parent", conf(`"master":"eth9",`), 7, "macvlan: master eth9: no such interface"},
		{"bad mode", conf(`"master":"eth0","mode":"turbo",`), 7, `macvlan: mode "turbo": must be bridge, private, vepa, passthru or source`},
		{"vlan out of range", conf(`"master":"eth0","vlan":5000,`), 7, "macvlan: vlan 5000: must be between 1 and 4094"},
		{"vlan id in master out of range", conf(`"master":"eth0.5000",`), 7, "macvlan: master eth0.5000: VLAN id 5000: must be between 1 and 4094"},
		{"vlan id zero in master", conf(`"master":"eth0.0",`), 7, "macvlan: master eth0.0: VLAN id 0"},
		{"missing vlan parent", conf(`"master":"eth9.100",`), 7, "macvlan: master eth9.100: no such interface, nor its parent eth9"},
		{"parent is a macvlan", conf(`"master":"mv0",`), 7, "macvlan: master mv0: is itself a macvlan"},
		{"vlan parent is a macvlan", conf(`"master":"mv0.100",`), 7, "macvlan: master mv0.100: parent mv0 is itself a macvlan"},
		{"mtu above the parent's", conf(`"master":"eth0","mtu":9000,`), 7, "macvlan: mtu 9000: above the MTU 1500 of master eth0"},
		{"mtu above a vlan parent's", conf(`"master":"eth0","vlan":100,"mtu":9000,`), 7, "macvlan: mtu 9000: above the MTU 1500 of eth0"},
		{"no default route", conf(``), 7, "macvlan: master: not set, and the namespace has no default route"},
		{"hostAccess without bridge mode", conf(`"master":"eth0","mode":"vepa","hostAccess":true,`), 7, "macvlan: hostAccess true: needs mode bridge"},
		{"bad mac", conf(`"master":"eth0","mac":"zz",`), 7, `macvlan: mac "zz": not a 48-bit MAC address`},
		{"ipam plugin missing", []byte(`{"cniVersion":"1.0.0","name":"bad","type":"macvlan","master":"eth0","dataDir":"` + l.DataDir + `/macvlan","ipam":{"type":"no-such-ipam"}}`), 103, "no-such-ipam"},
		{"relative dataDir", []byte(`{"cniVersion":"1.0.0","name":"bad","type":"macvlan","master":"eth0","dataDir":"state"}`), 7, `macvlan: dataDir "state": must be an absolute path`},
		{"mtu wrong type", conf(`"master":"eth0","mtu":"big",`), 6, "macvlan: mtu: cannot use JSON string as int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := runPlugin(t, l.Host, nstest.CNIPath(t), "macvlan", env("ADD"), tt.conf, true)
			if e.Code != tt.wantCode || !strings.Contains(e.Msg, tt.wantMsg) {
				t.Fatalf("got code %d %q, want code %d containing %q", e.Code, e.Msg, tt.wantCode, tt.wantMsg)
			}
			if out := ctr.MustExec(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
				t.Fatalf("failed ADD left a link in the container: %s", out)
			}
			if got := l.ipamFiles(t, "bad"); len(got) != 0 {
				t.Fatalf("failed ADD left reservations: %v", got)
			}
			if files := l.stateFiles(t); len(files) != 0 {
				t.Fatalf("failed ADD left shared-link state: %v", files)
			}
			if out := l.Host.MustExec(t, "ip", "-o", "link"); strings.Contains(out, "eth0.") || strings.Contains(out, "bmv") {
				t.Fatalf("failed ADD left a host link: %s", out)
			}
		})
	}
}

// TestNoVLANSupport runs only where the kernel lacks 802.1q (here, not in
// the VM lane): a VLAN network is a clear kernel error that leaves nothing.
func TestNoVLANSupport(t *testing.T) {
	l := newLAN(t)
	if out, err := l.Router.Exec("ip", "link", "add", "link", "eth0", "name", "probe.1", "type", "vlan", "id", "1"); err == nil {
		t.Skip("this kernel has 802.1q")
	} else if !strings.Contains(out, "Unknown device type") {
		t.Fatalf("probe: %s", out)
	}
	ctr := nstest.NewNS(t, "ctr")
	env := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=novlan", "CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0"}
	conf := []byte(`{"cniVersion":"1.0.0","name":"novlan","type":"macvlan","master":"eth0.100","dataDir":"` + l.DataDir + `/macvlan",` +
		`"ipam":{"type":"host-local","dataDir":"` + l.DataDir + `/networks","ranges":[[{"subnet":"10.0.0.0/24"}]]}}`)
	_, e := runPlugin(t, l.Host, nstest.CNIPath(t), "macvlan", env, conf, true)
	if e.Code != 102 || !strings.Contains(e.Msg, "no 802.1q VLAN support") {
		t.Fatalf("got code %d %q, want 102 naming 802.1q", e.Code, e.Msg)
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("state left: %v", files)
	}
	if got := l.ipamFiles(t, "novlan"); len(got) != 0 {
		t.Fatalf("reservations left: %v", got)
	}
}
