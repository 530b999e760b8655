package main

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/berthnet/berth/internal/sandbox"
)

// macvlanLAN is the macvlan scenario: `docker network create -d macvlan`
// on a "physical network" — a veth whose far end is a router namespace —
// and, where the kernel has 802.1q, the seed's macvlan100 network on VLAN
// 100 of it, whose sub-interface berth makes and removes.
func macvlanLAN(d *demo) error {
	router, err := d.newNS("router")
	if err != nil {
		return err
	}
	const parent = "lan0"
	cmds := [][]string{
		{"ip", "link", "add", parent, "netns", d.host.Name, "type", "veth", "peer", "name", "eth0", "netns", router.Name},
		{"ip", "-n", d.host.Name, "link", "set", parent, "up"},
		{"ip", "-n", router.Name, "addr", "add", "192.168.1.1/24", "dev", "eth0"},
		{"ip", "-n", router.Name, "link", "set", "eth0", "up"},
		// The router answers ARP only for the interface asked on, so a
		// VLAN cannot find the router's addresses on another.
		{"ip", "netns", "exec", router.Name, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"},
	}
	if err := runCmds(cmds); err != nil {
		return err
	}
	fmt.Printf("  the host's %s is cabled to a LAN whose router answers at 192.168.1.1\n", parent)
	lan, err := d.networkPatched("macvlan.conflist", setMaster(parent))
	if err != nil {
		return err
	}
	fmt.Printf("  docker network create -d macvlan --subnet 192.168.1.0/24 --ip-range 192.168.1.100-199 -o parent=%s lan (conf-examples/macvlan.conflist)\n", parent)
	a, err := d.runContainer("lan-a", lan, nil)
	if err != nil {
		return err
	}
	b, err := d.runContainer("lan-b", lan, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run --network lan -> %s and %s, each with its own MAC on the LAN\n", a.ipv4(), b.ipv4())
	if _, err := sh(a.ns, "lan-a", "ip", "-d", "link", "show", "eth0"); err != nil {
		return err
	}
	if _, err := sh(a.ns, "lan-a", "ping", "-c", "1", "-W", "2", "192.168.1.1"); err != nil {
		return fmt.Errorf("lan-a cannot reach the router: %w", err)
	}
	if _, err := sh(b.ns, "lan-b", "ping", "-c", "1", "-W", "2", a.ipv4()); err != nil {
		return fmt.Errorf("lan-b cannot reach lan-a: %w", err)
	}
	if _, err := sh(router, "router", "ip", "neigh", "show", "dev", "eth0"); err != nil {
		return err
	}

	if out, err := router.Exec("ip", "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "id", "100"); err != nil {
		fmt.Printf("  this kernel has no 802.1q VLAN support (%s):\n  the VLAN part (a sub-interface made for macvlan100 and removed with it) is shown by `make test-vm`,\n  which runs it under Debian's stock kernel in QEMU\n", strings.TrimSpace(out))
		return nil
	}
	return macvlanVLAN(d, router, parent)
}

// macvlanVLAN: the router gets VLANs 100 and 200; macvlan100 names
// lan0.100, which does not exist: berth makes it, a container reaches the
// router on VLAN 100 and not on VLAN 200, and the sub-interface goes with
// the last container.
func macvlanVLAN(d *demo, router *sandbox.NS, parent string) error {
	cmds := [][]string{
		{"ip", "-n", router.Name, "addr", "add", "10.0.0.1/24", "dev", "eth0.100"},
		{"ip", "-n", router.Name, "link", "set", "eth0.100", "up"},
		{"ip", "-n", router.Name, "link", "add", "link", "eth0", "name", "eth0.200", "type", "vlan", "id", "200"},
		{"ip", "-n", router.Name, "addr", "add", "10.0.200.1/24", "dev", "eth0.200"},
		{"ip", "-n", router.Name, "link", "set", "eth0.200", "up"},
	}
	if err := runCmds(cmds); err != nil {
		return err
	}
	sub := parent + ".100"
	v100, err := d.networkPatched("macvlan100.conflist", setMaster(sub))
	if err != nil {
		return err
	}
	fmt.Printf("  the router also answers on VLAN 100 (10.0.0.1) and VLAN 200 (10.0.200.1)\n")
	fmt.Printf("  docker network create -d macvlan --subnet 10.0.0.0/24 --ip-range 10.0.0.0/25 --gateway 10.0.0.1 -o parent=%s macvlan100\n", sub)
	if _, err := sh(d.host, "host", "ip", "-br", "link", "show", "type", "vlan"); err != nil {
		return err
	}
	c, err := d.runContainer("v100", v100, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run --network macvlan100 -> %s; berth made %s:\n", c.ipv4(), sub)
	if _, err := sh(d.host, "host", "ip", "-d", "link", "show", sub); err != nil {
		return err
	}
	if _, err := sh(c.ns, "v100", "ping", "-c", "1", "-W", "2", "10.0.0.1"); err != nil {
		return fmt.Errorf("the container cannot reach the router on VLAN 100: %w", err)
	}
	fmt.Println("  VLAN 200 is another L2 network: even on-link, nothing answers there")
	if _, err := sh(c.ns, "v100", "ip", "route", "add", "10.0.200.0/24", "dev", "eth0"); err != nil {
		return err
	}
	if _, err := sh(c.ns, "v100", "ping", "-c", "1", "-W", "1", "10.0.200.1"); err == nil {
		return fmt.Errorf("the container reached VLAN 200")
	}
	fmt.Println("  docker rm -f v100: the last container of the VLAN goes, and the sub-interface with it")
	d.removeContainers(2)
	out, _ := sh(d.host, "host", "ip", "-br", "link", "show", "type", "vlan")
	if strings.Contains(out, sub) {
		return fmt.Errorf("%s outlived its last container", sub)
	}
	return nil
}

func setMaster(master string) func(map[string]any) {
	return func(m map[string]any) {
		m["plugins"].([]any)[0].(map[string]any)["master"] = master
	}
}

func runCmds(cmds [][]string) error {
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w: %s", c, err, out)
		}
	}
	return nil
}
