//go:build !linux

package supervisor

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// sysProcAttr returns how c is started: in its own process group, with its
// credentials. There is no parent-death signal here: children may outlive
// a supervisor killed with SIGKILL.
func sysProcAttr(c Child) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: c.Cred}
}

// HasCap reports false: capabilities are a Linux feature.
func HasCap(c uintptr) bool { return false }

// CanSwitchUser reports whether the process runs as root.
func CanSwitchUser() bool { return os.Geteuid() == 0 }

func checkPrivileges(c Child) error {
	if len(c.AmbientCaps) > 0 {
		return fmt.Errorf("ambient capabilities are not supported on %s", runtime.GOOS)
	}
	if c.Cred != nil && !CanSwitchUser() {
		return fmt.Errorf("run as uid %d gid %d: needs root", c.Cred.Uid, c.Cred.Gid)
	}
	return nil
}

func capNames(caps []uintptr) []string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = fmt.Sprintf("CAP_%d", c)
	}
	return names
}
