package main

import (
	"errors"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/registry"
)

const plugin = "container-mode"

// Config is {"type":"container-mode"}; the target comes per invocation.
type Config struct {
	types.NetConf
	// AttachmentsDir is the registry the target was recorded in by its
	// own plugins (bridge, macvlan): theirs and this one's must agree.
	registry.AttachConf

	Args struct {
		Cni struct {
			Container string `json:"container"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig struct {
		Container string `json:"container"`
	} `json:"runtimeConfig"`

	dir string
}

// containerArgs is CNI_ARGS' CONTAINER=<name|ID|prefix>.
type containerArgs struct {
	types.CommonArgs
	CONTAINER types.UnmarshallableString //nolint:revive // the wire name
}

// errNeverJoined: a DEL config that no ADD can have succeeded with.
var errNeverJoined = errors.New("config that ADD refuses")

func loadConf(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	return c, c.validate()
}

// loadDelConf decodes only what DEL uses (the network's name and the
// registry's place), so that a config ADD refuses never makes DEL fail;
// errNeverJoined when it names no place a join can have been recorded in.
func loadDelConf(stdin []byte) (*Config, error) {
	var base struct {
		types.NetConf
		registry.AttachConf
	}
	if err := cni.Decode(plugin, stdin, &base); err != nil {
		return nil, errNeverJoined
	}
	c := &Config{NetConf: base.NetConf, AttachConf: base.AttachConf}
	if err := c.validate(); err != nil {
		return nil, errNeverJoined
	}
	return c, nil
}

func (c *Config) validate() error {
	if err := cni.SafeName("network name", c.Name); err != nil {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: %v", plugin, err)
	}
	dir, err := registry.AttachmentsDir(c.AttachmentsDir)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, "%s", plugin)
	}
	c.dir = dir
	return nil
}

// target returns the reference to the container to join, from
// runtimeConfig.container, args.cni.container or CNI_ARGS CONTAINER, in
// that order (the order the conventions give capabilities, args and env).
func (c *Config) target(cniArgs string) (string, error) {
	if t := strings.TrimSpace(c.RuntimeConfig.Container); t != "" {
		return t, nil
	}
	if t := strings.TrimSpace(c.Args.Cni.Container); t != "" {
		return t, nil
	}
	var a containerArgs
	a.IgnoreUnknown = true
	if err := types.LoadArgs(cniArgs, &a); err != nil {
		return "", cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_ARGS: %v", plugin, err)
	}
	if t := strings.TrimSpace(string(a.CONTAINER)); t != "" {
		return t, nil
	}
	return "", cni.Errorf(cni.CodeInvalidConfig, "%s: no container to join: give CNI_ARGS CONTAINER=<name, ID or unique ID prefix> (or args.cni.container, or runtimeConfig.container)", plugin)
}
