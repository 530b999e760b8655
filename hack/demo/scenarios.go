package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type scenario struct {
	title string
	run   func(*demo) error
}

var scenarios = []scenario{
	{"Scenario 1: the default bridge (docker run, twice)", defaultBridge},
	{"Scenario 2: a published port (docker run -p 3000:80 httpd)", publishedPort},
	{"Scenario 3: user-defined networks are isolated; docker network connect joins two", userNetworks},
	{"Scenario 4: containers find each other by name (Podman network with dnsname)", names},
	{"Scenario 5: macvlan: containers on the physical network and its VLANs (docker network create -d macvlan)", macvlanLAN},
	{"Network mode none: docker run --network none (loopback only)", noneMode},
	{"Network mode host: docker run --network host (no plugin)", hostMode},
	{"Container mode: docker run --net=container:nginx (container-mode plugin)", containerMode},
	{"Scenario 6: three hosts, one overlay network; host 1 reaches host 3 by name (vxlan-overlay, dnsname, etcd)", overlayHosts},
}

// defaultBridge is seed scenario 1: two containers on docker0, each with an
// address from 172.17.0.0/16, reaching each other and the gateway.
func defaultBridge(d *demo) error {
	list, err := d.network("docker-default.conflist")
	if err != nil {
		return err
	}
	fmt.Println("  network \"bridge\": docker0 on 172.17.0.0/16, gateway 172.17.0.1, masquerade on (conf-examples/docker-default.conflist)")
	web, err := d.runContainer("web", list, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run --name web   -> eth0 %s, gateway %s\n", web.res.IPs[0].Address.String(), web.res.IPs[0].Gateway)
	db, err := d.runContainer("db", list, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run --name db    -> eth0 %s\n", db.res.IPs[0].Address.String())

	if _, err := sh(web.ns, "web", "ip", "-br", "addr"); err != nil {
		return err
	}
	if _, err := sh(web.ns, "web", "ip", "route"); err != nil {
		return err
	}
	if _, err := sh(web.ns, "web", "ping", "-c", "2", "-W", "2", db.ipv4()); err != nil {
		return fmt.Errorf("web cannot reach db: %w", err)
	}
	if _, err := sh(db.ns, "db", "ping", "-c", "1", "-W", "2", "172.17.0.1"); err != nil {
		return fmt.Errorf("db cannot reach its gateway: %w", err)
	}
	if _, err := sh(d.host, "host", "ip", "-br", "link", "show", "master", "docker0"); err != nil {
		return err
	}
	return nil
}

// publishedPort is seed scenario 2: a web server in a container published
// on the host's port 3000, fetched from the host through localhost and from
// a client outside the host.
func publishedPort(d *demo) error {
	list, err := d.network("docker-bridge-ports.conflist")
	if err != nil {
		return err
	}
	outside, err := d.newNS("outside")
	if err != nil {
		return err
	}
	// The "outside" client sits on 192.0.2.0/24 (TEST-NET-1) behind the
	// host's uplink; neither address exists beyond these namespaces.
	if err := d.uplink(outside); err != nil {
		return err
	}
	fmt.Println("  an outside client at 192.0.2.2 reaches the host at 192.0.2.1 (its \"eth0\")")
	ports := map[string]any{"portMappings": []map[string]any{{"hostPort": 3000, "containerPort": 80, "protocol": "tcp"}}}
	web, err := d.runContainer("httpd", list, ports)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run -p 3000:80 --name httpd  -> eth0 %s, host port 3000 -> %s:80\n", web.res.IPs[0].Address.String(), web.ipv4())
	if err := d.startHTTPD(web.ns, ":80", "It works! served by the httpd container"); err != nil {
		return err
	}
	if _, err := sh(d.host, "host", "curl", "-sS", "--max-time", "3", "http://localhost:3000/"); err != nil {
		return fmt.Errorf("curl localhost:3000 from the host: %w", err)
	}
	if _, err := sh(outside, "outside", "curl", "-sS", "--max-time", "3", "http://192.0.2.1:3000/"); err != nil {
		return fmt.Errorf("curl from outside: %w", err)
	}
	// docker port httpd
	if out, err := d.berth("port", "httpd"); err != nil || strings.TrimSpace(out) != "80/tcp -> 0.0.0.0:3000" {
		return fmt.Errorf("berth port httpd: %q, %v", out, err)
	}
	return nil
}

// userNetworks is seed scenario 3: `docker network create` twice (each gets
// a free subnet by itself), a container on each that cannot reach the
// other, then `docker network connect` giving one a second interface.
func userNetworks(d *demo) error {
	front, err := d.namedNetwork("docker-network.conflist", "frontend")
	if err != nil {
		return err
	}
	back, err := d.namedNetwork("docker-network.conflist", "backend")
	if err != nil {
		return err
	}
	web, err := d.runContainer("web", front, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker network create frontend; docker run --network frontend --name web -> %s (subnet chosen by itself: docker0 holds 172.17)\n", web.res.IPs[0].Address.String())
	db, err := d.runContainer("db", back, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker network create backend;  docker run --network backend  --name db  -> %s\n", db.res.IPs[0].Address.String())
	fmt.Println("  web and db are on different networks: the firewall plugin (ingressPolicy same-bridge) drops traffic between them")
	if _, err := sh(web.ns, "web", "ping", "-c", "1", "-W", "1", db.ipv4()); err == nil {
		return fmt.Errorf("web reached db across networks")
	}
	res, err := d.connect(db, front, "eth1")
	if err != nil {
		return err
	}
	fmt.Printf("  docker network connect frontend db -> db gets eth1 %s\n", res.IPs[0].Address.String())
	if _, err := sh(db.ns, "db", "ip", "-br", "-4", "addr"); err != nil {
		return err
	}
	if _, err := sh(db.ns, "db", "ping", "-c", "1", "-W", "2", web.ipv4()); err != nil {
		return fmt.Errorf("db cannot reach web after network connect: %w", err)
	}
	// docker network inspect frontend: web and db's eth1
	if out, err := d.berth("network", "inspect", "frontend"); err != nil || !strings.Contains(out, "2 live") {
		return fmt.Errorf("berth network inspect frontend: want 2 live attachments: %v", err)
	}
	return nil
}

// names is seed scenario 4: on a user-defined network with dnsname, `ping
// web` works from another container, and the name is the container's.
func names(d *demo) error {
	// upstreams: forwarding goes to a closed port on the private host's
	// loopback, never to the machine's real resolver.
	list, err := d.networkPatched("podman-network.conflist", func(m map[string]any) {
		for _, p := range m["plugins"].([]any) {
			if pm := p.(map[string]any); pm["type"] == "dnsname" {
				pm["upstreams"] = []string{"127.0.0.1:5353"}
				pm["logFile"] = filepath.Join(d.stateDir, "dnsname.log")
			}
		}
	})
	if err != nil {
		return err
	}
	web, err := d.runContainer("web", list, nil)
	if err != nil {
		return err
	}
	client, err := d.runContainer("client", list, nil)
	if err != nil {
		return err
	}
	dns := web.res.DNS
	fmt.Printf("  podman network create mynet; podman run --name web -> %s; the result names DNS server %v, search %v\n", web.res.IPs[0].Address.String(), dns.Nameservers, dns.Search)
	// As a runtime does: the container's resolv.conf from the result.
	if err := d.resolvConf(client, dns.Nameservers, dns.Search); err != nil {
		return err
	}
	if _, err := sh(client.ns, "client", "cat", "/etc/resolv.conf"); err != nil {
		return err
	}
	if _, err := sh(client.ns, "client", "ping", "-c", "1", "-W", "2", "web"); err != nil {
		return fmt.Errorf("client cannot ping web by name: %w", err)
	}
	out, err := sh(client.ns, "client", "dig", "+short", "web.dns.podman")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != web.ipv4() {
		return fmt.Errorf("web.dns.podman is %q, want %s", strings.TrimSpace(out), web.ipv4())
	}
	// podman network inspect: the attachments with their DNS names
	if _, err := d.berth("network", "inspect", list.Name); err != nil {
		return fmt.Errorf("berth network inspect %s: %w", list.Name, err)
	}
	return nil
}

// resolvConf writes /etc/netns/<ns>/resolv.conf, which `ip netns exec`
// mounts over /etc/resolv.conf inside the namespace; removed on cleanup.
func (d *demo) resolvConf(c *ctr, servers, search []string) error {
	dir := filepath.Join("/etc/netns", c.ns.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d.dels = append(d.dels, func() { os.RemoveAll(dir) })
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(b.String()), 0o644)
}
