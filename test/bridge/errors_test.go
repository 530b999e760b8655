package bridge_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// cniError is the error JSON a plugin prints on stdout.
type cniError struct {
	Code uint   `json:"code"`
	Msg  string `json:"msg"`
}

// runPlugin executes a plugin binary by hand (inside the private host
// namespace) with the given CNI_* environment and stdin, and decodes its
// error JSON. It fails the test when the plugin exits 0.
func runPlugin(t *testing.T, host *nstest.NS, plugin string, env []string, stdin string) cniError {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var runErr error
	if err := host.Do(func(ns.NetNS) error {
		cmd := exec.Command(filepath.Join(nstest.CNIPath(t), plugin))
		cmd.Env = append(env, "CNI_PATH="+nstest.CNIPath(t))
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr = cmd.Run()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if runErr == nil {
		t.Fatalf("%s succeeded, want an error; stdout: %s", plugin, stdout.String())
	}
	if strings.Contains(stderr.String(), "goroutine ") {
		t.Fatalf("%s printed a Go stack trace:\n%s", plugin, stderr.String())
	}
	var e cniError
	if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
		t.Fatalf("%s stdout is not error JSON: %v: %q", plugin, err, stdout.String())
	}
	return e
}

func TestBadInput(t *testing.T) {
	nstest.RequireRoot(t)
	host := nstest.NewNS(t, "host")
	ctr := nstest.NewNS(t, "ctr")
	host.MustExec(t, "ip", "link", "add", "notabr", "type", "veth", "peer", "name", "notabr1")
	env := func(cmd string) []string {
		return []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=bad-input", "CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0"}
	}
	ipam := `"ipam":{"type":"host-local","dataDir":"` + t.TempDir() + `","ranges":[[{"subnet":"10.7.0.0/24"}]]}`
	tests := []struct {
		name     string
		env      []string
		conf     string
		wantCode uint
		wantMsg  string
	}{
		{"not JSON", env("ADD"), `{"cniVersion":"1.0.0",`, 6, "unmarshal"},
		{"mtu out of range", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","mtu":70000}`, 7, "bridge: mtu 70000: must be between 68 and 65535"},
		{"mtu wrong type", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","mtu":"big"}`, 6, "bridge: mtu: cannot use JSON string as int"},
		{"bridge name too long", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"averyveryverylongname"}`, 7, "bridge: bridge \"averyveryverylongname\""},
		{"unsupported vlan", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","vlan":100}`, 2, "bridge: vlan"},
		{"unknown masq backend", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","ipMasqBackend":"pf"}`, 7, "ipMasqBackend"},
		{"unsupported version", env("ADD"), `{"cniVersion":"9.9.9","name":"n","type":"bridge"}`, 1, "incompatible CNI versions"},
		{"missing container ID", []string{"CNI_COMMAND=ADD", "CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0"}, `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, 4, "CNI_CONTAINERID"},
		{"netns does not exist", []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x", "CNI_NETNS=/run/netns/" + nstest.Prefix() + "-nope", "CNI_IFNAME=eth0"}, `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, 8, "CNI_NETNS"},
		{"bridge name taken by a veth", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"notabr",` + ipam + `}`, 102, "notabr exists and is a veth, not a bridge"},
		{"ipam plugin missing", env("ADD"), `{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"no-such-ipam"}}`, 103, "no-such-ipam"},
		{"CHECK without prevResult", env("CHECK"), `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, 7, "prevResult"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runPlugin(t, host, "bridge", tt.env, tt.conf)
			if got.Code != tt.wantCode || !strings.Contains(got.Msg, tt.wantMsg) {
				t.Fatalf("got code %d %q, want code %d containing %q", got.Code, got.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
	// None of the failures left anything in the host namespace.
	for _, l := range strings.Split(links(t, host), "\n") {
		if strings.Contains(l, "veth") && !strings.Contains(l, "notabr") {
			t.Fatalf("failed ADDs left a link: %s", l)
		}
	}
}
