package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/pkg/link"
)

// These run with the calling thread inside the container namespace
// (ns.WithNetNSPath): /proc/sys/net is the namespace of the thread that
// opens it, so sysctls and links are read and written in the same place.

func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	return l, nil
}

// snapshot records the current value of everything c will change.
func snapshot(c *NetConf, l netlink.Link, paths map[string]string) (*backup, error) {
	a := l.Attrs()
	b := &backup{}
	if c.Mac != "" {
		b.Mac = a.HardwareAddr.String()
	}
	if c.Mtu != 0 {
		b.Mtu = a.MTU
	}
	if c.Promisc {
		on := a.Promisc != 0
		b.Promisc = &on
	}
	if c.Allmulti != nil {
		on := a.RawFlags&unix.IFF_ALLMULTI != 0
		b.Allmulti = &on
	}
	if c.TxQLen != nil {
		q := a.TxQLen
		b.TxQLen = &q
	}
	for k, p := range paths {
		v, err := link.ReadSysctl(p)
		if err != nil {
			return nil, fmt.Errorf("sysctl %s: %w", k, err)
		}
		if b.SysCtl == nil {
			b.SysCtl = map[string]string{}
		}
		b.SysCtl[p] = v
	}
	return b, nil
}

// under returns b with the values of prior taking precedence: prior holds
// what was there before an earlier ADD.
func (b *backup) under(prior *backup) *backup {
	if prior == nil {
		return b
	}
	m := *prior
	if m.Mac == "" {
		m.Mac = b.Mac
	}
	if m.Mtu == 0 {
		m.Mtu = b.Mtu
	}
	if m.Promisc == nil {
		m.Promisc = b.Promisc
	}
	if m.Allmulti == nil {
		m.Allmulti = b.Allmulti
	}
	if m.TxQLen == nil {
		m.TxQLen = b.TxQLen
	}
	if len(b.SysCtl) > 0 {
		s := map[string]string{}
		for k, v := range b.SysCtl {
			s[k] = v
		}
		for k, v := range prior.SysCtl {
			s[k] = v
		}
		m.SysCtl = s
	}
	return &m
}

// setLink applies c's link attributes. Same as: ip link set IF address MAC
// mtu MTU promisc on allmulticast on|off txqueuelen N.
func setLink(l netlink.Link, c *NetConf) error {
	if c.mac != nil {
		if err := netlink.LinkSetHardwareAddr(l, c.mac); err != nil {
			return fmt.Errorf("mac %s: %w", c.mac, err)
		}
	}
	if c.Promisc {
		if err := netlink.SetPromiscOn(l); err != nil {
			return fmt.Errorf("promisc on: %w", err)
		}
	}
	if c.Mtu != 0 {
		if err := netlink.LinkSetMTU(l, c.Mtu); err != nil {
			return fmt.Errorf("mtu %d: %w", c.Mtu, err)
		}
	}
	if c.Allmulti != nil {
		if err := setAllmulti(l, *c.Allmulti); err != nil {
			return err
		}
	}
	if c.TxQLen != nil {
		if err := netlink.LinkSetTxQLen(l, *c.TxQLen); err != nil {
			return fmt.Errorf("txQLen %d: %w", *c.TxQLen, err)
		}
	}
	return nil
}

func setAllmulti(l netlink.Link, on bool) error {
	var err error
	if on {
		err = netlink.LinkSetAllmulticastOn(l)
	} else {
		err = netlink.LinkSetAllmulticastOff(l)
	}
	if err != nil {
		return fmt.Errorf("allmulti %v: %w", on, err)
	}
	return nil
}

// restore puts back every value b holds, going on after a failure so that
// as much as possible is restored, and reports all failures.
func restore(b *backup, ifName string) error {
	var errs []string
	for p, v := range b.SysCtl {
		if err := link.WriteSysctl(p, v); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Sprintf("sysctl %s=%s: %v", p, v, err))
		}
	}
	l, err := netlink.LinkByName(ifName)
	if err != nil {
		errs = append(errs, fmt.Sprintf("interface %s: %v", ifName, err))
		return joinErrs(errs)
	}
	if b.Mtu != 0 {
		if err := netlink.LinkSetMTU(l, b.Mtu); err != nil {
			errs = append(errs, fmt.Sprintf("mtu %d: %v", b.Mtu, err))
		}
	}
	if b.Mac != "" {
		if hw, err := net.ParseMAC(b.Mac); err != nil {
			errs = append(errs, fmt.Sprintf("mac %s: %v", b.Mac, err))
		} else if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
			errs = append(errs, fmt.Sprintf("mac %s: %v", b.Mac, err))
		}
	}
	if b.Promisc != nil {
		f := netlink.SetPromiscOff
		if *b.Promisc {
			f = netlink.SetPromiscOn
		}
		if err := f(l); err != nil {
			errs = append(errs, fmt.Sprintf("promisc %v: %v", *b.Promisc, err))
		}
	}
	if b.Allmulti != nil {
		if err := setAllmulti(l, *b.Allmulti); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if b.TxQLen != nil {
		if err := netlink.LinkSetTxQLen(l, *b.TxQLen); err != nil {
			errs = append(errs, fmt.Sprintf("txQLen %d: %v", *b.TxQLen, err))
		}
	}
	return joinErrs(errs)
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("restoring: %s", strings.Join(errs, "; "))
}

// checkLink compares the link with c, as the reference's CHECK does
// (promisc false means it must be off).
func checkLink(l netlink.Link, c *NetConf) error {
	a := l.Attrs()
	if c.mac != nil && a.HardwareAddr.String() != c.mac.String() {
		return fmt.Errorf("mac is %s, configured %s", a.HardwareAddr, c.mac)
	}
	if got := a.Promisc != 0; got != c.Promisc {
		return fmt.Errorf("promisc is %v, configured %v", got, c.Promisc)
	}
	if c.Mtu != 0 && a.MTU != c.Mtu {
		return fmt.Errorf("mtu is %d, configured %d", a.MTU, c.Mtu)
	}
	if c.Allmulti != nil {
		if got := a.RawFlags&unix.IFF_ALLMULTI != 0; got != *c.Allmulti {
			return fmt.Errorf("allmulti is %v, configured %v", got, *c.Allmulti)
		}
	}
	if c.TxQLen != nil && a.TxQLen != *c.TxQLen {
		return fmt.Errorf("txQLen is %d, configured %d", a.TxQLen, *c.TxQLen)
	}
	return nil
}
