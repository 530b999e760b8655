package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// confDir is where the demo writes each network's conflist, so the berth
// command finds them as it would in /etc/cni/net.d.
func (d *demo) confDir() string { return filepath.Join(d.stateDir, "net.d") }

// saveConf writes list to the demo's config directory.
func (d *demo) saveConf(list *libcni.NetworkConfigList) error {
	if err := os.MkdirAll(d.confDir(), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.confDir(), list.Name+".conflist"), list.Bytes, 0o644)
}

// berth runs the built berth command inside the demo's private host
// namespace, where the plugins ran, as an operator would on the node
// (`docker network inspect`, `docker port`), and prints it like sh (the
// demo's --conf-dir left out of the echoed line).
func (d *demo) berth(args ...string) (string, error) {
	fmt.Printf("  host$ berth %s\n", strings.Join(args, " "))
	out, err := d.host.Exec(append(append([]string{filepath.Join(d.cniPath, "berth")}, args...), "--conf-dir", d.confDir())...)
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Println("    " + l)
	}
	return out, err
}
