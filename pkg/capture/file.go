package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Magic numbers of the file formats, as the first four bytes read
// big-endian.
const (
	magicPcapMicro   = 0xa1b2c3d4 // pcap, microsecond timestamps, big-endian writer
	magicPcapMicroLE = 0xd4c3b2a1 // the same written little-endian
	magicPcapNano    = 0xa1b23c4d // pcap, nanosecond timestamps, big-endian writer
	magicPcapNanoLE  = 0x4d3cb2a1 // the same written little-endian
	magicPcapng      = 0x0a0d0d0a // pcapng Section Header Block type (a palindrome)
	magicGzip        = 0x1f8b     // first two bytes of a gzip stream
)

// OpenFile opens a capture file: classic pcap (either byte order,
// microsecond or nanosecond timestamps) or pcapng, possibly
// gzip-compressed, told apart by their magic numbers, not by the file
// name. The path "-" reads standard input (which Close leaves open).
//
// A file that is not a capture gives an error wrapping ErrNotCapture:
// "open capture FILE: not a pcap or pcapng file (magic 0x...)".
//
// The Source returns io.EOF after the last record. A damaged record (a
// length beyond any real snapshot length, a file cut short inside a record)
// ends the reading with an error that is not io.EOF, as tshark and tcpdump
// stop there too; the frames returned before it are good. A file cut
// inside a record wraps io.ErrUnexpectedEOF. Info.VLAN is always -1 for
// files: a tag is still in the frame's bytes.
func OpenFile(path string) (Source, error) {
	if path == "-" {
		src, err := OpenReader(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("open capture from standard input: %w", err)
		}
		return src, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	src, err := openReader(f, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open capture %s: %w", path, err)
	}
	return src, nil
}

// OpenReader reads a capture file from r, like OpenFile. Close does not
// close r.
func OpenReader(r io.Reader) (Source, error) {
	return openReader(r, nil)
}

// openReader detects the format of r and returns its Source; Close closes
// c when it is not nil.
func openReader(r io.Reader, c io.Closer) (Source, error) {
	var magic [4]byte
	n, err := io.ReadFull(r, magic[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("read file header: %w", err)
	}
	if n >= 2 && binary.BigEndian.Uint16(magic[:2]) == magicGzip {
		zr, err := gzip.NewReader(io.MultiReader(bytes.NewReader(magic[:n]), r))
		if err != nil {
			return nil, fmt.Errorf("read gzip header: %w", err)
		}
		src, err := openUncompressed(zr, c)
		if err != nil {
			return nil, fmt.Errorf("gzip-compressed file: %w", err)
		}
		return src, nil
	}
	return openUncompressed(io.MultiReader(bytes.NewReader(magic[:n]), r), c)
}

// openUncompressed is openReader after gzip has been ruled out or removed.
func openUncompressed(r io.Reader, c io.Closer) (Source, error) {
	var magic [4]byte
	n, err := io.ReadFull(r, magic[:])
	switch {
	case n == 0 && (err == io.EOF || err == nil):
		return nil, fmt.Errorf("%w (empty file)", ErrNotCapture)
	case err == io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("%w (only %d bytes)", ErrNotCapture, n)
	case err != nil:
		return nil, fmt.Errorf("read file header: %w", err)
	}
	m := binary.BigEndian.Uint32(magic[:])
	switch m {
	case magicPcapMicro, magicPcapMicroLE, magicPcapNano, magicPcapNanoLE:
		return newPcapReader(r, magic, c)
	case magicPcapng:
		return newPcapngReader(r, magic, c)
	}
	return nil, fmt.Errorf("%w (magic 0x%08x)", ErrNotCapture, m)
}

// errDamaged marks records no capture tool could have written.
var errDamaged = errors.New("damaged or corrupt file")

// fileBufferSize is the read buffer of both file readers: large enough for
// any record up to maxSnaplen, so it never grows for ordinary files.
const fileBufferSize = 256 << 10

// readBuffer is the buffered input of the file readers: frames are handed
// out as slices of buf, so reading costs one read(2) per buffer and no
// allocation or copy per packet.
type readBuffer struct {
	r        io.Reader
	buf      []byte
	off, end int // unread bytes are buf[off:end]
}

// newReadBuffer returns a buffer over r holding prefix, the bytes already
// read from r to detect the format.
func newReadBuffer(r io.Reader, prefix []byte) readBuffer {
	b := readBuffer{r: r, buf: make([]byte, fileBufferSize)}
	b.end = copy(b.buf, prefix)
	return b
}

// fill reads until at least n unread bytes are buffered. It returns io.EOF
// when the input ended with no unread byte at all, io.ErrUnexpectedEOF when
// it ended with fewer than n. The buffer grows only when n exceeds it and
// only by doubling once it is full of real input, so a bogus length in a
// short file cannot make it allocate more than twice the file's size.
func (b *readBuffer) fill(n int) error {
	if b.end-b.off >= n {
		return nil
	}
	if b.off > 0 && b.off+n > len(b.buf) {
		// Move the unread bytes to the front.
		b.end = copy(b.buf, b.buf[b.off:b.end])
		b.off = 0
	}
	for b.end-b.off < n {
		if b.end == len(b.buf) {
			// Here off is 0 and the buffer is full of input, yet too
			// small for n bytes.
			size := min(2*len(b.buf), n)
			nb := make([]byte, size)
			copy(nb, b.buf[:b.end])
			b.buf = nb
		}
		m, err := b.r.Read(b.buf[b.end:])
		b.end += m
		if err != nil {
			if b.end-b.off >= n {
				return nil // the next Read reports the error again
			}
			if err == io.EOF {
				if b.end == b.off {
					return io.EOF
				}
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// discard skips n bytes of input without growing the buffer, however large
// n is. It returns io.ErrUnexpectedEOF when the input ends first.
func (b *readBuffer) discard(n int) error {
	for {
		k := min(n, b.end-b.off)
		b.off += k
		n -= k
		if n == 0 {
			return nil
		}
		if err := b.fill(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
}
