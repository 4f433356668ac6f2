package capture

import "syscall"

// Readable returns the number of bytes that a read of f returns at once,
// without waiting for its writer: what a pipe, a FIFO, a socket or a
// terminal holds (FIONREAD). A reader of a stream calls it to learn
// whether its next read may block. f is usually an *os.File; a device
// without FIONREAD, and other platforms than Linux, give an error.
func Readable(f syscall.Conn) (int, error) {
	return readable(f)
}
