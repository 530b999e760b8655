//go:build tools

// Package tools pins modules the project depends on before code imports them,
// so `go mod tidy` keeps them while packages are being written.
package tools

import (
	_ "github.com/containernetworking/cni/libcni"
	_ "github.com/containernetworking/cni/pkg/skel"
	_ "github.com/containernetworking/plugins/pkg/ip"
	_ "github.com/containernetworking/plugins/pkg/ns"
	_ "github.com/coreos/go-iptables/iptables"
	_ "github.com/google/nftables"
	_ "github.com/miekg/dns"
	_ "github.com/vishvananda/netlink"
	_ "go.etcd.io/etcd/client/v3"
)
