package dnsplugin

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/hostd"
	"github.com/berthnet/berth/pkg/cni"
)

// EtcdBinary is the dnsname build with the etcd registry (cmd/dnsname-etcd),
// installed beside dnsname.
const EtcdBinary = "dnsname-etcd"

// execRegistry replaces this process with EtcdBinary, which runs the same
// command (CNI_* stay in the environment) on the same config, handed over
// on stdin through a memory file: the runtime's stdin has been read. The
// runtime sees one plugin process, its output and exit status. It returns
// only on failure.
func execRegistry(stdin []byte) error {
	bin, err := hostd.Find(EtcdBinary)
	if err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: registry.backend etcd: %v", plugin, err)
	}
	fd, err := unix.MemfdCreate("dnsname-stdin", unix.MFD_CLOEXEC)
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: handing the config to %s: %v", plugin, EtcdBinary, err)
	}
	f := os.NewFile(uintptr(fd), "dnsname-stdin")
	defer f.Close()
	if _, err := f.Write(stdin); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: handing the config to %s: %v", plugin, EtcdBinary, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: handing the config to %s: %v", plugin, EtcdBinary, err)
	}
	// Dup3 without O_CLOEXEC: fd 0 survives the exec, the memfd does not.
	if err := unix.Dup3(fd, 0, 0); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: handing the config to %s: %v", plugin, EtcdBinary, err)
	}
	err = unix.Exec(bin, []string{bin}, os.Environ())
	return cni.Errorf(cni.CodePluginNotAvailable, "%s: registry.backend etcd: %s", plugin, fmt.Sprintf("exec %s: %v", bin, err))
}
