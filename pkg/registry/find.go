package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// AmbiguousError is a reference that names several containers.
type AmbiguousError struct {
	Ref string
	// Candidates are "ID (name)" of every match, sorted.
	Candidates []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%q names %d containers: %s", e.Ref, len(e.Candidates), strings.Join(e.Candidates, ", "))
}

// file is one entry file found by a directory listing, before reading it.
type file struct{ network, name string }

// Find returns every entry (all networks, all interfaces) of the container
// ref names, resolved as Docker resolves a container reference: an exact
// container ID, else an exact name, else a unique ID prefix. No match is
// ErrNotFound; several are an *AmbiguousError.
//
// IDs and prefixes are matched on file names alone (one directory listing
// per network); only a name lookup reads entries, one per container.
func (f *Files) Find(ctx context.Context, ref string) ([]*Entry, error) {
	if ref == "" {
		return nil, ErrNotFound
	}
	byID, err := f.index(ctx)
	if err != nil {
		return nil, err
	}
	if files, ok := byID[ref]; ok {
		return f.read(files)
	}

	var named []string
	first := map[string]*Entry{}
	for id, files := range byID {
		es, err := f.read(files[:1])
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		first[id] = es[0]
		if slices.Contains(es[0].Names, ref) {
			named = append(named, id)
		}
	}
	var prefixed []string
	for id := range byID {
		if strings.HasPrefix(id, ref) {
			prefixed = append(prefixed, id)
		}
	}
	for _, ids := range [][]string{named, prefixed} {
		switch len(ids) {
		case 0:
			continue
		case 1:
			return f.read(byID[ids[0]])
		}
		amb := &AmbiguousError{Ref: ref}
		for _, id := range ids {
			c := id
			if e := first[id]; e != nil && len(e.Names) > 0 {
				c += " (" + e.Names[0] + ")"
			}
			amb.Candidates = append(amb.Candidates, c)
		}
		sort.Strings(amb.Candidates)
		return nil, amb
	}
	return nil, ErrNotFound
}

// index lists every entry file by container ID.
func (f *Files) index(ctx context.Context) (map[string][]file, error) {
	nets, err := f.Networks(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string][]file{}
	for _, n := range nets {
		des, err := os.ReadDir(filepath.Join(f.root, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue // its last entry went while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		for _, de := range des {
			name, ok := strings.CutSuffix(de.Name(), ".json")
			if !ok || strings.HasPrefix(name, ".") {
				continue
			}
			// "@" is in no container ID: the ID ends at the last one.
			i := strings.LastIndex(name, "@")
			if i <= 0 {
				continue
			}
			id := name[:i]
			byID[id] = append(byID[id], file{network: n, name: de.Name()})
		}
	}
	return byID, nil
}

// read reads the listed entries, skipping those deleted since.
func (f *Files) read(files []file) ([]*Entry, error) {
	var out []*Entry
	for _, fl := range files {
		e, err := readEntry(filepath.Join(f.root, fl.network, fl.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}
