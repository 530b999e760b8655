// Package registry records who is attached where: one Entry per container
// interface on a network (container ID, ifname, netns, IPs, MAC, names,
// aliases). The DNS sidecar answers from it, the overlay control plane
// shares it between hosts.
//
// Two backends implement Store: local files (the embedded default, under
// /run/cni, written atomically and locked; this package) and etcd v3 for
// networks that span hosts (pkg/registry/etcdstore, a package of its own so
// that importing this one never links the etcd client). Both key entries by (network, container ID, ifname), the CNI
// attachment key, so DEL and GC map onto Delete and List directly.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/berthnet/berth/pkg/cni"
)

// ErrNotFound is returned by Get for an attachment that has no entry.
var ErrNotFound = errors.New("registry: entry not found")

// Entry is one container interface attached to a network.
type Entry struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Netns       string `json:"netns,omitempty"`
	// Host names the node that registered the entry (its hostname): with
	// the etcd backend a network's entries come from several hosts, and
	// each host's DNS sidecar must tell its own containers, which keep it
	// running, from the others'. Empty in entries of older versions: local.
	Host string `json:"host,omitempty"`
	MAC  string `json:"mac,omitempty"`
	// IPs are the interface's addresses with their subnet's prefix length
	// (10.88.0.5/16): the DNS server derives a network's subnets, and so
	// which askers belong to it, from them.
	IPs []netip.Prefix `json:"ips"`
	// Gateways are the network's gateway addresses as this attachment saw
	// them; the DNS server listens on them.
	Gateways []netip.Addr `json:"gateways,omitempty"`
	// Names are the container's own names (its name, its short ID);
	// Aliases are extra names given by the runtime. Both resolve alike, but
	// PTR answers use Names[0].
	Names   []string `json:"names,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	// DNS carries the network's DNS settings as the attaching plugin's
	// config had them. They live in every entry rather than in a separate
	// network record so that nothing is left over when the last entry of a
	// network goes, and no second write is needed per ADD.
	DNS     DNSConfig `json:"dns"`
	Created time.Time `json:"created"`
}

// DNSConfig is a network's name-resolution settings.
type DNSConfig struct {
	Domain string `json:"domain,omitempty"`
	// Upstreams are "ip:port" servers to forward other names to; empty
	// means the host's resolv.conf.
	Upstreams []string `json:"upstreams,omitempty"`
	// Internal networks get no forwarding: other names are refused.
	Internal bool `json:"internal,omitempty"`
}

// Key is the attachment an entry belongs to.
func (e *Entry) Key() cni.Attachment {
	return cni.Attachment{ContainerID: e.ContainerID, IfName: e.IfName}
}

// Validate checks the fields used as keys (they become path components and
// etcd key segments).
func (e *Entry) Validate() error {
	return ValidKey(e.Network, e.ContainerID, e.IfName)
}

// ValidKey checks an attachment key for use as path components and etcd
// key segments.
func ValidKey(network, containerID, ifName string) error {
	if err := cni.SafeName("network name", network); err != nil {
		return err
	}
	if err := cni.SafeContainerID(containerID); err != nil {
		return err
	}
	if err := cni.SafeName("interface name", ifName); err != nil {
		return err
	}
	return nil
}

// EntryName is the per-network key of an attachment: "@" is in neither the
// container ID nor the interface name charset, so it is unambiguous.
func EntryName(containerID, ifName string) string {
	return containerID + "@" + ifName
}

// Store is a registry backend. All methods are safe for concurrent use by
// several processes.
type Store interface {
	// Put creates or replaces the entry of (e.Network, e.ContainerID, e.IfName).
	Put(ctx context.Context, e *Entry) error
	// Get returns the entry, or ErrNotFound.
	Get(ctx context.Context, network, containerID, ifName string) (*Entry, error)
	// Delete removes the entry; removing a missing entry is not an error.
	Delete(ctx context.Context, network, containerID, ifName string) error
	// List returns the network's entries (none for an unknown network).
	List(ctx context.Context, network string) ([]*Entry, error)
	// Networks returns the names of the networks that have entries.
	Networks(ctx context.Context) ([]string, error)
	Close() error
}

// Backend names, as written in config.
const (
	BackendFile = "file"
	BackendEtcd = "etcd"
)

// Config selects and configures a backend.
type Config struct {
	// Backend is BackendFile (default) or BackendEtcd.
	Backend string `json:"backend,omitempty"`
	// Dir is the file backend's root directory.
	Dir string `json:"dir,omitempty"`
	// Endpoints are the etcd client URLs ("http://127.0.0.1:2379"). The
	// plugin uses them with clientv3; the DNS sidecar follows the keys
	// through etcd's JSON gateway on the same URLs (EtcdWatch), which etcd
	// serves unless started with --enable-grpc-gateway=false.
	Endpoints []string `json:"endpoints,omitempty"`
	// Prefix is the etcd key prefix; default "/berth/registry/".
	Prefix string `json:"prefix,omitempty"`
	// DialTimeout bounds connecting to etcd; default 5s.
	DialTimeout time.Duration `json:"dialTimeout,omitempty"`
	// CertFile and KeyFile are a client certificate for etcd started with
	// --client-cert-auth; TrustedCAFile is the CA that signed etcd's
	// server certificate (etcd's own flag names). Any of them makes TLS
	// required: every endpoint must then be https:// (see ValidateEtcd).
	CertFile      string `json:"certFile,omitempty"`
	KeyFile       string `json:"keyFile,omitempty"`
	TrustedCAFile string `json:"trustedCAFile,omitempty"`
}

// DefaultEtcdPrefix is where entries live in etcd unless Config.Prefix
// says otherwise: prefix<network>/<containerID>@<ifname> holds an entry's
// JSON.
const DefaultEtcdPrefix = "/berth/registry/"

// EtcdPrefix returns the key prefix cfg.Prefix means: the default when
// empty, always ending in "/".
func EtcdPrefix(prefix string) string {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}

// SafeNetwork checks a network name used as a key.
func SafeNetwork(network string) error {
	if err := cni.SafeName("network name", network); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}
