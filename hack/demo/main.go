// Command demo walks Docker's networking scenarios with berth's plugins,
// end to end, in private network namespaces, printing what a person would
// see: `make demo`. Every namespace it makes is removed on the way out,
// including on Ctrl-C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/internal/sandbox"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == httpdArg {
		if err := serveHTTP(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "httpd:", err)
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (network namespaces): sudo make demo")
		os.Exit(1)
	}
	d, err := newDemo()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Println("\ninterrupted: cleaning up")
		d.cleanup()
		os.Exit(130)
	}()
	err = d.run()
	d.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo: all scenarios passed; every namespace, link and rule is gone.")
}

// demo holds what must be undone: containers to DEL (newest first), then
// namespaces to delete, then the state directory.
type demo struct {
	cniPath  string
	stateDir string
	prefix   string
	host     *sandbox.NS
	rt       *sandbox.Runtime
	dels     []func()
	nss      []*sandbox.NS
	procs    []*exec.Cmd
}

func newDemo() (*demo, error) {
	cniPath := os.Getenv("BERTH_CNI_PATH")
	if cniPath == "" {
		cniPath = "bin"
	}
	abs, err := filepath.Abs(cniPath)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "bridge")); err != nil {
		return nil, fmt.Errorf("no plugins in %s: run `make build` first (%w)", abs, err)
	}
	state, err := os.MkdirTemp("", "berth-demo-")
	if err != nil {
		return nil, err
	}
	d := &demo{cniPath: abs, stateDir: state, prefix: fmt.Sprintf("bdemo%d", os.Getpid()%10000)}
	d.host, err = d.newNS("host")
	if err != nil {
		d.cleanup()
		return nil, err
	}
	d.rt = sandbox.NewRuntime(d.host, filepath.Join(state, "cache"), abs)
	return d, nil
}

func (d *demo) newNS(label string) (*sandbox.NS, error) {
	n, err := sandbox.NewNS(d.prefix + "-" + label)
	if err != nil {
		return nil, err
	}
	d.nss = append(d.nss, n)
	return n, nil
}

// removeContainers is `docker rm -f` of everything a scenario started:
// servers stopped, DEL of every attachment (newest first), and every
// namespace but the host's (kept is how many of the first to keep).
func (d *demo) removeContainers(kept int) {
	stopProcs(d.procs)
	d.procs = nil
	for i := len(d.dels) - 1; i >= 0; i-- {
		d.dels[i]()
	}
	d.dels = nil
	for len(d.nss) > kept {
		last := d.nss[len(d.nss)-1]
		if err := last.Delete(); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
		d.nss = d.nss[:len(d.nss)-1]
	}
}

func (d *demo) cleanup() {
	d.removeContainers(0)
	os.RemoveAll(d.stateDir)
}

// network loads a conf-examples file with its state under the demo's
// directory.
func (d *demo) network(file string) (*libcni.NetworkConfigList, error) {
	return d.networkPatched(file, nil)
}

// namedNetwork is `docker network create NAME` from a template: the
// network's name and its bridge br-NAME.
func (d *demo) namedNetwork(file, name string) (*libcni.NetworkConfigList, error) {
	return d.networkPatched(file, func(m map[string]any) {
		m["name"] = name
		for _, p := range m["plugins"].([]any) {
			if pm := p.(map[string]any); pm["type"] == "bridge" {
				pm["bridge"] = "br-" + name
			}
		}
	})
}

func (d *demo) networkPatched(file string, patch func(map[string]any)) (*libcni.NetworkConfigList, error) {
	raw, err := os.ReadFile(filepath.Join("conf-examples", file))
	if err != nil {
		return nil, err
	}
	list, err := withDataDir(raw, d.stateDir, patch)
	if err != nil {
		return nil, err
	}
	return list, d.saveConf(list)
}

// ctr is a running "container": its namespace and attachments.
type ctr struct {
	name string
	ns   *sandbox.NS
	res  *current.Result
}

// runContainer is `docker run --name NAME --network NET`: a namespace and
// ADD through the network's chain. DEL is queued for cleanup.
func (d *demo) runContainer(name string, list *libcni.NetworkConfigList, capArgs map[string]any) (*ctr, error) {
	n, err := d.newNS(name)
	if err != nil {
		return nil, err
	}
	c := &ctr{name: name, ns: n}
	c.res, err = d.attach(c, list, "eth0", capArgs)
	return c, err
}

// connect is `docker network connect`: c joins list through ifname.
func (d *demo) connect(c *ctr, list *libcni.NetworkConfigList, ifname string) (*current.Result, error) {
	return d.attach(c, list, ifname, nil)
}

func (d *demo) attach(c *ctr, list *libcni.NetworkConfigList, ifname string, capArgs map[string]any) (*current.Result, error) {
	rc := sandbox.Attachment(d.prefix+"-"+c.name, c.ns, ifname)
	rc.Args = [][2]string{{"K8S_POD_NAME", c.name}}
	rc.CapabilityArgs = capArgs
	res, err := d.rt.Add(context.Background(), list, rc)
	if err != nil {
		return nil, fmt.Errorf("ADD %s/%s on %s: %w", c.name, ifname, list.Name, err)
	}
	d.dels = append(d.dels, func() {
		if err := d.rt.Del(context.Background(), list, rc); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: DEL %s/%s: %v\n", c.name, ifname, err)
		}
	})
	return res, nil
}

func (c *ctr) ipv4() string {
	for _, ipc := range c.res.IPs {
		if ipc.Address.IP.To4() != nil {
			return ipc.Address.IP.String()
		}
	}
	return ""
}

// sh prints a command as a person would type it, runs it in ns and prints
// its output, indented.
func sh(ns *sandbox.NS, who string, args ...string) (string, error) {
	fmt.Printf("  %s$ %s\n", who, strings.Join(args, " "))
	out, err := ns.Exec(args...)
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Println("    " + l)
	}
	return out, err
}

func (d *demo) run() error {
	for _, s := range scenarios {
		fmt.Printf("\n== %s\n", s.title)
		if err := s.run(d); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		// docker rm -f: DEL every container of the scenario, so the next
		// one starts from an empty host.
		d.removeContainers(1)
	}
	return nil
}

// uplink links ns to the host namespace as an outside network:
// host "eth0" 192.0.2.1/24, ns "eth0" 192.0.2.2/24 with a default route
// via the host.
func (d *demo) uplink(ns *sandbox.NS) error {
	tmp := d.prefix + "up"
	cmds := [][]string{
		{"ip", "link", "add", tmp, "netns", d.host.Name, "type", "veth", "peer", "name", "eth0", "netns", ns.Name},
		{"ip", "-n", d.host.Name, "link", "set", tmp, "name", "eth0"},
		{"ip", "-n", d.host.Name, "addr", "add", "192.0.2.1/24", "dev", "eth0"},
		{"ip", "-n", d.host.Name, "link", "set", "eth0", "up"},
		{"ip", "-n", ns.Name, "addr", "add", "192.0.2.2/24", "dev", "eth0"},
		{"ip", "-n", ns.Name, "link", "set", "eth0", "up"},
		{"ip", "-n", ns.Name, "route", "add", "default", "via", "192.0.2.1"},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w: %s", c, err, out)
		}
	}
	return nil
}
