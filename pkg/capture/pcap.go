package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Classic pcap (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html):
// a 24-byte file header, then records of a 16-byte header (seconds,
// fraction, captured length, original length) and the captured bytes.
const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16

	// maxSnaplen is libpcap's MAXIMUM_SNAPLEN and Wireshark's
	// WTAP_MAX_PACKET_SIZE_STANDARD: a longer record is damage, not data
	// ("File has N-byte packet, bigger than maximum of 262144").
	maxSnaplen = 262144
)

// maxCaptureLength is the longest record accepted for a link type: libpcap's
// max_snaplen_for_dlt (pcap-common.c), which allows more than maxSnaplen
// only for D-Bus, USBPcap and EBHSCR. The file header's snapshot length is
// not used: tshark and tcpdump read records longer than it (dpkt and others
// write them), and a damaged header could otherwise allow gigabytes.
func maxCaptureLength(linkType uint16) int {
	switch linkType {
	case 231: // LINKTYPE_DBUS
		return 128 << 20
	case 249: // LINKTYPE_USBPCAP
		return 1 << 20
	case 279: // LINKTYPE_EBHSCR
		return 8 << 20
	}
	return maxSnaplen
}

// pcapReader reads classic pcap. It returns each frame as a slice of its own
// read buffer, so reading costs one read(2) per buffer and no allocation or
// copy per packet. It replaced pcapgo.Reader, which copies every frame and
// rejects records whose captured length exceeds the original length (tshark
// and tcpdump read those); see BenchmarkFileRead.
type pcapReader struct {
	readBuffer
	closer    io.Closer
	bigEndian bool
	fracNanos int64 // nanoseconds per unit of the fraction field: 1000 or 1
	linkType  uint16
	maxCapLen int
	records   int // records returned so far
	err       error
}

// newPcapReader reads the rest of the file header; magic holds its first 4
// bytes, already read from r.
func newPcapReader(r io.Reader, magic [4]byte, c io.Closer) (*pcapReader, error) {
	p := &pcapReader{readBuffer: newReadBuffer(r, magic[:]), closer: c}
	if err := p.fill(pcapFileHeaderLen); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read pcap file header: %w", err)
	}
	h := p.buf[:pcapFileHeaderLen]
	switch binary.BigEndian.Uint32(h) {
	case magicPcapMicro:
		p.bigEndian, p.fracNanos = true, 1000
	case magicPcapMicroLE:
		p.bigEndian, p.fracNanos = false, 1000
	case magicPcapNano:
		p.bigEndian, p.fracNanos = true, 1
	case magicPcapNanoLE:
		p.bigEndian, p.fracNanos = false, 1
	}
	// Version 2.4 is the only one written since 1998; libpcap and Wireshark
	// accept any 2.x (2.2 and 2.3 differ only in old bugs), so do we.
	if major := p.u16(h[4:]); major != 2 {
		return nil, fmt.Errorf("unsupported pcap version %d.%d", major, p.u16(h[6:]))
	}
	// The upper bits of the link-type field carry the FCS length and
	// reserved flags (pcap draft, "LinkType and additional information");
	// the link type is the low 16 bits.
	p.linkType = uint16(p.u32(h[20:]))
	p.maxCapLen = maxCaptureLength(p.linkType)
	p.off = pcapFileHeaderLen
	return p, nil
}

func (p *pcapReader) u16(b []byte) uint16 {
	if p.bigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *pcapReader) u32(b []byte) uint32 {
	if p.bigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// ReadPacket returns the next record's bytes, which stay valid until the
// next call.
func (p *pcapReader) ReadPacket() ([]byte, Info, error) {
	if p.err != nil {
		return nil, Info{}, p.err
	}
	if err := p.fill(pcapRecordHeaderLen); err != nil {
		return p.fail(err, "file ends inside the record header")
	}
	h := p.buf[p.off : p.off+pcapRecordHeaderLen]
	sec, frac := p.u32(h[0:]), p.u32(h[4:])
	capLen, origLen := p.u32(h[8:]), p.u32(h[12:])
	if uint64(capLen) > uint64(p.maxCapLen) {
		p.err = fmt.Errorf("pcap record %d: %w: captured length %d is more than the maximum of %d",
			p.records+1, errDamaged, capLen, p.maxCapLen)
		return nil, Info{}, p.err
	}
	need := pcapRecordHeaderLen + int(capLen)
	if err := p.fill(need); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return p.fail(err, "file ends inside the packet data")
	}
	start := p.off + pcapRecordHeaderLen
	data := p.buf[start : start+int(capLen) : start+int(capLen)]
	p.off += need
	p.records++
	// A fraction beyond one second (fuzzed files) carries into the
	// seconds, as time.Unix normalizes it.
	return data, Info{
		Timestamp:     time.Unix(int64(sec), int64(frac)*p.fracNanos).UTC(),
		Length:        int(origLen),
		CaptureLength: int(capLen),
		LinkType:      p.linkType,
		VLAN:          -1,
	}, nil
}

// fail records a read error: io.EOF stays a clean end, anything else is
// reported with the record number.
func (p *pcapReader) fail(err error, what string) ([]byte, Info, error) {
	if err == io.EOF {
		p.err = io.EOF
	} else {
		p.err = fmt.Errorf("pcap record %d: %s: %w", p.records+1, what, err)
	}
	return nil, Info{}, p.err
}

// Stats returns zero: a file has no kernel counters.
func (p *pcapReader) Stats() (Stats, error) { return Stats{}, nil }

// Close closes the file OpenFile opened; later reads return ErrClosed.
func (p *pcapReader) Close() error {
	p.err = ErrClosed
	p.buf = nil
	if p.closer == nil {
		return nil
	}
	c := p.closer
	p.closer = nil
	return c.Close()
}
