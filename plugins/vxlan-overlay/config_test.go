package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func conf(t *testing.T, patch map[string]any) []byte {
	t.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": "ovl", "type": plugin, "vni": 42, "subnet": "10.96.0.0/16"}
	for k, v := range patch {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadConfErrors(t *testing.T) {
	for _, tc := range []struct {
		patch map[string]any
		field string
	}{
		{map[string]any{"vni": 0}, "vni"},
		{map[string]any{"vni": 1 << 24}, "vni"},
		{map[string]any{"subnet": "nope"}, "subnet"},
		{map[string]any{"subnet": "fd00::/48"}, "subnet"},
		{map[string]any{"hostSubnetLen": 8}, "hostSubnetLen"},
		{map[string]any{"hostSubnetLen": 31}, "hostSubnetLen"},
		{map[string]any{"port": 70000}, "port"},
		{map[string]any{"mtu": 20}, "mtu"},
		{map[string]any{"ipMasqBackend": "pf"}, "ipMasqBackend"},
		{map[string]any{"store": map[string]any{"type": "zk"}}, "store.type"},
		{map[string]any{"store": map[string]any{"type": "etcd"}}, "store.endpoints"},
		{map[string]any{"ipam": map[string]any{"type": "host-local"}}, "ipam.type"},
		{map[string]any{"leaseTTL": 1}, "leaseTTL"},
		{map[string]any{"name": "../x"}, "name"},
	} {
		_, err := loadConf(conf(t, tc.patch))
		var e *types.Error
		if !errors.As(err, &e) || e.Code != 7 || !strings.Contains(e.Msg, tc.field) {
			t.Errorf("%v: got %v, want code 7 naming %s", tc.patch, err, tc.field)
		}
	}
}

func TestLoadConfDefaults(t *testing.T) {
	c, err := loadConf(conf(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HostSubnetLen != 24 || c.Port != 4789 || c.Store.Type != "local" || c.DataDir != DefaultDataDir || c.LeaseTTL != 60 {
		t.Fatalf("defaults: %+v", c)
	}
	if c.device() != "berthvx42" || c.bridge() != "berthbr42" {
		t.Fatalf("names %s %s", c.device(), c.bridge())
	}
	var ipam struct {
		IPAM struct {
			Ranges [][]map[string]string `json:"ranges"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(c.ipamConf(c.network().HostSubnet(3)), &ipam); err != nil {
		t.Fatal(err)
	}
	if r := ipam.IPAM.Ranges[0][0]; r["subnet"] != "10.96.3.0/24" || r["gateway"] != "10.96.3.1" {
		t.Fatalf("ipam range %v", r)
	}
}
