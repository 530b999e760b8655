package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
)

// prepare parses the config and checks what every command that acts on a
// container needs: a safe attachment (its IDs make a file name) and, for
// ADD and CHECK, a prevResult.
func prepare(args *skel.CmdArgs, needPrev bool) (*NetConf, *current.Result, error) {
	c, err := loadConf(args.StdinData, args.Args)
	if err != nil {
		return nil, nil, err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return nil, nil, cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	if args.IfName != "" {
		if err := link.ValidName(args.IfName); err != nil {
			return nil, nil, cni.Errorf(cni.CodeInvalidEnv, "%s: interface name %q: %v", plugin, args.IfName, err)
		}
	}
	prev, err := cni.PrevResult(plugin, &c.NetConf)
	if err != nil {
		return nil, nil, err
	}
	if needPrev && prev == nil {
		return nil, nil, cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult missing: tuning must follow a plugin that creates the interface", plugin)
	}
	return c, prev, nil
}

// sameNSAsPlugin reports whether path is the namespace the plugin runs in
// (the node's): tuning must never change the node's own sysctls or links.
func sameNSAsPlugin(path string) bool {
	a, err1 := os.Stat(path)
	b, err2 := os.Stat("/proc/thread-self/ns/net")
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func cmdAdd(args *skel.CmdArgs) error {
	c, prev, err := prepare(args, true)
	if err != nil {
		return err
	}
	if err := c.checkAllowed(); err != nil {
		return err
	}
	if sameNSAsPlugin(args.Netns) {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %s is the node's own namespace: refusing to tune it", plugin, args.Netns)
	}
	if c.changesNothing() {
		// Podman's default chain has a bare {"type": "tuning"}: nothing
		// to record, nothing to set, so no namespace to enter and no
		// backup file (DEL finds none and returns). The namespace is
		// still checked, as the reference does by entering it.
		netns, err := ns.GetNS(args.Netns)
		if err != nil {
			return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %s: %v", plugin, args.Netns, err)
		}
		netns.Close()
		return cni.Print(prev, c.CNIVersion)
	}
	file := backupPath(c.DataDir, args.ContainerID, args.IfName)
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		return apply(c, args.Netns, args.IfName, file)
	})
	if err != nil {
		var nsErr ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		if errors.As(err, &nsErr) || errors.As(err, &notNS) {
			return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS %s: %v", plugin, args.Netns, err)
		}
		return boundary(err, "%s: %s in %s", plugin, args.IfName, args.Netns)
	}
	if c.mac != nil {
		setResultMac(prev, args.IfName, c.mac.String())
	}
	return cni.Print(prev, c.CNIVersion)
}

// apply runs inside the container namespace: it records the old values,
// then changes sysctls and the link. A failure undoes what this call
// changed and leaves the backup file as it was.
func apply(c *NetConf, netns, ifName, file string) error {
	dev, err := linkByName(ifName)
	if err != nil {
		return err
	}
	paths := map[string]string{} // sysctl key -> /proc/sys path
	for k := range c.SysCtl {
		p, err := sysctlPath(k, ifName)
		if err != nil {
			return err
		}
		// Only per-namespace sysctls appear in a container namespace's
		// /proc/sys/net: one that is missing is either global (and must
		// not be set from here) or names the wrong interface.
		if _, err := os.Stat(p); err != nil {
			return cni.InvalidField(plugin, "sysctl", k, "no such per-namespace sysctl in the container ("+p+")")
		}
		paths[k] = p
	}

	prior, err := loadBackup(file)
	if err != nil {
		return err
	}
	now, err := snapshot(c, dev, paths)
	if err != nil {
		return err
	}
	// A repeated ADD keeps the values from before the first one.
	merged := now.under(prior)
	merged.Network = c.Name
	if err := saveBackup(file, merged); err != nil {
		return err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		cni.Undone(plugin, "restoring "+ifName, restore(now, ifName))
		if prior != nil {
			cni.Undone(plugin, "putting back the previous backup", saveBackup(file, prior))
		} else {
			cni.Undone(plugin, "removing the backup", removeBackup(file))
		}
	}()

	for k, p := range paths {
		if err := link.WriteSysctl(p, c.SysCtl[k]); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, c.SysCtl[k], err)
		}
	}
	if err := setLink(dev, c); err != nil {
		return err
	}
	committed = true
	return nil
}

// setResultMac records the new MAC in prevResult's entry for the container
// interface (the one in a sandbox; by name alone if none has one).
func setResultMac(res *current.Result, ifName, mac string) {
	matched := false
	for _, i := range res.Interfaces {
		if i.Name == ifName && i.Sandbox != "" {
			i.Mac, matched = mac, true
		}
	}
	if matched {
		return
	}
	for _, i := range res.Interfaces {
		if i.Name == ifName {
			i.Mac = mac
		}
	}
}

func cmdDel(args *skel.CmdArgs) error {
	c, _, err := prepare(args, false)
	if err != nil {
		return err
	}
	file := backupPath(c.DataDir, args.ContainerID, args.IfName)
	// An ADD killed while saving left its temporary file, even when no
	// backup made it into place.
	removeTemps(file)
	b, err := loadBackup(file)
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	if b == nil {
		return nil
	}
	// Without the namespace there is nothing left to restore: the
	// interface and the namespace's sysctls went with it.
	if args.Netns != "" {
		err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
			if _, err := linkByName(args.IfName); err != nil {
				return nil // interface gone: its values went with it
			}
			return restore(b, args.IfName)
		})
		var nsErr ns.NSPathNotExistErr
		if err != nil && !errors.As(err, &nsErr) {
			// Keep the file so that a retried DEL can finish.
			return boundary(err, "%s: restoring %s in %s", plugin, args.IfName, args.Netns)
		}
	}
	if err := removeBackup(file); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	c, _, err := prepare(args, true)
	if err != nil {
		return err
	}
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		dev, err := linkByName(args.IfName)
		if err != nil {
			return err
		}
		for k, v := range c.SysCtl {
			p, err := sysctlPath(k, args.IfName)
			if err != nil {
				return err
			}
			got, err := link.ReadSysctl(p)
			if err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
			if normalize(got) != normalize(v) {
				return fmt.Errorf("sysctl %s is %q, configured %q", k, got, v)
			}
		}
		return checkLink(dev, c)
	})
	if err != nil {
		return boundary(err, "%s: check %s in %s", plugin, args.IfName, args.Netns)
	}
	return nil
}

// normalize compares sysctl values the way the kernel prints them: fields
// separated by tabs where the config may use spaces.
func normalize(v string) string { return strings.Join(strings.Fields(v), " ") }

// cmdGC removes this network's backups of attachments the runtime no
// longer knows: their containers are gone, nothing is left to restore.
func cmdGC(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData, "")
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for a := range cni.ValidSet(c.ValidAttachments) {
		if cni.SafeContainerID(a.ContainerID) == nil && link.ValidName(a.IfName) == nil {
			valid[backupPath(c.DataDir, a.ContainerID, a.IfName)] = true
		}
	}
	files, err := listBackups(c.DataDir, c.Name)
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: gc: %v", plugin, err)
	}
	for _, f := range files {
		if !valid[f] {
			if err := removeBackup(f); err != nil {
				return cni.Errorf(cni.CodeIOFailure, "%s: gc: %v", plugin, err)
			}
		}
	}
	return nil
}

// cmdStatus: tuning is ready when its config and allowlist are readable.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData, "")
	if err != nil {
		return err
	}
	if _, err := readAllowlist(c.AllowlistFile); err != nil {
		return err
	}
	return nil
}

// boundary turns err into the plugin's CNI error: one that already is a CNI
// error (a validation failure found inside the namespace) keeps its code and
// message; anything else is the kernel refusing, with context.
func boundary(err error, format string, a ...any) error {
	var ce *types.Error
	if errors.As(err, &ce) {
		return ce
	}
	return cni.Wrap(cni.CodeKernel, err, format, a...)
}
