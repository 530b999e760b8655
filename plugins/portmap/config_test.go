package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
)

func TestParseConfig(t *testing.T) {
	const head = `{"cniVersion":"1.0.0","name":"n","type":"portmap"`
	tests := []struct {
		name     string
		in       string
		wantCode uint
		wantMsg  string
		wantMaps int
	}{
		{"no mappings", head + `}`, 0, "", 0},
		{"mappings", head + `,"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"},{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"0.0.0.0"}]}}`, 0, "", 2},
		{"default protocol", head + `,"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}}`, 0, "", 1},
		{"bad backend", head + `,"backend":"pf"}`, cni.CodeInvalidConfig, `backend "pf"`, 0},
		{"host port range", head + `,"runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80,"protocol":"tcp"}]}}`, cni.CodeInvalidConfig, "runtimeConfig.portMappings[0].hostPort 70000", 0},
		{"container port", head + `,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":0,"protocol":"tcp"}]}}`, cni.CodeInvalidConfig, "containerPort 0", 0},
		{"protocol", head + `,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}}`, cni.CodeInvalidConfig, `protocol "icmp"`, 0},
		{"hostIP", head + `,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"tcp","hostIP":"nope"}]}}`, cni.CodeInvalidConfig, `hostIP "nope"`, 0},
		{"duplicate", head + `,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"tcp"},{"hostPort":80,"containerPort":81,"protocol":"tcp"}]}}`, cni.CodeInvalidConfig, "portMappings[0]", 0},
		{"mark bit", head + `,"markMasqBit":13}`, cni.CodeUnsupportedField, "markMasqBit: not supported", 0},
		{"mark chain", head + `,"externalSetMarkChain":"KUBE-MARK-MASQ"}`, cni.CodeUnsupportedField, "externalSetMarkChain: not supported", 0},
		{"conditions with nftables", head + `,"conditionsV4":["-s","1.2.3.4"]}`, cni.CodeUnsupportedField, "conditionsV4", 0},
		{"conditions with iptables", head + `,"backend":"iptables","conditionsV4":["-s","1.2.3.4"]}`, 0, "", 0},
		{"bad name", `{"cniVersion":"1.0.0","name":"../x","type":"portmap"}`, cni.CodeInvalidConfig, "name", 0},
		{"decode", head + `,"snat":"yes"}`, cni.CodeDecode, "snat", 0},
		{"dynamic host ports", head + `,"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80},{"hostPort":0,"containerPort":81}]}}`, 0, "", 2},
		{"negative host port", head + `,"runtimeConfig":{"portMappings":[{"hostPort":-1,"containerPort":80}]}}`, cni.CodeInvalidConfig, "hostPort -1", 0},
		{"hostPortRange", head + `,"hostPortRange":"40000-40010"}`, 0, "", 0},
		{"host port range reversed", head + `,"hostPortRange":"40010-40000"}`, cni.CodeInvalidConfig, `hostPortRange "40010-40000"`, 0},
		{"host port range syntax", head + `,"hostPortRange":"40000"}`, cni.CodeInvalidConfig, `hostPortRange "40000"`, 0},
		{"relative dataDir", head + `,"dataDir":"run/x"}`, cni.CodeInvalidConfig, `dataDir "run/x"`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := loadConf([]byte(tt.in))
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if len(conf.mappings) != tt.wantMaps || !*conf.SNAT {
					t.Fatalf("got %d mappings, snat %v; want %d, true", len(conf.mappings), *conf.SNAT, tt.wantMaps)
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
