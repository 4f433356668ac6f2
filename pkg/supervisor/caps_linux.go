package supervisor

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr returns how c is started: in its own process group (a
// terminal's signals reach the supervisor only, which stops the children in
// order), killed by the kernel when the thread that started it dies (see
// runOnce), with c's credentials and ambient capabilities. The standard
// library sets the parent-death signal after switching credentials, which
// would otherwise clear it (prctl(2)).
func sysProcAttr(c Child) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:     true,
		Pdeathsig:   syscall.SIGKILL,
		Credential:  c.Cred,
		AmbientCaps: c.AmbientCaps,
	}
}

// HasCap reports whether the process holds capability c (unix.CAP_*) in
// its effective set.
func HasCap(c uintptr) bool {
	eff, _, err := capSets()
	return err == nil && c <= unix.CAP_LAST_CAP && eff&(1<<c) != 0
}

// CanSwitchUser reports whether the process can start children as another
// user: it holds CAP_SETUID and CAP_SETGID in its effective set (as root
// normally does).
func CanSwitchUser() bool {
	return HasCap(unix.CAP_SETUID) && HasCap(unix.CAP_SETGID)
}

// capSets returns the calling thread's effective and permitted
// capabilities as bit sets (bit n is capability n).
func capSets() (eff, prm uint64, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, fmt.Errorf("capget: %w", err)
	}
	eff = uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	prm = uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	return eff, prm, nil
}

// checkPrivileges tells why c cannot be started with its credentials and
// capabilities, before anything is started, in place of the fork/exec
// error ("operation not permitted") the child would fail with.
func checkPrivileges(c Child) error {
	if c.Cred != nil && !CanSwitchUser() {
		return fmt.Errorf("run as uid %d gid %d: needs CAP_SETUID and CAP_SETGID (start as root, or run the child as the supervisor's own user)",
			c.Cred.Uid, c.Cred.Gid)
	}
	if len(c.AmbientCaps) == 0 {
		return nil
	}
	_, prm, err := capSets()
	if err != nil {
		return err
	}
	for _, cp := range c.AmbientCaps {
		if cp > unix.CAP_LAST_CAP {
			return fmt.Errorf("ambient capability %d: no such capability", cp)
		}
		if prm&(1<<cp) == 0 {
			return fmt.Errorf("ambient %s: the supervisor does not hold it to pass on (grant it to the container, e.g. --cap-add %s)",
				capName(cp), capName(cp)[len("CAP_"):])
		}
	}
	return nil
}

// capNames returns the names of caps, for logs.
func capNames(caps []uintptr) []string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = capName(c)
	}
	return names
}

func capName(c uintptr) string {
	switch c {
	case unix.CAP_NET_RAW:
		return "CAP_NET_RAW"
	case unix.CAP_NET_ADMIN:
		return "CAP_NET_ADMIN"
	case unix.CAP_NET_BIND_SERVICE:
		return "CAP_NET_BIND_SERVICE"
	case unix.CAP_SETUID:
		return "CAP_SETUID"
	case unix.CAP_SETGID:
		return "CAP_SETGID"
	case unix.CAP_SYS_ADMIN:
		return "CAP_SYS_ADMIN"
	case unix.CAP_BPF:
		return "CAP_BPF"
	case unix.CAP_PERFMON:
		return "CAP_PERFMON"
	}
	return fmt.Sprintf("CAP_%d", c)
}
