// Command floorplugin is the floor of a CNI chain on a real engine: a Go
// binary that answers like a plugin and does nothing else, installed under
// each name of Podman's chain by BenchmarkPodmanRunRm. What the engine
// spends with it is its own work plus one process start per plugin call,
// the least any chain of separate plugin binaries can cost there.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	switch os.Getenv("CNI_COMMAND") {
	case "VERSION":
		fmt.Print(`{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
	case "ADD":
		if err := add(os.Stdin, os.Stdout); err != nil {
			fmt.Printf(`{"code":100,"msg":%q}`, err.Error())
			os.Exit(1)
		}
	}
	// DEL, CHECK, GC, STATUS: nothing to undo or check.
}

// add passes the previous plugin's result on; the first plugin of the
// chain makes one: an interface in the container's namespace (which is
// not created) with a fixed address, all an engine reads from a result.
func add(in io.Reader, out io.Writer) error {
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.NewDecoder(in).Decode(&conf); err != nil {
		return fmt.Errorf("floorplugin: decoding the config: %w", err)
	}
	if len(conf.PrevResult) > 0 {
		_, err := out.Write(conf.PrevResult)
		return err
	}
	return json.NewEncoder(out).Encode(map[string]any{
		"cniVersion": conf.CNIVersion,
		"interfaces": []map[string]string{{"name": os.Getenv("CNI_IFNAME"), "mac": "02:42:0a:59:00:02", "sandbox": os.Getenv("CNI_NETNS")}},
		"ips":        []map[string]any{{"version": "4", "address": "10.89.0.2/24", "gateway": "10.89.0.1", "interface": 0}},
	})
}
