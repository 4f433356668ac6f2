//go:build !linux

package ipc

import (
	"fmt"
	"net"
	"runtime"
)

// peerCred is not implemented outside Linux: the server then rejects every
// peer, because it cannot check its uid.
func peerCred(*net.UnixConn) (uid, gid, pid int, err error) {
	return 0, 0, 0, fmt.Errorf("peer credentials (SO_PEERCRED) not supported on %s", runtime.GOOS)
}
