package main

// Dynamic host ports: a mapping with "hostPort": 0 (docker run -P) gets a
// free port of hostPortRange, chosen under one lock for the host so that
// concurrent ADDs never pick the same one, and recorded in a small state
// file per attachment (dataDir/<network>/<containerID>@<ifname>.json) that
// CHECK reads to find the same port and DEL removes. The port is published
// like any other, so `berth port` reads it back from nftables with its
// owner tag.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/flock"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

// chosenPort is one dynamic mapping's port, by its index in portMappings;
// the container side is kept to notice a config that changed under it.
type chosenPort struct {
	Index         int    `json:"index"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

type portState struct {
	Ports []chosenPort `json:"ports"`
}

func hasDynamic(maps []firewall.PortMapping) bool {
	for _, m := range maps {
		if m.HostPort == 0 {
			return true
		}
	}
	return false
}

// statePath is the attachment's state file; the key is checked as a path
// component.
func statePath(conf *NetConf, args *skel.CmdArgs) (string, error) {
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return "", cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	if err := cni.SafeName("interface name", args.IfName); err != nil {
		return "", cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	return filepath.Join(conf.DataDir, conf.Name, args.ContainerID+"@"+args.IfName+".json"), nil
}

func readState(path string) (*portState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st := &portState{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// resolve returns maps with each dynamic mapping's port taken from st, and
// whether every dynamic mapping got one.
func resolve(maps []firewall.PortMapping, st *portState) ([]firewall.PortMapping, bool) {
	out := append([]firewall.PortMapping(nil), maps...)
	all := true
	for i := range out {
		if out[i].HostPort != 0 {
			continue
		}
		if st != nil {
			for _, c := range st.Ports {
				if c.Index == i && c.ContainerPort == out[i].ContainerPort && c.Protocol == out[i].Protocol {
					out[i].HostPort = c.HostPort
				}
			}
		}
		if out[i].HostPort == 0 {
			all = false
		}
	}
	return out, all
}

// known drops the dynamic mappings without a port (DEL of an attachment
// whose state is gone: its elements are then found by tag).
func known(maps []firewall.PortMapping) []firewall.PortMapping {
	var out []firewall.PortMapping
	for _, m := range maps {
		if m.HostPort != 0 {
			out = append(out, m)
		}
	}
	return out
}

// lockPorts takes the host's port-choice lock (dataDir/ports.lock).
func lockPorts(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := flock.Open(filepath.Join(dir, "ports.lock"), os.O_CREATE)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// usedPorts are "proto/port" keys taken by other mappings: those the
// backend publishes (nftables port maps or iptables DNAT rules, static or
// not) and every attachment's state file (the other backend's dynamic
// ports, and those of an ADD between its choice and its publish).
func usedPorts(conf *NetConf) (map[string]bool, error) {
	used := map[string]bool{}
	list := firewall.ListPublished
	if conf.Backend == firewall.IPTables {
		list = firewall.ListPublishedIPTables
	}
	pubs, err := list()
	if err != nil {
		return nil, err
	}
	for _, p := range pubs {
		used[p.Protocol+"/"+strconv.Itoa(p.HostPort)] = true
	}
	files, _ := filepath.Glob(filepath.Join(conf.DataDir, "*", "*.json"))
	for _, f := range files {
		st, err := readState(f)
		if err != nil || st == nil {
			continue // a damaged file must not block every -P
		}
		for _, c := range st.Ports {
			used[c.Protocol+"/"+strconv.Itoa(c.HostPort)] = true
		}
	}
	return used, nil
}

// bindable reports whether no host socket holds the port: a bind in the
// plugin's namespace (the node's) on the mapping's address, or on every
// address. SCTP is not probed (the module may be absent).
func bindable(m firewall.PortMapping, port int) bool {
	host := ""
	if len(m.HostIP) > 0 {
		host = m.HostIP.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	switch m.Protocol {
	case "tcp":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
	case "udp":
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// choose gives every dynamic mapping of maps a port: the one in st if the
// attachment already has it (a repeated ADD), else the next free one of the
// range after the last one chosen (dataDir/cursor), as Docker does, so a
// port just released is not handed out again at once. Called under
// lockPorts.
func choose(conf *NetConf, maps []firewall.PortMapping, st *portState) ([]firewall.PortMapping, *portState, error) {
	out, all := resolve(maps, st)
	if all {
		return out, st, nil
	}
	used, err := usedPorts(conf)
	if err != nil {
		return nil, nil, err
	}
	first, last := conf.portRange[0], conf.portRange[1]
	size := last - first + 1
	cursorFile := filepath.Join(conf.DataDir, "cursor")
	next := first
	if b, err := os.ReadFile(cursorFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= first && n <= last {
			next = n + 1
		}
	}
	nst := &portState{}
	if st != nil {
		nst.Ports = append(nst.Ports, st.Ports...)
	}
	for i := range out {
		if out[i].HostPort != 0 {
			continue
		}
		found := 0
		for k := 0; k < size; k++ {
			p := first + (next-first+k)%size
			if used[out[i].Protocol+"/"+strconv.Itoa(p)] || !bindable(out[i], p) {
				continue
			}
			found = p
			break
		}
		if found == 0 {
			return nil, nil, cni.Errorf(cni.CodeConflict, "%s: runtimeConfig.portMappings[%d]: no free %s host port in hostPortRange %d-%d",
				plugin, i, out[i].Protocol, first, last)
		}
		out[i].HostPort = found
		used[out[i].Protocol+"/"+strconv.Itoa(found)] = true
		next = found + 1
		nst.Ports = append(nst.Ports, chosenPort{Index: i, HostPort: found, ContainerPort: out[i].ContainerPort, Protocol: out[i].Protocol})
	}
	if err := atomicfile.Write(cursorFile, []byte(strconv.Itoa(next-1))); err != nil {
		return nil, nil, err
	}
	return out, nst, nil
}

func writeState(path string, st *portState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}

// removeState drops the attachment's file, and its network's directory
// with the last one.
func removeState(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_ = os.Remove(filepath.Dir(path))
	return nil
}

// gcState removes the state files of the network's attachments not in
// valid.
func gcState(conf *NetConf, valid map[cni.Attachment]bool) error {
	des, err := os.ReadDir(filepath.Join(conf.DataDir, conf.Name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range des {
		key, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok {
			continue
		}
		id, ifname, ok := strings.Cut(key, "@")
		if !ok || valid[cni.Attachment{ContainerID: id, IfName: ifname}] {
			continue
		}
		if err := removeState(filepath.Join(conf.DataDir, conf.Name, de.Name())); err != nil {
			return err
		}
	}
	return nil
}
