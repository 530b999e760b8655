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

// Attachments is the attachments registry (see DefaultAttachmentsDir): a
// file store whose entries can also be found by container name and ID
// prefix, through a name index kept beside them.
//
// The index is namesDir, one symlink per (name, attachment) named
// <name>@<containerID>@<network>@<ifname> ("@" is in none of them) and
// pointing at the entry, so a name lookup is a directory listing rather
// than a read of every entry (40 ms for 1000 containers on this machine).
// A symlink is made in one system call, needs no temp file or lock, and is
// only a hint: Find confirms every match against the entry itself, so a
// link left by a crash is harmless (GC sweeps it).
type Attachments struct {
	*Files
}

// namesDir is no valid network name ("@"), so Files.Networks never takes
// it for one and no network can collide with it.
const namesDir = "@names"

// OpenAttachments opens (creating it, 0700) the attachments registry at dir.
func OpenAttachments(dir string) (*Attachments, error) {
	f, err := OpenFiles(dir)
	if err != nil {
		return nil, err
	}
	return &Attachments{Files: f}, nil
}

func linkName(name string, e *Entry) string {
	return name + "@" + e.ContainerID + "@" + e.Network + "@" + e.IfName
}

// indexed tells the names that get a link: not the short ID (a prefix of
// the ID, which Find tries anyway, so a link would cost every ADD a
// system call for nothing), nor what cannot be a file name.
func indexed(name string, e *Entry) bool {
	return ValidName(name) == nil && !strings.HasPrefix(e.ContainerID, name) && len(linkName(name, e)) <= 255
}

// Put writes the entry, then its names' links.
func (a *Attachments) Put(ctx context.Context, e *Entry) error {
	if err := a.Files.Put(ctx, e); err != nil {
		return err
	}
	dir := filepath.Join(a.root, namesDir)
	target := filepath.Join("..", e.Network, EntryName(e.ContainerID, e.IfName)+".json")
	for _, n := range e.Names {
		if !indexed(n, e) {
			continue
		}
		l := linkName(n, e)
		err := os.Symlink(target, filepath.Join(dir, l))
		if errors.Is(err, fs.ErrNotExist) {
			// The first entry of this registry: make the index.
			if err = os.Mkdir(dir, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
				err = os.Symlink(target, filepath.Join(dir, l))
			}
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("registry: name index: %w", err)
		}
	}
	return nil
}

// Delete removes the entry's name links, then the entry.
func (a *Attachments) Delete(ctx context.Context, network, containerID, ifName string) error {
	if e, err := a.Get(ctx, network, containerID, ifName); err == nil {
		for _, n := range e.Names {
			if indexed(n, e) {
				_ = os.Remove(filepath.Join(a.root, namesDir, linkName(n, e)))
			}
		}
	}
	return a.Files.Delete(ctx, network, containerID, ifName)
}

// Sweep removes name links whose entry is gone (a plugin killed between
// writing an entry's file and its links, or between removing them); GC
// calls it.
func (a *Attachments) Sweep() error {
	dir := filepath.Join(a.root, namesDir)
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("registry: name index: %w", err)
	}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			_ = os.Remove(p)
		}
	}
	return nil
}

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
// Only directory listings are read (one per network and the name index),
// then the matching container's entries.
func (a *Attachments) Find(ctx context.Context, ref string) ([]*Entry, error) {
	if ref == "" {
		return nil, ErrNotFound
	}
	byID, err := a.index(ctx)
	if err != nil {
		return nil, err
	}
	if files, ok := byID[ref]; ok {
		return a.read(files)
	}
	names, err := a.names(byID)
	if err != nil {
		return nil, err
	}

	// By name: the index's candidates, confirmed by their entries.
	var named []string
	found := map[string][]*Entry{}
	for id, ns := range names {
		if !slices.Contains(ns, ref) {
			continue
		}
		es, err := a.read(byID[id])
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(es, func(e *Entry) bool { return slices.Contains(e.Names, ref) }) {
			named = append(named, id)
			found[id] = es
		}
	}
	if len(named) == 1 {
		return found[named[0]], nil
	}
	if len(named) > 1 {
		return nil, ambiguous(ref, named, names)
	}

	var prefixed []string
	for id := range byID {
		if strings.HasPrefix(id, ref) {
			prefixed = append(prefixed, id)
		}
	}
	switch len(prefixed) {
	case 0:
		return nil, ErrNotFound
	case 1:
		return a.read(byID[prefixed[0]])
	}
	return nil, ambiguous(ref, prefixed, names)
}

// ambiguous lists the candidates as "ID (name)", the name being the
// runtime's rather than the short ID when there is one.
func ambiguous(ref string, ids []string, names map[string][]string) *AmbiguousError {
	amb := &AmbiguousError{Ref: ref}
	for _, id := range ids {
		c := id
		label := ""
		for _, n := range names[id] {
			if label == "" || strings.HasPrefix(id, label) {
				label = n
			}
		}
		if label != "" {
			c += " (" + label + ")"
		}
		amb.Candidates = append(amb.Candidates, c)
	}
	sort.Strings(amb.Candidates)
	return amb
}

// index lists every entry file by container ID.
func (a *Attachments) index(ctx context.Context) (map[string][]file, error) {
	nets, err := a.Networks(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string][]file{}
	for _, n := range nets {
		des, err := os.ReadDir(filepath.Join(a.root, n))
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

// names reads the name index: the names of each container that has
// entries.
func (a *Attachments) names(byID map[string][]file) (map[string][]string, error) {
	des, err := os.ReadDir(filepath.Join(a.root, namesDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("registry: name index: %w", err)
	}
	out := map[string][]string{}
	for _, de := range des {
		parts := strings.Split(de.Name(), "@")
		if len(parts) != 4 {
			continue
		}
		name, id := parts[0], parts[1]
		if _, ok := byID[id]; ok && !slices.Contains(out[id], name) {
			out[id] = append(out[id], name)
		}
	}
	return out, nil
}

// read reads the listed entries, skipping those deleted since.
func (a *Attachments) read(files []file) ([]*Entry, error) {
	var out []*Entry
	for _, fl := range files {
		e, err := readEntry(filepath.Join(a.root, fl.network, fl.name))
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
