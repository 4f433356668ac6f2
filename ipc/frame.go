package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readChunk is how much ReadFrame grows its buffer at a time, so that a
// length prefix costs memory only as its bytes actually arrive.
const readChunk = 64 << 10

// ReadFrame reads one frame from r and returns its body, which it reads
// into buf when buf is large enough (buf may be nil). A length prefix over
// max is an error wrapping ErrFrameTooLarge, returned before reading the
// body. The buffer grows with the bytes received, not with the prefix, so a
// peer that announces a large frame and stalls costs about twice what it
// sent plus 64 KiB, not what it announced. A clean end of stream before the prefix is
// io.EOF; an end inside a frame is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > max {
		return nil, fmt.Errorf("length prefix %d, limit %d: %w", n, max, ErrFrameTooLarge)
	}
	if n <= cap(buf) {
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, unexpected(err)
		}
		return buf, nil
	}
	buf = buf[:0]
	for len(buf) < n {
		m := min(n-len(buf), readChunk)
		if cap(buf)-len(buf) < m {
			buf = append(buf[:len(buf):len(buf)], make([]byte, m)...)[:len(buf)]
		}
		chunk := buf[len(buf) : len(buf)+m]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, unexpected(err)
		}
		buf = buf[:len(buf)+m]
	}
	return buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
