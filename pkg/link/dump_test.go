package link_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/link"
)

// Dumps of links and addresses while other processes create and delete
// veths (many ADDs at once) are interrupted (NLM_F_DUMP_INTR); berth's
// dump wrappers must still answer, never surface the interruption. The
// namespace holds enough links that one dump spans several netlink
// messages, which is when the kernel can flag it.
func TestDumpsSurviveConcurrentChanges(t *testing.T) {
	nstest.RequireRoot(t)
	n := nstest.NewNS(t, "dump")
	h, err := link.OpenNS(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i := 0; i < 150; i++ {
		if err := h.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("s%d", i)}, PeerName: fmt.Sprintf("t%d", i)}); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			churn, err := link.OpenNS(n.Path)
			if err != nil {
				t.Error(err)
				return
			}
			defer churn.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("c%d-%d", w, i%4)
				_ = churn.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"})
				_ = link.DelLink(churn.Handle, name)
			}
		}(w)
	}
	defer func() { close(stop); wg.Wait() }()

	rounds := 300
	if os.Getenv("BERTH_DUMP_ROUNDS") != "" {
		fmt.Sscan(os.Getenv("BERTH_DUMP_ROUNDS"), &rounds)
	}
	for i := 0; i < rounds; i++ {
		if _, err := link.LinkList(h.Handle); err != nil {
			t.Fatalf("round %d: LinkList: %v", i, err)
		}
		if _, err := link.AddrList(h.Handle, nil, netlink.FAMILY_ALL); err != nil {
			t.Fatalf("round %d: AddrList: %v", i, err)
		}
	}
}
