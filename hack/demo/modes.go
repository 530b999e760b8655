package main

import (
	"fmt"
	"strings"
)

// noneMode is `docker run --network none`: the runtime runs only the
// loopback plugin (conf-examples/docker-none.conflist). The container has
// lo up and nothing else, and reaches nothing, not even a container on the
// default bridge of the same host.
func noneMode(d *demo) error {
	bridge, err := d.network("docker-default.conflist")
	if err != nil {
		return err
	}
	web, err := d.runContainer("web", bridge, nil)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run --name web -> eth0 %s on the default bridge\n", web.res.IPs[0].Address.String())
	none, err := d.network("docker-none.conflist")
	if err != nil {
		return err
	}
	n, err := d.newNS("lonely")
	if err != nil {
		return err
	}
	// A fresh namespace's lo is down; the loopback plugin brings it up.
	if _, err := n.Exec("ip", "link", "set", "lo", "down"); err != nil {
		return err
	}
	c := &ctr{name: "lonely", ns: n}
	if c.res, err = d.attach(c, none, "lo", nil); err != nil {
		return err
	}
	fmt.Println("  docker run --network none --name lonely   (CNI: conf-examples/docker-none.conflist, loopback only)")
	out, err := sh(n, "lonely", "ip", "-br", "addr")
	if err != nil {
		return err
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "lo ") || !strings.Contains(lines[0], "UNKNOWN") {
		return fmt.Errorf("lonely has more than lo up: %q", out)
	}
	if out, _ := sh(n, "lonely", "ip", "route"); strings.TrimSpace(out) != "" {
		return fmt.Errorf("lonely has routes: %q", out)
	}
	if _, err := sh(n, "lonely", "ping", "-c", "1", "-W", "1", "127.0.0.1"); err != nil {
		return fmt.Errorf("lonely cannot reach its own loopback: %w", err)
	}
	if _, err := sh(n, "lonely", "ping", "-c", "1", "-W", "1", web.ipv4()); err == nil {
		return fmt.Errorf("lonely reached web at %s", web.ipv4())
	}
	fmt.Println("  (no route: the packet never leaves the namespace)")
	return nil
}

// hostMode is `docker run --network host`: the runtime starts the process
// in the host's namespace and calls no CNI plugin at all. Its server is
// reached through the host's localhost with no port mapping. "The host" is
// the demo's private host namespace, never the machine's.
func hostMode(d *demo) error {
	fmt.Println("  docker run --network host --name web   (CNI: no plugin; the process runs in the host's namespace)")
	if err := d.startHTTPD(d.host, ":8080", "served by web in host mode"); err != nil {
		return err
	}
	if _, err := sh(d.host, "web", "ip", "-br", "link"); err != nil {
		return err
	}
	fmt.Println("  the host reaches it on localhost:8080, with no -p and no portmap rule:")
	if _, err := sh(d.host, "host", "curl", "-sS", "--max-time", "3", "http://localhost:8080/"); err != nil {
		return fmt.Errorf("curl localhost:8080 on the host: %w", err)
	}
	return nil
}

// containerMode is the seed's container-mode scenario: `docker run -d -P
// --net=bridge --name nginx nginx`, then `docker run --net=container:nginx`
// (conf-examples/docker-container-mode.conflist): the second container sees
// nginx's eth0 with the same 172.17.0.x and MAC, and nginx's localhost.
func containerMode(d *demo) error {
	bridge, err := d.network("docker-bridge-ports.conflist")
	if err != nil {
		return err
	}
	// -P publishes the image's exposed port 80 on a free port of Docker's
	// ephemeral range: "hostPort": 0, portmap chooses; berth port tells.
	ports := map[string]any{"portMappings": []map[string]any{{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}}}
	nginx, err := d.runContainer("nginx", bridge, ports)
	if err != nil {
		return err
	}
	fmt.Printf("  docker run -d -P --net=bridge --name nginx nginx -> eth0 %s, container port 80 on a host port portmap chose\n", nginx.res.IPs[0].Address.String())
	hostSide, err := d.berth("port", "nginx", "80")
	if err != nil {
		return fmt.Errorf("berth port nginx 80: %w", err)
	}
	_, hostPort, _ := strings.Cut(strings.TrimSpace(hostSide), ":")
	if err := d.startHTTPD(nginx.ns, ":80", "Welcome to nginx!"); err != nil {
		return err
	}
	// A status endpoint on nginx's loopback only: what container mode is
	// for (sidecars reaching localhost).
	if err := d.startHTTPD(nginx.ns, "127.0.0.1:8081", "nginx status: active connections 1"); err != nil {
		return err
	}

	join, err := d.network("docker-container-mode.conflist")
	if err != nil {
		return err
	}
	// The runtime names the target per container: CNI_ARGS CONTAINER=nginx
	// or, as here, runtimeConfig.container.
	side, err := d.runContainer("sidecar", join, map[string]any{"container": "nginx"})
	if err != nil {
		return err
	}
	fmt.Printf("  docker run --net=container:nginx --name sidecar busybox -> result: %s %s, %s\n",
		side.res.Interfaces[0].Name, side.res.Interfaces[0].Mac, side.res.IPs[0].Address.String())
	nOut, err := sh(nginx.ns, "nginx", "ip", "-br", "addr", "show", "eth0")
	if err != nil {
		return err
	}
	sOut, err := sh(side.ns, "sidecar", "ip", "-br", "addr", "show", "eth0")
	if err != nil {
		return err
	}
	if strings.TrimSpace(nOut) != strings.TrimSpace(sOut) {
		return fmt.Errorf("sidecar sees %q, nginx has %q", sOut, nOut)
	}
	if _, err := sh(side.ns, "sidecar", "ip", "-br", "link", "show", "eth0"); err != nil {
		return err
	}
	out, err := sh(side.ns, "sidecar", "curl", "-sS", "--max-time", "3", "http://127.0.0.1:8081/")
	if err != nil || !strings.Contains(out, "nginx status") {
		return fmt.Errorf("sidecar cannot reach nginx's localhost: %q %w", out, err)
	}
	if _, err := sh(d.host, "host", "curl", "-sS", "--max-time", "3", "http://localhost:"+hostPort+"/"); err != nil {
		return fmt.Errorf("nginx's published port: %w", err)
	}
	return nil
}
