// Command dnsname-sidecar is the per-host DNS server the dnsname plugin
// starts (pkg/nameserver/sidecar/daemon, on internal/hostd): it serves the names
// the plugin sends it, and follows etcd-backed networks' entries of other
// hosts. It is not a CNI plugin (and says so when run as one), so it lives
// under cmd/; `make build`, `make install` and the test harness put it in
// bin/ next to dnsname, where the plugin finds it.
package main

import (
	"os"

	"github.com/berthnet/berth/pkg/nameserver/sidecar/daemon"
)

func main() { os.Exit(daemon.Main()) }
