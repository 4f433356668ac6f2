//go:build !linux

package capture

import (
	"fmt"
	"runtime"
	"syscall"
)

func readable(syscall.Conn) (int, error) {
	return 0, fmt.Errorf("FIONREAD is not used on %s", runtime.GOOS)
}
