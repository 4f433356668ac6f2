package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Classic pcap as libpcap writes it on a little-endian machine: microsecond
// timestamps, LINKTYPE_ETHERNET (draft-ietf-opsawg-pcap, sections 4 and 5).
const (
	pcapMagicMicro   = 0xa1b2c3d4
	linkTypeEthernet = 1
	maxSnaplen       = 262144
)

// pcapWriter writes frames to a classic pcap file, truncating each to the
// writer's snapshot length while recording its full length on the wire.
type pcapWriter struct {
	w       *bufio.Writer
	snaplen int
	hdr     [16]byte
}

// newPcapWriter writes the file header to w and returns a writer of
// records. A snaplen of 0 keeps whole frames.
func newPcapWriter(w io.Writer, snaplen int) (*pcapWriter, error) {
	if snaplen <= 0 || snaplen > maxSnaplen {
		snaplen = maxSnaplen
	}
	p := &pcapWriter{w: bufio.NewWriterSize(w, 1<<20), snaplen: snaplen}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], pcapMagicMicro)
	binary.LittleEndian.PutUint16(h[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(snaplen))
	binary.LittleEndian.PutUint32(h[20:], linkTypeEthernet)
	if _, err := p.w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("write pcap file header: %w", err)
	}
	return p, nil
}

// write appends one record: frame is the whole frame, tsMicros its capture
// time in Unix microseconds.
func (p *pcapWriter) write(tsMicros int64, frame []byte) error {
	capLen := min(len(frame), p.snaplen)
	binary.LittleEndian.PutUint32(p.hdr[0:], uint32(tsMicros/1e6))
	binary.LittleEndian.PutUint32(p.hdr[4:], uint32(tsMicros%1e6))
	binary.LittleEndian.PutUint32(p.hdr[8:], uint32(capLen))
	binary.LittleEndian.PutUint32(p.hdr[12:], uint32(len(frame)))
	if _, err := p.w.Write(p.hdr[:]); err != nil {
		return err
	}
	_, err := p.w.Write(frame[:capLen])
	return err
}

func (p *pcapWriter) flush() error { return p.w.Flush() }
