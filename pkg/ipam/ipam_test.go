package ipam

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
)

func parseT(t testing.TB, dataDir, ipam, args string) *Config {
	t.Helper()
	c, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"net1","ipam":{"type":"host-local","dataDir":"`+dataDir+`",`+ipam+`}}`), args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func files(t testing.TB, dir string) string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.Name() == "lock" || strings.HasPrefix(e.Name(), lastIPPrefix) {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"="+strings.ReplaceAll(string(b), "\r\n", "/"))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestAddRequestedConflicts(t *testing.T) {
	dir := t.TempDir()
	ipam := `"subnet":"10.1.0.0/24"`
	if _, err := Add(parseT(t, dir, ipam, ""), "c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, args, id string
		code           uint
		msg            string
	}{
		{"attachment holds another address", "IP=10.1.0.9", "c1", cni.CodeConflict, "host-local: CNI_ARGS IP[0] 10.1.0.9: attachment c1/eth0 already holds 10.1.0.2 in range set 0"},
		{"taken by another", "IP=10.1.0.2", "c2", cni.CodeConflict, "host-local: CNI_ARGS IP[0] 10.1.0.2: address already in use"},
		{"gateway", "IP=10.1.0.1", "c2", cni.CodeInvalidConfig, "host-local: CNI_ARGS IP[0] 10.1.0.1: is the gateway of 10.1.0.0/24"},
		{"two in one set", "IP=10.1.0.7,10.1.0.8", "c2", cni.CodeInvalidConfig, "host-local: CNI_ARGS IP[1] 10.1.0.8: CNI_ARGS IP[0] (10.1.0.7) already asks for an address in range set 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Add(parseT(t, dir, ipam, tt.args), tt.id, "eth0")
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != tt.code || ce.Msg != tt.msg {
				t.Fatalf("got %v, want code %d %q", err, tt.code, tt.msg)
			}
		})
	}
	// The same address asked again by its holder is fine (idempotent).
	res, err := Add(parseT(t, dir, ipam, "IP=10.1.0.2"), "c1", "eth0")
	if err != nil || res.IPs[0].Address.IP.String() != "10.1.0.2" {
		t.Fatalf("got %v %v, want 10.1.0.2", res, err)
	}
	if got, want := files(t, filepath.Join(dir, "net1")), "10.1.0.2=c1/eth0"; got != want {
		t.Fatalf("files: got %s, want %s", got, want)
	}
}

func TestGCAndCheck(t *testing.T) {
	dir := t.TempDir()
	c := parseT(t, dir, `"subnet":"10.1.0.0/24"`, "")
	for _, a := range []cni.Attachment{{ContainerID: "a", IfName: "eth0"}, {ContainerID: "a", IfName: "eth1"}, {ContainerID: "b", IfName: "eth0"}} {
		if _, err := Add(c, a.ContainerID, a.IfName); err != nil {
			t.Fatal(err)
		}
	}
	netDir := filepath.Join(dir, "net1")
	for name, content := range map[string]string{"10.1.0.100": "legacy-kept", "10.1.0.101": "legacy-gone"} {
		if err := os.WriteFile(filepath.Join(netDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	valid := cni.ValidSet([]types.GCAttachment{{ContainerID: "a", IfName: "eth1"}, {ContainerID: "legacy-kept", IfName: "eth0"}})
	if err := GC(c, valid); err != nil {
		t.Fatal(err)
	}
	if got, want := files(t, netDir), "10.1.0.100=legacy-kept 10.1.0.3=a/eth1"; got != want {
		t.Fatalf("after GC: got %s, want %s", got, want)
	}
	if err := Check(c, "a", "eth1", nil); err != nil {
		t.Errorf("Check(a/eth1): %v", err)
	}
	var ce *types.Error
	if err := Check(c, "a", "eth0", nil); !errors.As(err, &ce) || ce.Code != cni.CodeUnknownContainer {
		t.Errorf("Check(a/eth0) after GC: got %v, want code 3", err)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	if err := Status(parseT(t, dir, `"subnet":"10.1.0.0/24"`, "")); err != nil {
		t.Fatalf("Status: %v", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Status(parseT(t, file, `"subnet":"10.1.0.0/24"`, ""))
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != cni.CodePluginNotAvailable || !strings.HasPrefix(ce.Msg, "host-local: store "+file+"/net1 is not usable: ") {
		t.Fatalf("got %v, want code 50 naming the store", err)
	}
}
