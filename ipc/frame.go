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
// limit is an error wrapping ErrFrameTooLarge, returned before reading the
// body. The buffer grows with the bytes received, not with the prefix, so a
// peer that announces a large frame and stalls costs about twice what it
// sent plus 64 KiB, not what it announced. A clean end of stream before the prefix is
// io.EOF; an end inside a frame is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, limit int) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > limit {
		return nil, fmt.Errorf("length prefix %d, limit %d: %w", n, limit, ErrFrameTooLarge)
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
			// Double (up to n): the bytes that arrived so far are copied
			// O(1) times each, and a frame costs at most about twice its
			// size while it is read.
			grown := make([]byte, len(buf), min(max(2*cap(buf), len(buf)+m), n))
			copy(grown, buf)
			buf = grown
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
