package testenv

import "slices"

// SameHistory compares two Zeek connection histories of one flow seen by
// two captures, allowing the letters to come in another order. Two packet
// sockets on one interface can see two packets that cross at the same
// moment in opposite orders: the kernel hands an outgoing packet to every
// socket from the sending CPU and an incoming one from the receiving CPU,
// and the two walks interleave. A server's FIN and a client's simultaneous
// FIN then read "…Ff" in one capture and "…fF" in the other, with
// identical counters.
func SameHistory(a, b string) bool {
	if a == b {
		return true
	}
	x, y := []byte(a), []byte(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
