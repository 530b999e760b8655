package cni_test

import (
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/internal/cnifuzz"
	"github.com/berthnet/berth/pkg/cni"
)

// FuzzPrevResult: Decode and PrevResult never panic; bad input is a config
// code, and an accepted prevResult can be walked by a plugin without
// checks of its own: no nil entries, interface indexes in range, every
// address an IP with a mask of its family's length.
func FuzzPrevResult(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"n","type":"portmap","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"br0","mac":"02:00:00:00:00:01"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/c"}],"ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":2},{"address":"fd00::2/64","interface":2}],"routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}],"dns":{"nameservers":["10.0.0.1"]}}}`,
		`{"cniVersion":"0.3.1","name":"n","type":"portmap","prevResult":{"cniVersion":"0.3.1","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.0.0.2/24","interface":0}]}}`,
		`{"cniVersion":"0.4.0","name":"n","type":"portmap","prevResult":{"ips":[{"address":"10.0.0.2/24","interface":-1}],"interfaces":[null]}}`,
		`{"cniVersion":"1.0.0","name":"n","type":"x","prevResult":{"cniVersion":"1.0.0","ips":[null],"routes":[null]}}`,
		`{"cniVersion":"9.9.9","name":"n","type":"x","prevResult":{"cniVersion":"9.9.9"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		var conf types.NetConf
		err := cni.Decode("fuzz", stdin, &conf)
		cnifuzz.CheckErr(t, "fuzz", err)
		if err != nil {
			return
		}
		res, err := cni.PrevResult("fuzz", &conf)
		cnifuzz.CheckErr(t, "fuzz", err)
		if err != nil || res == nil {
			return
		}
		for i, in := range res.Interfaces {
			if in == nil {
				t.Fatalf("interfaces[%d] is nil", i)
			}
		}
		for i, ipc := range res.IPs {
			if ipc == nil {
				t.Fatalf("ips[%d] is nil", i)
			}
			if ipc.Interface != nil && (*ipc.Interface < 0 || *ipc.Interface >= len(res.Interfaces)) {
				t.Fatalf("ips[%d].interface %d out of range (%d interfaces)", i, *ipc.Interface, len(res.Interfaces))
			}
			ones, bits := ipc.Address.Mask.Size()
			if ipc.Address.IP == nil || bits == 0 || ones > bits || (ipc.Address.IP.To4() != nil) != (bits == 32) {
				t.Fatalf("ips[%d].address %v: not an address with a mask of its family", i, ipc.Address)
			}
		}
		for i, r := range res.Routes {
			if r == nil {
				t.Fatalf("routes[%d] is nil", i)
			}
		}
	})
}
