package main

import (
	"fmt"
	"net"
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
	RuntimeConfig        struct {
		PortMaps []PortMapEntry `json:"portMappings,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	// mappings are RuntimeConfig.PortMaps, validated.
	mappings []firewall.PortMapping
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
	return conf, nil
}

func mappings(entries []PortMapEntry) ([]firewall.PortMapping, error) {
	seen := map[string]int{}
	out := make([]firewall.PortMapping, 0, len(entries))
	for i, e := range entries {
		field := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
		if e.HostPort < 1 || e.HostPort > 65535 {
			return nil, cni.InvalidField(plugin, field+".hostPort", e.HostPort, "must be between 1 and 65535")
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
		if j, dup := seen[key]; dup {
			return nil, cni.InvalidField(plugin, field, m, fmt.Sprintf("same host port as runtimeConfig.portMappings[%d]", j))
		}
		seen[key] = i
		out = append(out, m)
	}
	return out, nil
}
