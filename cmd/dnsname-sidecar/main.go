// Command dnsname-sidecar is the per-host DNS server the dnsname plugin
// starts (pkg/nameserver/sidecar). It is a binary of its own, installed beside the
// plugins, so that it does not link the etcd client the plugin needs for
// the etcd registry: it serves names the plugin sends it and never reads a
// registry. It is not a CNI plugin (and says so when run as one), so it
// lives under cmd/; `make build`, `make install` and the test harness put
// it in bin/ next to dnsname, where the plugin finds it.
package main

import (
	"os"

	"github.com/berthnet/berth/pkg/nameserver/sidecar"
)

func main() { os.Exit(sidecar.Main()) }
