package capture

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

func readable(f syscall.Conn) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		// pipe(7), unix(7), tty_ioctl(4): FIONREAD (TIOCINQ on
		// Linux) gives the unread bytes; ENOTTY for a device without it.
		n, ioctlErr = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	}); err != nil {
		return 0, err
	}
	if ioctlErr != nil {
		return 0, fmt.Errorf("FIONREAD: %w", ioctlErr)
	}
	return n, nil
}
