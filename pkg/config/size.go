// Package config holds what the three commands share in reading their
// settings. It is a leaf: the standard library only. (The full typed
// configuration, YAML and environment precedence, arrives with the
// all-in-one command.)
package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a byte size: a number of bytes, or a number with one of
// the suffixes KiB, MiB, GiB (or K, M, G, also powers of 1024).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 2MiB)", s)
	}
	return n * mult, nil
}
