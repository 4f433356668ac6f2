//go:build !linux

package metrics

import (
	"fmt"
	"runtime"
)

// The process_* families read /proc; elsewhere they have no samples.

func errUnsupported() error {
	return fmt.Errorf("process metrics: not supported on %s", runtime.GOOS)
}

func readProcStat() (procStat, error)    { return procStat{}, errUnsupported() }
func processStartTime() (float64, error) { return 0, errUnsupported() }
func openFDs() (int, error)              { return 0, errUnsupported() }
func maxFDs() (uint64, error)            { return 0, errUnsupported() }
