//go:build !linux

package capture

import (
	"fmt"
	"runtime"
)

// OpenLive is not available: live capture uses Linux's AF_PACKET.
func OpenLive(cfg LiveConfig) (Source, error) {
	return nil, fmt.Errorf("live capture needs Linux AF_PACKET, not available on %s (read a file instead)", runtime.GOOS)
}

// LiveLinkType returns LinkTypeEthernet: there is no live capture on this
// platform.
func LiveLinkType(iface string) uint16 { return LinkTypeEthernet }

// DefaultInterface is not available: it reads Linux's routing tables.
func DefaultInterface() (string, error) {
	return "", fmt.Errorf("detecting the capture interface needs Linux, not %s", runtime.GOOS)
}
