package firewall

import (
	"errors"

	"github.com/berthnet/berth/pkg/cni"
)

type iptPorts struct{}

func (iptPorts) AddPorts(p PortMap) error   { return errors.New("todo") }
func (iptPorts) DelPorts(p PortMap) error   { return errors.New("todo") }
func (iptPorts) CheckPorts(p PortMap) error { return errors.New("todo") }
func (iptPorts) GCPorts(network string, valid map[cni.Attachment]bool) error {
	return errors.New("todo")
}
