package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

const plugin = "portmap"

// NetConf is the reference portmap plugin's configuration.
type NetConf struct {
	types.NetConf
	SNAT                 *bool     `json:"snat,omitempty"`
	ConditionsV4         *[]string `json:"conditionsV4,omitempty"`
	ConditionsV6         *[]string `json:"conditionsV6,omitempty"`
	MasqAll              bool      `json:"masqAll,omitempty"`
	MarkMasqBit          *int      `json:"markMasqBit,omitempty"`
	ExternalSetMarkChain *string   `json:"externalSetMarkChain,omitempty"`
	Backend              string    `json:"backend,omitempty"`
	// HostPortRange is where a mapping with "hostPort": 0 (docker run -P)
	// gets its port: "first-last", default Docker's 32768-60999.
	HostPortRange string `json:"hostPortRange,omitempty"`
	// DataDir holds the ports chosen for hostPort 0, one file per
	// attachment, so CHECK finds the same and DEL releases them.
	DataDir       string `json:"dataDir,omitempty"`
	RuntimeConfig struct {
		PortMaps []PortMapEntry `json:"portMappings,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	// mappings are RuntimeConfig.PortMaps, validated; a dynamic one has
	// HostPort 0 until a port is chosen or found (dynamic.go).
	mappings []firewall.PortMapping
	// portRange is HostPortRange parsed.
	portRange [2]int
}

// PortMapEntry is one entry of runtimeConfig.portMappings (CONVENTIONS.md).
type PortMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// loadConf decodes and validates stdin; every error is a CNI error.
func loadConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := cni.Decode(plugin, stdin, conf); err != nil {
		return nil, err
	}
	if err := cni.SafeName("name", conf.Name); err != nil {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: %v", plugin, err)
	}
	switch conf.Backend {
	case "", firewall.NFTables, firewall.IPTables:
	default:
		return nil, cni.InvalidField(plugin, "backend", fmt.Sprintf("%q", conf.Backend), `must be "nftables" or "iptables"`)
	}
	if conf.SNAT == nil {
		t := true
		conf.SNAT = &t
	}
	// The reference marks packets for a later masquerade rule (its own,
	// or kube-proxy's through externalSetMarkChain); berth masquerades in
	// its own postrouting chain and sets no mark, so either field would be
	// silently without effect.
	if conf.MarkMasqBit != nil {
		return nil, cni.Errorf(cni.CodeUnsupportedField, "%s: markMasqBit: not supported (berth masquerades published ports directly, without a mark)", plugin)
	}
	if conf.ExternalSetMarkChain != nil {
		return nil, cni.Errorf(cni.CodeUnsupportedField, "%s: externalSetMarkChain: not supported (berth masquerades published ports directly, without a mark)", plugin)
	}
	if conf.Backend != firewall.IPTables {
		// The reference's nftables backend takes these as nft syntax for
		// its CLI; berth talks netlink and has no nft parser, so say so
		// rather than silently publish more widely than asked.
		for field, v := range map[string]*[]string{"conditionsV4": conf.ConditionsV4, "conditionsV6": conf.ConditionsV6} {
			if v != nil && len(*v) > 0 {
				return nil, cni.Errorf(cni.CodeUnsupportedField, "%s: %s: only supported with backend \"iptables\"", plugin, field)
			}
		}
	}
	var err error
	if conf.mappings, err = mappings(conf.RuntimeConfig.PortMaps); err != nil {
		return nil, err
	}
	if conf.portRange, err = parsePortRange(conf.HostPortRange); err != nil {
		return nil, err
	}
	if conf.DataDir == "" {
		conf.DataDir = defaultDataDir
	}
	if !filepath.IsAbs(conf.DataDir) {
		return nil, cni.InvalidField(plugin, "dataDir", fmt.Sprintf("%q", conf.DataDir), "must be an absolute path")
	}
	return conf, nil
}

func mappings(entries []PortMapEntry) ([]firewall.PortMapping, error) {
	seen := map[string]int{}
	out := make([]firewall.PortMapping, 0, len(entries))
	for i, e := range entries {
		field := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
		// 0 asks for a port of hostPortRange (docker run -P).
		if e.HostPort < 0 || e.HostPort > 65535 {
			return nil, cni.InvalidField(plugin, field+".hostPort", e.HostPort, "must be between 0 (any free port) and 65535")
		}
		if e.ContainerPort < 1 || e.ContainerPort > 65535 {
			return nil, cni.InvalidField(plugin, field+".containerPort", e.ContainerPort, "must be between 1 and 65535")
		}
		proto := strings.ToLower(e.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		switch proto {
		case "tcp", "udp", "sctp":
		default:
			return nil, cni.InvalidField(plugin, field+".protocol", fmt.Sprintf("%q", e.Protocol), "must be tcp, udp or sctp")
		}
		m := firewall.PortMapping{HostPort: e.HostPort, ContainerPort: e.ContainerPort, Protocol: proto}
		if e.HostIP != "" {
			m.HostIP = net.ParseIP(e.HostIP)
			if m.HostIP == nil {
				return nil, cni.InvalidField(plugin, field+".hostIP", fmt.Sprintf("%q", e.HostIP), "not an IP address")
			}
			if m.HostIP.IsUnspecified() {
				m.HostIP = nil
			}
		}
		key := fmt.Sprintf("%s/%d/%s", m.HostIP, m.HostPort, proto)
		if j, dup := seen[key]; dup && m.HostPort != 0 {
			return nil, cni.InvalidField(plugin, field, m, fmt.Sprintf("same host port as runtimeConfig.portMappings[%d]", j))
		}
		seen[key] = i
		out = append(out, m)
	}
	return out, nil
}

// defaultDataDir is under /run: a chosen port lives as long as the
// nftables elements that publish it, which do not survive a reboot.
const defaultDataDir = "/run/cni/berth/portmap"

// defaultPortRange is Docker's range for -P (and Linux's default
// ip_local_port_range).
var defaultPortRange = [2]int{32768, 60999}

// parsePortRange parses hostPortRange "first-last".
func parsePortRange(s string) ([2]int, error) {
	if s == "" {
		return defaultPortRange, nil
	}
	bad := func(why string) ([2]int, error) {
		return [2]int{}, cni.InvalidField(plugin, "hostPortRange", fmt.Sprintf("%q", s), why)
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return bad(`must be "first-last", e.g. "32768-60999"`)
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return bad(`must be "first-last", e.g. "32768-60999"`)
	}
	if first < 1 || last > 65535 || first > last {
		return bad("must be within 1-65535, first <= last")
	}
	return [2]int{first, last}, nil
}
