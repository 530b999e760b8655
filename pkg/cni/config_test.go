package cni

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestDecode(t *testing.T) {
	type conf struct {
		types.NetConf
		MTU int `json:"mtu"`
	}
	tests := []struct {
		name     string
		in       string
		wantCode uint
		wantMsg  string
	}{
		{"ok", `{"cniVersion":"1.0.0","name":"n","type":"bridge","mtu":1400}`, 0, ""},
		{"unknown fields ignored", `{"name":"n","whatever":1}`, 0, ""},
		{"syntax", `{"name":`, CodeDecode, "bridge: decoding config"},
		{"type", `{"name":"n","mtu":"big"}`, CodeDecode, "bridge: mtu: cannot use JSON string as int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c conf
			err := Decode("bridge", []byte(tt.in), &c)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want *types.Error", err)
			}
			if ce.Code != tt.wantCode || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Fatalf("got code %d %q, want code %d containing %q", ce.Code, ce.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestSafeName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"bridge-net", true}, {"a.b_c", true}, {"", false}, {".", false}, {"..", false},
		{"../etc", false}, {"a/b", false}, {"a b", false},
	}
	for _, tt := range tests {
		err := SafeName("network name", tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("SafeName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestWrapKeepsCode(t *testing.T) {
	inner := Errorf(CodeAddressExhausted, "range 10.0.0.0/30 is full")
	got := Wrap(CodeDelegate, inner, "bridge: ipam")
	if got.Code != CodeAddressExhausted || got.Msg != "bridge: ipam: range 10.0.0.0/30 is full" {
		t.Fatalf("got %d %q", got.Code, got.Msg)
	}
	got = Wrap(CodeKernel, errors.New("boom"), "bridge: veth")
	if got.Code != CodeKernel || got.Msg != "bridge: veth: boom" {
		t.Fatalf("got %d %q", got.Code, got.Msg)
	}
}

func TestNeedPrevResult(t *testing.T) {
	tests := []struct {
		name     string
		conf     string
		wantCode uint
		wantIP   string
	}{
		{"missing", `{"cniVersion":"1.0.0","name":"n","type":"portmap"}`, CodeInvalidConfig, ""},
		{"present", `{"cniVersion":"1.0.0","name":"n","type":"portmap","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]}}`, 0, "10.1.0.2/24"},
		{"old version converted", `{"cniVersion":"0.3.1","name":"n","type":"portmap","prevResult":{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.3/24"}]}}`, 0, "10.1.0.3/24"},
		{"garbage", `{"cniVersion":"1.0.0","name":"n","type":"portmap","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}}`, CodeDecode, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c types.NetConf
			if err := Decode("portmap", []byte(tt.conf), &c); err != nil {
				t.Fatal(err)
			}
			prev, err := NeedPrevResult("portmap", &c)
			if tt.wantCode != 0 {
				var ce *types.Error
				if !errors.As(err, &ce) || ce.Code != tt.wantCode {
					t.Fatalf("got %v, want code %d", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if got := prev.IPs[0].Address.String(); got != tt.wantIP {
				t.Fatalf("got %s, want %s", got, tt.wantIP)
			}
		})
	}
}
