//go:build !linux

package codepages

import (
	"errors"
	"runtime"
)

func release() (Result, error) {
	return Result{}, errors.New("codepages: not supported on " + runtime.GOOS)
}
