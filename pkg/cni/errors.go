// Package cni holds what every berth plugin shares about the CNI contract:
// error constructors with the spec's codes, config decoding with errors that
// name the field, prevResult handling, result printing and the supported
// versions.
package cni

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/containernetworking/cni/pkg/types"
)

// Error codes from the CNI spec ("Well-known error codes") and berth's own
// range (100+).
const (
	CodeIncompatibleVersion uint = types.ErrIncompatibleCNIVersion // 1
	CodeUnsupportedField    uint = types.ErrUnsupportedField       // 2
	CodeUnknownContainer    uint = types.ErrUnknownContainer       // 3
	CodeInvalidEnv          uint = types.ErrInvalidEnvironmentVariables
	CodeIOFailure           uint = types.ErrIOFailure            // 5
	CodeDecode              uint = types.ErrDecodingFailure      // 6
	CodeInvalidConfig       uint = types.ErrInvalidNetworkConfig // 7
	CodeInvalidNetNS        uint = types.ErrInvalidNetNS         // 8
	CodeTryAgain            uint = types.ErrTryAgainLater        // 11
	CodePluginNotAvailable  uint = 50
	CodeLimitedConnectivity uint = 51

	// CodeAddressExhausted: an IPAM range has no free address left.
	CodeAddressExhausted uint = 100
	// CodeConflict: what was asked is already taken (an IP, a host port, a name).
	CodeConflict uint = 101
	// CodeKernel: the kernel refused a change (netlink, nftables, sysctl).
	CodeKernel uint = 102
	// CodeDelegate: a delegated plugin (IPAM) failed; its own error is in the message.
	CodeDelegate uint = 103
)

// Errorf returns a CNI error with the given code. The message should start
// with the plugin's name and say what to fix:
//
//	cni.Errorf(cni.CodeInvalidConfig, "bridge: mtu 70000: must be between 68 and 65535")
func Errorf(code uint, format string, a ...any) *types.Error {
	return types.NewError(code, clip(fmt.Sprintf(format, a...)), "")
}

// maxMsg bounds an error message: one that quotes a hostile value (a
// 10 MB string in a config) must not become a 10 MB answer.
const maxMsg = 1024

func clip(msg string) string {
	if len(msg) <= maxMsg {
		return msg
	}
	n := maxMsg
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + fmt.Sprintf("… (%d bytes cut)", len(msg)-n)
}

// InvalidField is the code-7 error for a field with a bad value, worded
// "<plugin>: <field> <value>: <why>".
func InvalidField(plugin, field string, value any, why string) *types.Error {
	return Errorf(CodeInvalidConfig, "%s: %s %v: %s", plugin, field, value, why)
}

// Wrap turns err into a CNI error with code unless it already is one, in
// which case the original code is kept and the context is prefixed to its
// message. Use it at the plugin boundary so errors from pkg/ keep their codes.
func Wrap(code uint, err error, format string, a ...any) *types.Error {
	if err == nil {
		return nil
	}
	prefix := fmt.Sprintf(format, a...)
	var ce *types.Error
	if errors.As(err, &ce) {
		return types.NewError(ce.Code, clip(prefix+": "+ce.Msg), clip(ce.Details))
	}
	return types.NewError(code, clip(prefix+": "+err.Error()), "")
}
