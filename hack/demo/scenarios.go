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
