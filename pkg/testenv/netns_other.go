//go:build !linux

package testenv

import (
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"testing"
)

// Pair is two network namespaces joined by a veth pair (Linux only).
type Pair struct {
	A, B           string
	DevA, DevB     string
	A4, B4, A6, B6 netip.Addr
}

// NetnsPair skips the test: network namespaces exist on Linux only.
func NetnsPair(t testing.TB) *Pair {
	t.Helper()
	t.Skipf("network namespaces need Linux, not %s", runtime.GOOS)
	return nil
}

// Command is not available outside Linux.
func (p *Pair) Command(ns string, args ...string) *exec.Cmd { return nil }

// Exec is not available outside Linux.
func (p *Pair) Exec(t testing.TB, ns string, args ...string) string { return "" }

// Start is not available outside Linux.
func (p *Pair) Start(t testing.TB, ns string, args ...string) *exec.Cmd { return nil }

// StartCmd is not available outside Linux.
func (p *Pair) StartCmd(t testing.TB, cmd *exec.Cmd) {}

// InNetns returns an error naming the platform: network namespaces exist
// on Linux only.
func InNetns(name string, fn func() error) error {
	return fmt.Errorf("network namespaces are not supported on %s", runtime.GOOS)
}
