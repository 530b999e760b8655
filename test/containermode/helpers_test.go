package containermode_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

// world is a private host with Docker's default bridge and the
// container-mode network, both recording in the env's attachments
// registry.
type world struct {
	*nstest.Env
	bridge *libcni.NetworkConfigList
	join   *libcni.NetworkConfigList
}

func newWorld(t *testing.T) *world {
	t.Helper()
	e := nstest.NewEnv(t)
	return &world{
		Env:    e,
		bridge: e.Conflist(nstest.Example(t, "docker-default.conflist")),
		join:   e.Conflist(nstest.Example(t, "docker-container-mode.conflist")),
	}
}

// named is docker run --name NAME: the runtime passes the name in
// K8S_POD_NAME.
func named(name string) func(*libcni.RuntimeConf) {
	return func(rc *libcni.RuntimeConf) { rc.Args = append(rc.Args, [2]string{"K8S_POD_NAME", name}) }
}

// joining is --net=container:REF.
func joining(ref string) func(*libcni.RuntimeConf) {
	return func(rc *libcni.RuntimeConf) { rc.Args = append(rc.Args, [2]string{"CONTAINER", ref}) }
}

// run starts a container on the default bridge.
func (w *world) run(id, name string) *nstest.Container {
	w.T.Helper()
	return w.Run(w.bridge, id, named(name))
}

// joinOf starts a container in ref's network namespace.
func (w *world) joinOf(id, name, ref string) *nstest.Container {
	w.T.Helper()
	return w.Run(w.join, id, named(name), joining(ref))
}

// addErr runs an ADD that must fail and returns its CNI error.
func (w *world) addErr(list *libcni.NetworkConfigList, rc *libcni.RuntimeConf) *types.Error {
	w.T.Helper()
	res, err := w.RT.Add(context.Background(), list, rc)
	// A runtime DELs after a failed ADD; the DEL must succeed.
	if derr := w.RT.Del(context.Background(), list, rc); derr != nil {
		w.T.Errorf("DEL after the ADD of %s: %v", rc.ContainerID, derr)
	}
	if err == nil {
		w.T.Fatalf("ADD %s succeeded with %v, want an error", rc.ContainerID, res)
	}
	var ce *types.Error
	if !errors.As(err, &ce) {
		w.T.Fatalf("ADD %s: %v is not a CNI error", rc.ContainerID, err)
	}
	return ce
}

// joins lists the recorded joins (the container-mode network's entries).
func (w *world) joins() []string {
	w.T.Helper()
	des, err := os.ReadDir(filepath.Join(w.DataDir, "attachments", w.join.Name))
	if err != nil && !os.IsNotExist(err) {
		w.T.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

// nsIno is the inode of the network namespace path refers to.
func nsIno(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// serveLocal starts an HTTP server on 127.0.0.1 inside c's namespace (the
// socket is made there; the test process serves it) and returns its URL.
func serveLocal(t testing.TB, c *nstest.NS, text string) string {
	t.Helper()
	var ln net.Listener
	if err := c.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, text)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// in runs a command in the namespace at path, as a runtime starts a
// container's process "in CNI_NETNS".
//
// Same as: nsenter --net=PATH ARGS…
func in(path string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + path}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nsenter --net=%s %s: %w: %s", path, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// sh runs a command in the test's own namespaces (ip netns, umount).
func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

func mustIn(t testing.TB, path string, args ...string) string {
	t.Helper()
	out, err := in(path, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ifaceIn is "ip -br link/addr show dev eth0" in the namespace at path:
// the interface's MAC and addresses as a process there sees them.
func ifaceIn(t testing.TB, path, ifname string) (mac, addrs string) {
	t.Helper()
	l := strings.Fields(mustIn(t, path, "ip", "-br", "link", "show", "dev", ifname))
	a := strings.Fields(mustIn(t, path, "ip", "-br", "-4", "addr", "show", "dev", ifname))
	if len(l) < 3 || len(a) < 3 {
		t.Fatalf("%s in %s: link %v addr %v", ifname, path, l, a)
	}
	return l[2], a[2]
}

// sandboxMAC is the MAC of the result's interface in a sandbox.
func sandboxMAC(t testing.TB, res *current.Result) string {
	t.Helper()
	for _, itf := range res.Interfaces {
		if itf.Sandbox != "" {
			return itf.Mac
		}
	}
	t.Fatalf("no sandbox interface in %v", res)
	return ""
}
