// Package sidecar is dnsname's per-host DNS server process and the client
// the plugin uses to start it and tell it about every change. Starting,
// readiness, restarting after a crash and exiting with the last name are
// internal/hostd's; this package is what is particular to DNS.
//
// The sidecar is a daemon of its own (cmd/dnsname-sidecar), not the
// dnsname plugin re-executed. It opens no registry store: the plugin, which
// has the registry open anyway, sends it whole records (put), removals
// (del) and whole networks (replace), and streams the registry's full
// contents on its stdin when it starts it, so a sidecar restarted after a
// crash rebuilds its state from the registry whatever the backend. The one
// thing the plugin cannot do is tell it about another host's containers,
// so for etcd networks the sidecar follows the keys itself, with the etcd
// client (watch.go).
package sidecar

import (
	"github.com/berthnet/berth/internal/hostd"
	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/registry"
)

// Binary is the sidecar's file name, installed next to the dnsname plugin.
const Binary = "dnsname-sidecar"

// ConfigEnv carries the sidecar's JSON Config; a process started without
// it is not the sidecar.
const ConfigEnv = "BERTH_DNSNAME_SIDECAR"

// Config is what the sidecar needs to know.
type Config struct {
	// DataDir holds the control socket, pid file and locks.
	DataDir string `json:"dataDir"`
	// LogFile is where the sidecar logs.
	LogFile string `json:"logFile"`
	// ResolvConf names the default upstreams (for networks that configure
	// none); "/etc/resolv.conf" if empty.
	ResolvConf string `json:"resolvConf,omitempty"`
}

// Dir is the sidecar's hostd state directory: control.sock, start.lock,
// sidecar.pid and sidecar.lock in DataDir.
func (c Config) Dir() hostd.Dir { return hostd.Dir{Path: c.DataDir, Name: "sidecar"} }

// Request is one change, sent as one JSON line on the control socket (and
// on the sidecar's stdin at startup). The reply is one line: "ok",
// "exiting" (the sidecar is shutting down and did not apply it) or
// "err <message>".
type Request struct {
	Op string `json:"op"`
	// Network carries the network's settings (put, replace) or just its
	// name (del).
	Network nameserver.Network `json:"network"`
	// Record is the record to put.
	Record *nameserver.Record `json:"record,omitempty"`
	// Records replace all of the network's (replace); none drops it.
	Records []nameserver.Record `json:"records,omitempty"`
	// Key is the record to delete.
	Key string `json:"key,omitempty"`
	// Registry is set for networks in etcd (put, replace): the sidecar then
	// watches the network's keys, so that names other hosts register
	// resolve here without a local event.
	Registry *registry.Config `json:"registry,omitempty"`
	// Revision is what sync waits for.
	Revision int64 `json:"revision,omitempty"`
}

// Ops.
const (
	OpPut     = "put"
	OpDel     = "del"
	OpReplace = "replace"
	// OpSync is a barrier: the reply comes once the etcd watch of Network
	// has applied Revision (a change made in etcd), so that tests wait on
	// the event rather than for a name to appear.
	OpSync = "sync"
)

// Put returns the request that adds or replaces rec in n.
func Put(n nameserver.Network, rec nameserver.Record) Request {
	return Request{Op: OpPut, Network: n, Record: &rec}
}

// Del returns the request that removes key from network.
func Del(network, key string) Request {
	return Request{Op: OpDel, Network: nameserver.Network{Name: network}, Key: key}
}

// Replace returns the request that swaps n's records for recs.
func Replace(n nameserver.Network, recs []nameserver.Record) Request {
	return Request{Op: OpReplace, Network: n, Records: recs}
}
