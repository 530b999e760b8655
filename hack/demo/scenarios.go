package main

import (
	"fmt"
)

type scenario struct {
	title string
	run   func(*demo) error
}

var scenarios = []scenario{
	{"Scenario 1: the default bridge (docker run, twice)", defaultBridge},
	{"Scenario 2: a published port (docker run -p 3000:80 httpd)", publishedPort},
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
	return nil
}
