package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthnet/berth/internal/atomicfile"
)

// backup holds what an ADD changed, with the values from before, so DEL
// can put them back. The JSON fields and the file name
// (<dataDir>/<containerID>_<ifName>.json) are the reference's, so a node
// that swaps binaries keeps restoring; berth adds sysctl and network, which
// the reference ignores.
type backup struct {
	Mac      string `json:"mac,omitempty"`
	Promisc  *bool  `json:"promisc,omitempty"`
	Mtu      int    `json:"mtu,omitempty"`
	Allmulti *bool  `json:"allmulti,omitempty"`
	TxQLen   *int   `json:"txQLen,omitempty"`
	// SysCtl maps a /proc/sys path (interface name resolved) to its old value.
	SysCtl map[string]string `json:"sysctl,omitempty"`
	// Network scopes GC to the network that wrote the file: dataDir is
	// shared by every network using tuning.
	Network string `json:"network,omitempty"`
}

func backupPath(dataDir, containerID, ifName string) string {
	return filepath.Join(dataDir, containerID+"_"+ifName+".json")
}

// loadBackup returns nil, nil when there is none.
func loadBackup(file string) (*backup, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	b := &backup{}
	if err := json.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", file, err)
	}
	return b, nil
}

// saveBackup writes b atomically (temp file + rename, 0600) in a 0700
// directory, so a crash never leaves a half-written file for DEL to trip on.
func saveBackup(file string, b *backup) error {
	data, err := json.MarshalIndent(b, "", " ")
	if err != nil {
		return fmt.Errorf("encoding backup: %w", err)
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	// Synced: the backup is the only record of the values to restore.
	if err := atomicfile.Write(file, data, atomicfile.Sync(), atomicfile.CrashPoint("tuning.save.written")); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

// removeTemps removes the temporary files of file's attachment that a
// writer killed before its rename left (saveBackup's names). Container IDs
// and interface names hold no glob characters (both are validated).
func removeTemps(file string) {
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(file), atomicfile.TempPrefix+filepath.Base(file)+"-*"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
}

func removeBackup(file string) error {
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", file, err)
	}
	return nil
}

// listBackups returns the backup files in dataDir written for network.
// Files without a network (the reference's) are never returned, so GC does
// not drop what another network still needs.
func listBackups(dataDir, network string) ([]string, error) {
	entries, err := os.ReadDir(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dataDir, err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		file := filepath.Join(dataDir, name)
		b, err := loadBackup(file)
		if err != nil || b == nil || b.Network != network {
			continue
		}
		files = append(files, file)
	}
	return files, nil
}
