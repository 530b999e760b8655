package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEtcdBinaryMissing: a network whose registry is etcd needs
// dnsname-etcd beside dnsname (or in CNI_PATH); without it the answer is a
// CNI error that says what to install, not a failure of the registry.
func TestEtcdBinaryMissing(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	conf := `{"cniVersion":"1.1.0","name":"net1","type":"dnsname","registry":{"backend":"etcd","endpoints":["http://127.0.0.1:1"]}}`
	cmd := exec.Command(filepath.Join(dir, "dnsname"))
	cmd.Stdin = strings.NewReader(conf)
	cmd.Env = []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + dir}
	out, err := cmd.Output()
	if err == nil {
		t.Fatalf("STATUS succeeded without dnsname-etcd: %s", out)
	}
	var res struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("not a CNI error: %q (%v)", out, err)
	}
	if res.Code != 50 || strings.Count(res.Msg, "dnsname:") != 1 || !strings.Contains(res.Msg, "dnsname-etcd not found") || !strings.Contains(res.Msg, "registry.backend etcd") {
		t.Errorf("got code %d %q, want 50 naming registry.backend and dnsname-etcd", res.Code, res.Msg)
	}
}
