//go:build !linux

package privdrop

import (
	"fmt"
	"runtime"
)

// Drop is not implemented on this platform.
func Drop(user string) error {
	return fmt.Errorf("dropping privileges is not implemented on %s", runtime.GOOS)
}
