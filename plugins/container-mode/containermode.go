package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/berthnet/berth/internal/flock"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

// maxHops bounds following joiners to the namespace's owner; a join always
// records the owner itself, so one hop is all a consistent registry needs.
const maxHops = 8

// openStore opens the attachments registry, which must already exist: no
// container has been attached if it does not, and a DEL or a failed ADD
// must not create it.
func openStore(c *Config) (*registry.Attachments, error) {
	if _, err := os.Stat(c.dir); err != nil {
		return nil, err
	}
	return registry.OpenAttachments(c.dir)
}

// lockJoins serializes the joins of one network (checking, registering
// and mounting in ADD; unmounting in DEL and GC), so that two DELs of one
// join never both unmount, which would remove the runtime's own mount too.
// The lock file lives beside the registry's own network locks.
func lockJoins(c *Config) (func(), error) {
	fd, err := flock.Open(filepath.Join(c.dir, c.Name+".joins.lock"), os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	return func() { fd.Close() }, nil
}

// resolve finds the container ref names and returns the ID and entries of
// the namespace's owner: ref itself, or, when ref is a joiner, the
// container it joined.
func resolve(ctx context.Context, store *registry.Attachments, ref string) (string, []*registry.Entry, error) {
	entries, err := store.Find(ctx, ref)
	name := ref
	for hops := 0; ; hops++ {
		var amb *registry.AmbiguousError
		switch {
		case errors.As(err, &amb):
			return "", nil, cni.Errorf(cni.CodeInvalidConfig, "%s: container %v; use a longer ID prefix or the full ID", plugin, amb)
		case errors.Is(err, registry.ErrNotFound) && hops == 0:
			return "", nil, cni.Errorf(cni.CodeUnknownContainer, "%s: container %q: no attached container has that ID, name or ID prefix (registry %s)", plugin, ref, store.Root())
		case errors.Is(err, registry.ErrNotFound):
			return "", nil, cni.Errorf(cni.CodeUnknownContainer, "%s: container %q joined the network namespace of %s, which is no longer attached", plugin, ref, name)
		case err != nil:
			return "", nil, cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
		}
		var own []*registry.Entry
		joined := ""
		for _, e := range entries {
			if e.JoinedTo != "" {
				joined = e.JoinedTo
			} else {
				own = append(own, e)
			}
		}
		if len(own) > 0 || joined == "" || hops == maxHops {
			if len(own) == 0 {
				return "", nil, cni.Errorf(cni.CodeUnknownContainer, "%s: container %q: no namespace owner found after %d joins", plugin, ref, hops)
			}
			return own[0].ContainerID, own, nil
		}
		name = joined
		entries, err = store.Find(ctx, joined)
	}
}

func cmdAdd(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ref, err := c.target(args.Args)
	if err != nil {
		return err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_CONTAINERID: %v", plugin, err)
	}
	if err := cni.SafeName("interface name", args.IfName); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_IFNAME: %v", plugin, err)
	}
	if err := checkJoinerPath(args.Netns); err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %v", plugin, err)
	}
	prev, err := cni.PrevResult(plugin, &c.NetConf)
	if err != nil {
		return err
	}
	if prev != nil && len(prev.Interfaces) > 0 {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult has interfaces (%s first): container-mode must be the first plugin of its list, since the join hides whatever was made in CNI_NETNS before it", plugin, prev.Interfaces[0].Name)
	}
	joinerNS, err := netnsID(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
	}

	store, err := openStore(c)
	if errors.Is(err, fs.ErrNotExist) {
		return cni.Errorf(cni.CodeUnknownContainer, "%s: container %q: no container is attached yet (registry %s does not exist)", plugin, ref, c.dir)
	}
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := notJoined(ctx, store, c.Name, args); err != nil {
		return err
	}
	ownerID, own, err := resolve(ctx, store, ref)
	if err != nil {
		return err
	}
	if ownerID == args.ContainerID {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: container %q is %s itself: a container cannot join its own namespace", plugin, ref, args.ContainerID)
	}
	targetPath := own[0].Netns
	targetNS, err := netnsID(targetPath)
	if err != nil {
		return cni.Errorf(cni.CodeUnknownContainer, "%s: container %q (%s): its network namespace: %v", plugin, ref, ownerID, err)
	}
	if targetNS == joinerNS {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: CNI_NETNS %s already refers to the namespace of %q (%s)", plugin, args.Netns, ref, ownerID)
	}
	target, err := link.OpenNS(targetPath)
	if err != nil {
		return cni.Errorf(cni.CodeUnknownContainer, "%s: container %q (%s): %v", plugin, ref, ownerID, err)
	}
	defer target.Close()
	res, err := targetResult(ref, own, target, args.Netns)
	if err != nil {
		return err
	}

	names, _ := registry.ContainerNames(args.Args, args.ContainerID)
	host, _ := os.Hostname()
	join := &registry.Entry{
		Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns,
		Host: host, Names: names, JoinedTo: ownerID, NetnsDev: targetNS.Dev, NetnsIno: targetNS.Ino,
		Created: time.Now().UTC(),
	}
	if err := register(ctx, c, store, join, targetPath); err != nil {
		return err
	}
	return cni.Print(res, c.CNIVersion)
}

// notJoined refuses an ADD of an attachment that has already joined.
func notJoined(ctx context.Context, store *registry.Attachments, network string, args *skel.CmdArgs) error {
	prev, err := store.Get(ctx, network, args.ContainerID, args.IfName)
	if err == nil {
		return cni.Errorf(cni.CodeConflict, "%s: %s (%s) has already joined %s on network %s; DEL it first", plugin, args.ContainerID, args.IfName, prev.JoinedTo, network)
	}
	if !errors.Is(err, registry.ErrNotFound) {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	return nil
}

// register records the join and mounts the target's namespace over the
// joiner's path, under the joins lock: the entry first, so that a plugin
// killed half way leaves an entry DEL can act on rather than a mount
// nothing knows about (DEL unmounts only a path that refers to the joined
// namespace).
func register(ctx context.Context, c *Config, store *registry.Attachments, join *registry.Entry, targetPath string) error {
	unlock, err := lockJoins(c)
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s", plugin)
	}
	defer unlock()
	// Again under the lock: a concurrent ADD of the same attachment.
	if err := notJoined(ctx, store, c.Name, &skel.CmdArgs{ContainerID: join.ContainerID, IfName: join.IfName}); err != nil {
		return err
	}
	if err := store.Put(ctx, join); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: recording the join", plugin)
	}
	want := nsID{Dev: join.NetnsDev, Ino: join.NetnsIno}
	err = bind(targetPath, join.Netns)
	if err == nil {
		if got, gerr := netnsID(join.Netns); gerr != nil || got != want {
			// Our mount, just made under the lock, whatever it shows.
			_ = unmount(join.Netns)
			err = fmt.Errorf("after the mount %s does not refer to %s's namespace", join.Netns, join.JoinedTo)
		}
	}
	if err != nil {
		_ = store.Delete(context.Background(), join.Network, join.ContainerID, join.IfName)
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	return nil
}

// cmdDel unmounts the target's namespace from the joiner's path (the
// runtime's own namespace is there again for its cleanup) and forgets the
// join. The target is not touched. Nothing recorded, nothing to do.
func cmdDel(args *skel.CmdArgs) error {
	c, err := loadDelConf(args.StdinData)
	if errors.Is(err, errNeverJoined) {
		return nil
	}
	if err != nil {
		return err
	}
	if registry.ValidKey(c.Name, args.ContainerID, args.IfName) != nil {
		return nil // nothing can have been recorded under such a key
	}
	store, err := openStore(c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	unlock, err := lockJoins(c)
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s", plugin)
	}
	defer unlock()
	ctx := context.Background()
	e, err := store.Get(ctx, c.Name, args.ContainerID, args.IfName)
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	return leave(ctx, store, e)
}

// leave undoes one join: unmount (if the path still refers to the joined
// namespace), then forget.
func leave(ctx context.Context, store *registry.Attachments, e *registry.Entry) error {
	if e.Netns != "" {
		if err := unbind(e.Netns, nsID{Dev: e.NetnsDev, Ino: e.NetnsIno}); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
	}
	if err := store.Delete(ctx, e.Network, e.ContainerID, e.IfName); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: forgetting the join", plugin)
	}
	return nil
}

// cmdCheck verifies that CNI_NETNS still refers to the joined namespace
// and that the container it belongs to is still attached.
func cmdCheck(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := cni.NeedPrevResult(plugin, &c.NetConf); err != nil {
		return err
	}
	if err := registry.ValidKey(c.Name, args.ContainerID, args.IfName); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	store, err := openStore(c)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var e *registry.Entry
	if err == nil {
		e, err = store.Get(ctx, c.Name, args.ContainerID, args.IfName)
	}
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return cni.Errorf(cni.CodeUnknownContainer, "%s: %s (%s) has not joined a container on network %s", plugin, args.ContainerID, args.IfName, c.Name)
	}
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	got, err := netnsID(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
	}
	if got != (nsID{Dev: e.NetnsDev, Ino: e.NetnsIno}) {
		return cni.Errorf(cni.CodeKernel, "%s: check: CNI_NETNS %s no longer refers to the network namespace of %s (inode %d, now %d)", plugin, args.Netns, e.JoinedTo, e.NetnsIno, got.Ino)
	}
	if _, err := store.Find(ctx, e.JoinedTo); errors.Is(err, registry.ErrNotFound) {
		return cni.Errorf(cni.CodeKernel, "%s: check: %s joined %s, which is no longer attached: the namespace has lost its interfaces", plugin, args.ContainerID, e.JoinedTo)
	} else if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: check: registry", plugin)
	}
	return nil
}

// cmdGC leaves every join of this network that is not in
// cni.dev/valid-attachments.
func cmdGC(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	valid := cni.ValidSet(c.ValidAttachments)
	store, err := openStore(c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	unlock, err := lockJoins(c)
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s", plugin)
	}
	defer unlock()
	ctx := context.Background()
	entries, err := store.List(ctx, c.Name)
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: gc", plugin)
	}
	for _, e := range entries {
		if e.JoinedTo == "" || valid[e.Key()] {
			continue
		}
		if err := leave(ctx, store, e); err != nil {
			return err
		}
	}
	if err := store.Sweep(); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: gc", plugin)
	}
	return nil
}

// cmdStatus: ready when the registry, if there is one yet, is readable.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := os.ReadDir(c.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: registry %s: %v", plugin, c.dir, err)
	}
	return nil
}
