package main

import (
	"encoding/json"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
)

// withDataDir points each plugin's state (and its ipam's) under dir, so the
// demo never touches the machine's /var/lib/cni or /run/cni.
// patch, if not nil, edits the conflist's JSON first.
func withDataDir(raw []byte, dir string, patch func(map[string]any)) (*libcni.NetworkConfigList, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if patch != nil {
		patch(m)
	}
	for _, p := range m["plugins"].([]any) {
		pm := p.(map[string]any)
		typ, _ := pm["type"].(string)
		pm["dataDir"] = filepath.Join(dir, typ)
		pm["attachmentsDir"] = filepath.Join(dir, "attachments")
		if ipam, ok := pm["ipam"].(map[string]any); ok {
			ipam["dataDir"] = filepath.Join(dir, "networks")
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromBytes(b)
}
