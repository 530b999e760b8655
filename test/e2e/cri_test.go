package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
)

// Image is the one image the CRI lane imports: busybox-static, a page for
// httpd, and an entrypoint that sleeps, the pod sandbox's "pause" (the
// sandbox is stopped with SIGKILL, so it needs no signal handling).
const Image = "berth.test/busybox:1"

// Containerd is Debian's containerd 1.6 (runc) with the CRI plugin, whose
// CNI bin_dir is berth's, driven by crictl, in an Engine.
type Containerd struct {
	*Engine
	crictl []string
}

// containerdConfig is the config the lane uses (README: "Using berth with
// containerd/Kubernetes"): private root, state and sockets; the CRI plugin
// with berth as bin_dir and a private conf_dir; restrict_oom_score_adj
// because the test runs without the right to lower OOM scores; the native
// snapshotter, which needs nothing from the kernel.
const containerdConfig = `version = 2
root = "{{D}}/root"
state = "{{D}}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{{D}}/containerd.sock"

[ttrpc]
  address = "{{D}}/containerd-ttrpc.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{D}}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "berth.test/busybox:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{BIN}}"
    conf_dir = "{{D}}/net.d"
    max_conf_num = 1
`

// Crictl finds crictl: BERTH_CRICTL, then PATH, then GOPATH/bin (where
// hack/e2e/deps.sh installs it from the Go module proxy).
func Crictl(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("BERTH_CRICTL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "crictl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("crictl not found: run hack/e2e/deps.sh (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0)")
	return ""
}

// NewContainerd starts containerd in an Engine with conflist (the CNI
// config, verbatim) and pluginDir as bin_dir, and imports Image. Pods
// left by a failed test are removed, and containerd stopped, on cleanup.
func NewContainerd(t testing.TB, pluginDir string, conflist []byte) *Containerd {
	t.Helper()
	e := NewEngine(t)
	d := func(name string) string { return filepath.Join(e.Dir, name) }
	conf := strings.NewReplacer("{{D}}", e.Dir, "{{BIN}}", pluginDir).Replace(containerdConfig)
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", d("containerd.sock"), d("containerd.sock"))
	for name, content := range map[string][]byte{
		"config.toml":                      []byte(conf),
		"crictl.yaml":                      []byte(crictlConf),
		"net.d/10-containerd-net.conflist": conflist,
		"image.tar":                        imageArchive(t),
	} {
		if err := os.MkdirAll(filepath.Dir(d(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d(name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log, err := os.Create(d("containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := e.Command("containerd", "--config", d("config.toml"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	// nsenter and env exec: the PID is containerd's.
	e.daemons = append(e.daemons, cmd.Process.Pid)
	c := &Containerd{Engine: e, crictl: []string{Crictl(t), "-c", d("crictl.yaml")}}
	t.Cleanup(func() {
		if out, err := c.Exec(append(c.crictl, "rmp", "-fa")...); err != nil {
			t.Errorf("cleanup: %v: %s", err, out)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(d("containerd.log"))
			t.Logf("containerd log:\n%s", b)
		}
	})
	// containerd has no readiness signal but its socket answering; this is
	// the harness's start, not a CNI operation.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Exec("ctr", "--address", d("containerd.sock"), "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd did not start (its log follows on cleanup)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.MustExec("ctr", "--address", d("containerd.sock"), "-n", "k8s.io", "images", "import", d("image.tar"))
	return c
}

// imageArchive builds a docker-archive tarball of Image from busybox-static.
func imageArchive(t testing.TB) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static: %v", err)
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "www/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))},
	}
	for _, a := range []string{"sh", "sleep", "ping", "nc", "httpd", "ip", "cat"} {
		hdrs = append(hdrs, &tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	page := []byte("hello from berth\n")
	hdrs = append(hdrs, &tar.Header{Name: "www/index.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(page))})
	for _, h := range hdrs {
		if err := lw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "bin/busybox":
			_, err = lw.Write(bb)
		case "www/index.html":
			_, err = lw.Write(page)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/bin/sleep", "2147483647"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{Image}, "Layers": []string{"layer.tar"}}})
	var out bytes.Buffer
	w := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		b    []byte
	}{{"manifest.json", manifest}, {"config.json", config}, {"layer.tar", layer.Bytes()}} {
		if err := w.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Crictl runs crictl and returns its trimmed output.
func (c *Containerd) Crictl(args ...string) string {
	c.T.Helper()
	return strings.TrimSpace(c.Output(append(c.crictl, args...)...))
}

// writeJSON writes v as a file in the engine's directory for crictl.
func (c *Containerd) writeJSON(name string, v any) string {
	c.T.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.T.Fatal(err)
	}
	p := filepath.Join(c.Dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.T.Fatal(err)
	}
	return p
}

// Pod is a running pod sandbox with one container.
type Pod struct {
	ID, Ctr, IP string
}

// RunPod runs a sandbox named name (with hostPort -> 80 when hostPort is
// not 0) and a container in it running cmd.
func (c *Containerd) RunPod(name string, hostPort int, cmd ...string) Pod {
	c.T.Helper()
	sb := map[string]any{
		"metadata": map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
		"linux":    map[string]any{},
	}
	if hostPort != 0 {
		sb["port_mappings"] = []map[string]any{{"protocol": 0, "container_port": 80, "host_port": hostPort}}
	}
	sbPath := c.writeJSON(name+"-pod.json", sb)
	ctrPath := c.writeJSON(name+"-ctr.json", map[string]any{
		"metadata": map[string]any{"name": name + "-c"},
		"image":    map[string]any{"image": Image},
		"command":  cmd,
		"linux":    map[string]any{},
	})
	p := Pod{ID: c.Crictl("runp", sbPath)}
	p.Ctr = c.Crictl("create", p.ID, ctrPath, sbPath)
	c.Crictl("start", p.Ctr)
	p.IP = c.Crictl("inspectp", "-o", "go-template", "--template", "{{.status.network.ip}}", p.ID)
	if p.IP == "" {
		c.T.Fatalf("pod %s has no IP", name)
	}
	return p
}

// StopRemove is kubelet's teardown of a pod: stopp, then rmp.
func (c *Containerd) StopRemove(p Pod) {
	c.T.Helper()
	c.Crictl("stopp", p.ID)
	c.Crictl("rmp", p.ID)
}

// TestContainerdCRI runs pods through containerd's CRI on the containerd
// example conflist, verbatim, with berth's binaries as bin_dir.
func TestContainerdCRI(t *testing.T) {
	requireE2E(t)
	c := NewContainerd(t, nstest.CNIPath(t), nstest.Example(t, "containerd-default.conflist"))

	web := c.RunPod("web", 8080, "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	client := c.RunPod("client", 0, "/bin/sleep", "1000")
	ids := []string{web.ID, client.ID}

	t.Run("pods get IPs in 10.88.0.0/16", func(t *testing.T) {
		for _, p := range []Pod{web, client} {
			if !strings.HasPrefix(p.IP, "10.88.") {
				t.Errorf("pod IP %s not in 10.88.0.0/16", p.IP)
			}
		}
	})

	t.Run("pod to pod", func(t *testing.T) {
		if out, err := c.Exec(append(c.crictl, "exec", client.Ctr, "ping", "-c1", "-W2", web.IP)...); err != nil {
			t.Errorf("client -> web %s: %v: %s", web.IP, err, out)
		}
	})

	t.Run("hostPort from the host and on localhost", func(t *testing.T) {
		c.Host.MustExec(t, "ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
		for _, url := range []string{"http://192.0.2.1:8080/", "http://127.0.0.1:8080/"} {
			GetPage(t, c.Host, url)
		}
	})

	t.Run("stopp and rmp leave nothing", func(t *testing.T) {
		c.StopRemove(web)
		c.StopRemove(client)
		assertNothingLeft(t, c.Engine, ids, "cni0")
	})
}
