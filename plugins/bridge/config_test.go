package main

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestLoadConf(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode uint
		wantMsg  string
	}{
		{"defaults", `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, 0, ""},
		{"long bridge", `{"name":"n","bridge":"abcdefghijklmnop"}`, 7, `bridge: bridge "abcdefghijklmnop": longer than 15 characters`},
		{"mtu", `{"name":"n","mtu":70000}`, 7, "bridge: mtu 70000: must be between 68 and 65535"},
		{"mtu type", `{"name":"n","mtu":"x"}`, 6, "bridge: mtu: cannot use JSON string as int"},
		{"backend", `{"name":"n","ipMasqBackend":"pf"}`, 7, `bridge: ipMasqBackend "pf"`},
		{"vlan", `{"name":"n","vlan":100}`, 2, "bridge: vlan: not supported"},
		{"enabledad", `{"name":"n","enabledad":true}`, 2, "bridge: enabledad: not supported"},
		{"enabledad false", `{"cniVersion":"1.0.0","name":"n","enabledad":false}`, 0, ""},
		{"preserveDefaultVlan false", `{"name":"n","preserveDefaultVlan":false}`, 2, "bridge: preserveDefaultVlan: not supported"},
		{"preserveDefaultVlan true", `{"cniVersion":"1.0.0","name":"n","preserveDefaultVlan":true}`, 0, ""},
		{"bad mac", `{"name":"n","runtimeConfig":{"mac":"zz"}}`, 7, `bridge: runtimeConfig.mac "zz"`},
		{"multicast mac", `{"name":"n","args":{"cni":{"mac":"01:00:5e:00:00:01"}}}`, 7, "multicast"},
		{"syntax", `{"name":"n",`, 6, "bridge: decoding config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConf([]byte(tt.in))
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if c.BrName != defaultBridge {
					t.Fatalf("got bridge %q, want %q", c.BrName, defaultBridge)
				}
				return
			}
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CNI error", err)
			}
			if ce.Code != tt.wantCode || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Fatalf("got %d %q, want %d containing %q", ce.Code, ce.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestDefaultGatewayImpliesGateway(t *testing.T) {
	c, err := loadConf([]byte(`{"name":"n","isDefaultGateway":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsGW {
		t.Fatal("got isGateway false, want true")
	}
}

func TestMacFromIP(t *testing.T) {
	got := macFromIP(net.ParseIP("172.17.0.2")).String()
	if want := "02:42:ac:11:00:02"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
