package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html):
// a sequence of blocks, each a type, a total length, a body and the total
// length again. A Section Header Block (SHB) sets the byte order of the
// blocks up to the next SHB, and a section's Interface Description Blocks
// (IDB) number its interfaces from 0. Packets come in Enhanced Packet
// Blocks (EPB), Simple Packet Blocks (SPB) and the obsolete Packet Blocks
// (PB).
const (
	blockSHB = 0x0a0d0d0a
	blockIDB = 1
	blockPB  = 2
	blockSPB = 3
	blockEPB = 6

	byteOrderMagic = 0x1a2b3c4d

	blockHeaderLen = 8  // type and total length
	minBlockLen    = 12 // header and trailing total length
	minSHBLen      = minBlockLen + 16
	minIDBLen      = minBlockLen + 8
	minSPBLen      = minBlockLen + 4
	minEPBLen      = minBlockLen + 20 // also the obsolete PB's

	// maxBlockLen is libpcap's INITIAL_MAX_BLOCKSIZE: a longer block is
	// damage. Blocks this reader skips are read through the buffer
	// without growing it; only packet blocks are held whole.
	maxBlockLen = 16 << 20

	// maxPacketOptions bounds the options of a packet block, which are
	// held in the buffer with the packet: libpcap's
	// MAX_BLOCKSIZE_FOR_SNAPLEN allows the same 128 KiB.
	maxPacketOptions = 128 << 10

	// maxInterfaces bounds a section's interfaces (tens are common;
	// 126 is the most in the corpus), so that a file of nothing but
	// IDBs cannot grow the table without limit.
	maxInterfaces = 1 << 16

	optEndOfOpt = 0
	optTsresol  = 9  // if_tsresol: 1 byte
	optTsoffset = 14 // if_tsoffset: 8 bytes, signed seconds
)

// pcapngReader reads pcapng. Like pcapReader it returns each packet as a
// slice of its own read buffer: no allocation or copy per packet. It
// replaced pcapgo.NgReader, which copies every packet and links
// gopacket/layers, whose tables cost the capturer about 1 MiB of RSS and
// 2.3 MB of binary; see BenchmarkFileRead and TestPcapngReader_MatchesPcapgo.
//
// Interfaces in one file may have different link types (a merged
// capture): each packet reports the link type of the interface it came on.
type pcapngReader struct {
	readBuffer
	closer    io.Closer
	bigEndian bool
	ifaces    []ngInterface // the current section's interfaces, by ID
	pos       int64         // file offset of the next block
	packets   int           // packets returned so far
	err       error
}

// ngInterface is what a packet needs from its interface's IDB.
type ngInterface struct {
	linkType  uint16
	snaplen   uint32 // 0: no limit
	maxCapLen int
	// unitsPerSec is the if_tsresol: 10^k (k ≤ 19) or 2^k (k ≤ 63) time
	// stamp units per second; nanosPerUnit is 1e9/unitsPerSec when that
	// is a whole number, else 0.
	unitsPerSec  uint64
	nanosPerUnit uint64
	offset       int64 // if_tsoffset, seconds
}

// newPcapngReader reads the first Section Header Block; magic holds its
// first 4 bytes, already read from r.
func newPcapngReader(r io.Reader, magic [4]byte, c io.Closer) (*pcapngReader, error) {
	p := &pcapngReader{readBuffer: newReadBuffer(r, magic[:]), closer: c}
	if err := p.fill(minBlockLen); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read pcapng section header: %w", err)
	}
	if err := p.readBlock(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pcapngReader) u16(b []byte) uint16 {
	if p.bigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *pcapngReader) u32(b []byte) uint32 {
	if p.bigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// ReadPacket returns the next packet's bytes, which stay valid until the
// next call. Blocks that are not packets (name resolution, statistics,
// decryption secrets, custom and unknown blocks) are skipped.
func (p *pcapngReader) ReadPacket() ([]byte, Info, error) {
	for p.err == nil {
		if err := p.fill(blockHeaderLen); err != nil {
			if err == io.EOF {
				p.err = io.EOF // a clean end, between blocks
			} else {
				p.err = fmt.Errorf("pcapng block at offset %d (after packet %d): file ends inside the block header: %w", p.pos, p.packets, err)
			}
			break
		}
		switch typ := p.u32(p.buf[p.off:]); typ {
		case blockEPB, blockPB, blockSPB:
			data, info, err := p.readPacket(typ)
			if err != nil {
				p.err = p.blockError(typ, err)
				break
			}
			p.packets++
			return data, info, nil
		default:
			if err := p.readBlock(); err != nil {
				p.err = err
			}
		}
	}
	return nil, Info{}, p.err
}

// blockLength checks the total length of the block at buf[off:], whose
// header is buffered, and returns it.
func (p *pcapngReader) blockLength(least int) (int, error) {
	n := p.u32(p.buf[p.off+4:])
	switch {
	case n < uint32(least):
		return 0, fmt.Errorf("%w: block length %d is less than the minimum of %d", errDamaged, n, least)
	case n%4 != 0:
		// libpcap rejects it too ("not a multiple of 4").
		return 0, fmt.Errorf("%w: block length %d is not a multiple of 4", errDamaged, n)
	case n > maxBlockLen:
		return 0, fmt.Errorf("%w: block length %d is more than the maximum of %d", errDamaged, n, maxBlockLen)
	}
	return int(n), nil
}

// readBlock reads the block at buf[off:] (its header is buffered) that is
// not a packet: a Section Header Block, an Interface Description Block, or
// a block to skip.
func (p *pcapngReader) readBlock() error {
	typ := p.u32(p.buf[p.off:])
	var err error
	switch typ {
	case blockSHB:
		err = p.readSHB()
	case blockIDB:
		err = p.readIDB()
	default:
		var n int
		if n, err = p.blockLength(minBlockLen); err == nil {
			err = p.skipBlock(n, n-4)
		}
	}
	if err != nil {
		return p.blockError(typ, err)
	}
	return nil
}

// readSHB reads a Section Header Block, which starts a section: the byte
// order may change, and the interfaces of the previous section are gone.
func (p *pcapngReader) readSHB() error {
	// The byte-order magic follows the header: until it is read, the
	// block's length cannot be.
	if err := p.fill(minBlockLen); err != nil {
		return fmt.Errorf("file ends inside the block header: %w", unexpected(err))
	}
	switch magic := p.buf[p.off+8 : p.off+12]; {
	case binary.BigEndian.Uint32(magic) == byteOrderMagic:
		p.bigEndian = true
	case binary.LittleEndian.Uint32(magic) == byteOrderMagic:
		p.bigEndian = false
	default:
		return fmt.Errorf("%w: unknown byte-order magic 0x%08x", errDamaged, binary.BigEndian.Uint32(magic))
	}
	n, err := p.blockLength(minSHBLen)
	if err != nil {
		return err
	}
	if err := p.fill(16); err != nil {
		return fmt.Errorf("file ends inside the block: %w", unexpected(err))
	}
	// Versions 1.0 and 1.2 are the same format (1.2 was written by some
	// tools that added block types); libpcap and Wireshark read both. Any
	// other version is an error there too, rather than a section skipped.
	major, minor := p.u16(p.buf[p.off+12:]), p.u16(p.buf[p.off+14:])
	if major != 1 || minor != 0 && minor != 2 {
		return fmt.Errorf("unsupported pcapng version %d.%d", major, minor)
	}
	p.ifaces = p.ifaces[:0]
	// The section length (often -1: unknown) and the options are not
	// needed.
	return p.skipBlock(n, n-4)
}

// readIDB reads an Interface Description Block, which adds an interface to
// the section. Its options are read one at a time, through the buffer.
func (p *pcapngReader) readIDB() error {
	n, err := p.blockLength(minIDBLen)
	if err != nil {
		return err
	}
	if len(p.ifaces) == maxInterfaces {
		return fmt.Errorf("%w: more than %d interfaces in a section", errDamaged, maxInterfaces)
	}
	if err := p.fill(16); err != nil {
		return fmt.Errorf("file ends inside the block: %w", unexpected(err))
	}
	b := p.buf[p.off:]
	lt := p.u16(b[8:]) // then 16 reserved bits
	ifc := ngInterface{
		linkType:  lt,
		snaplen:   p.u32(b[12:]),
		maxCapLen: maxCaptureLength(lt),
	}
	tsresol := uint8(6) // the default: microseconds
	p.off += 16
	rest := n - 16 - 4 // option bytes, before the trailing length
	for rest > 0 {
		// rest is a multiple of 4, as n is: an option header fits.
		if err := p.fill(4); err != nil {
			return fmt.Errorf("file ends inside the options: %w", unexpected(err))
		}
		code, length := p.u16(p.buf[p.off:]), int(p.u16(p.buf[p.off+2:]))
		p.off += 4
		rest -= 4
		if code == optEndOfOpt {
			break
		}
		padded := (length + 3) &^ 3
		if padded > rest {
			return fmt.Errorf("%w: option %d of %d bytes overruns the block", errDamaged, code, length)
		}
		// An option of the wrong length is ignored, as Wireshark does.
		switch {
		case code == optTsresol && length == 1:
			if err := p.fill(1); err != nil {
				return fmt.Errorf("file ends inside the options: %w", unexpected(err))
			}
			tsresol = p.buf[p.off]
		case code == optTsoffset && length == 8:
			if err := p.fill(8); err != nil {
				return fmt.Errorf("file ends inside the options: %w", unexpected(err))
			}
			if p.bigEndian {
				ifc.offset = int64(binary.BigEndian.Uint64(p.buf[p.off:]))
			} else {
				ifc.offset = int64(binary.LittleEndian.Uint64(p.buf[p.off:]))
			}
		}
		if err := p.discard(padded); err != nil {
			return fmt.Errorf("file ends inside the options: %w", err)
		}
		rest -= padded
	}
	if err := ifc.setResolution(tsresol); err != nil {
		return err
	}
	if err := p.skipBlock(n, rest); err != nil {
		return err
	}
	p.ifaces = append(p.ifaces, ifc)
	return nil
}

// setResolution sets the time stamp units from an if_tsresol value: the
// negative power of 10 it holds, or of 2 when its top bit is set. The
// limits are libpcap's and Wireshark's: 10^19 and 2^63 are the most units
// per second that fit in 64 bits.
func (ifc *ngInterface) setResolution(tsresol uint8) error {
	exp := uint(tsresol & 0x7f)
	if tsresol&0x80 != 0 {
		if exp > 63 {
			return fmt.Errorf("%w: time stamp resolution 2^-%d is beyond 2^-63", errDamaged, exp)
		}
		ifc.unitsPerSec = 1 << exp
	} else {
		if exp > 19 {
			return fmt.Errorf("%w: time stamp resolution 10^-%d is beyond 10^-19", errDamaged, exp)
		}
		ifc.unitsPerSec = 1
		for range exp {
			ifc.unitsPerSec *= 10
		}
	}
	ifc.nanosPerUnit = 0
	if 1e9%ifc.unitsPerSec == 0 {
		ifc.nanosPerUnit = 1e9 / ifc.unitsPerSec
	}
	return nil
}

// timestamp converts a packet's 64-bit time stamp, in the interface's
// units since 1970 plus its if_tsoffset, to the nanosecond. The fraction
// is rounded down, exactly for every resolution: binary ones finer than
// 2^-9 s do not divide a second into whole nanoseconds, and pcapgo's
// rounded scale factor is 706 µs off at 2^-20; Wireshark 4.0's arithmetic
// fails at 10^-19 and 2^-63 (TestPcapngReader_EdgeCases).
func (ifc *ngInterface) timestamp(ts uint64) time.Time {
	sec, frac := ts/ifc.unitsPerSec, ts%ifc.unitsPerSec
	var nsec uint64
	if ifc.nanosPerUnit != 0 {
		nsec = frac * ifc.nanosPerUnit
	} else {
		// frac*1e9/units < 1e9 without overflow: the 128-bit product's
		// high word is below units, as Div64 requires.
		hi, lo := bits.Mul64(frac, 1e9)
		nsec, _ = bits.Div64(hi, lo, ifc.unitsPerSec)
	}
	return time.Unix(int64(sec)+ifc.offset, int64(nsec)).UTC()
}

// readPacket reads a packet block of type typ whose header is buffered at
// buf[off:], holding the whole block in the buffer.
func (p *pcapngReader) readPacket(typ uint32) ([]byte, Info, error) {
	fixed := minEPBLen // the block without packet data and options
	if typ == blockSPB {
		fixed = minSPBLen
	}
	n, err := p.blockLength(fixed)
	if err != nil {
		return nil, Info{}, err
	}
	if err := p.fill(fixed - 4); err != nil {
		return nil, Info{}, fmt.Errorf("file ends inside the block: %w", unexpected(err))
	}
	b := p.buf[p.off:]
	var ifc *ngInterface
	var ts time.Time
	var capLen, origLen uint32
	if typ == blockSPB {
		// No interface ID, time stamp or captured length: the packet
		// came on interface 0 and was cut at its snaplen (pcapng
		// draft, "Simple Packet Block"). Its time is the Unix epoch,
		// as in Wireshark.
		if len(p.ifaces) == 0 {
			return nil, Info{}, fmt.Errorf("%w: packet before any interface description", errDamaged)
		}
		ifc = &p.ifaces[0]
		origLen = p.u32(b[8:])
		capLen = origLen
		if ifc.snaplen != 0 {
			capLen = min(capLen, ifc.snaplen)
		}
		ts = time.Unix(0, 0).UTC()
	} else {
		var id uint32
		if typ == blockEPB {
			id = p.u32(b[8:])
		} else {
			id = uint32(p.u16(b[8:])) // then a 16-bit drops count
		}
		if id >= uint32(len(p.ifaces)) {
			return nil, Info{}, fmt.Errorf("%w: interface %d is not described (the section has %d)", errDamaged, id, len(p.ifaces))
		}
		ifc = &p.ifaces[id]
		capLen, origLen = p.u32(b[20:]), p.u32(b[24:])
		ts = ifc.timestamp(uint64(p.u32(b[12:]))<<32 | uint64(p.u32(b[16:])))
	}
	if uint64(capLen) > uint64(ifc.maxCapLen) {
		return nil, Info{}, fmt.Errorf("%w: captured length %d is more than the maximum of %d", errDamaged, capLen, ifc.maxCapLen)
	}
	data := fixed - 4 // offset of the packet data in the block
	room := n - fixed // bytes for the data, its padding and options
	padded := int(capLen+3) &^ 3
	if padded > room {
		return nil, Info{}, fmt.Errorf("%w: %d bytes of packet data overrun a block of %d bytes", errDamaged, capLen, n)
	}
	if room-padded > maxPacketOptions {
		return nil, Info{}, fmt.Errorf("%w: %d bytes of options, more than the maximum of %d", errDamaged, room-padded, maxPacketOptions)
	}
	if err := p.fill(n); err != nil {
		return nil, Info{}, fmt.Errorf("file ends inside the block: %w", unexpected(err))
	}
	b = p.buf[p.off : p.off+n]
	if trailer := p.u32(b[n-4:]); trailer != uint32(n) {
		return nil, Info{}, fmt.Errorf("%w: block length %d at the end differs from %d at the start", errDamaged, trailer, n)
	}
	p.off += n
	p.pos += int64(n)
	end := data + int(capLen)
	return b[data:end:end], Info{
		Timestamp:     ts,
		Length:        int(origLen),
		CaptureLength: int(capLen),
		LinkType:      ifc.linkType,
		VLAN:          -1,
	}, nil
}

// skipBlock skips the rest of a block of n bytes: left bytes, then its
// trailing length, which it checks.
func (p *pcapngReader) skipBlock(n, left int) error {
	if err := p.discard(left); err != nil {
		return fmt.Errorf("file ends inside the block: %w", err)
	}
	if err := p.fill(4); err != nil {
		return fmt.Errorf("file ends inside the block: %w", unexpected(err))
	}
	if trailer := p.u32(p.buf[p.off:]); trailer != uint32(n) {
		return fmt.Errorf("%w: block length %d at the end differs from %d at the start", errDamaged, trailer, n)
	}
	p.off += 4
	p.pos += int64(n)
	return nil
}

// blockError adds the block's type and offset to err, and the number of
// packets read before it.
func (p *pcapngReader) blockError(typ uint32, err error) error {
	return fmt.Errorf("pcapng %s at offset %d (after packet %d): %w", blockName(typ), p.pos, p.packets, err)
}

// blockName names a block type in errors.
func blockName(typ uint32) string {
	switch typ {
	case blockSHB:
		return "section header block"
	case blockIDB:
		return "interface description block"
	case blockPB:
		return "packet block"
	case blockSPB:
		return "simple packet block"
	case blockEPB:
		return "enhanced packet block"
	}
	return fmt.Sprintf("block of type 0x%x", typ)
}

// unexpected turns io.EOF into io.ErrUnexpectedEOF: inside a block, the
// end of the input is always a truncation.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Stats returns zero: a file has no kernel counters.
func (p *pcapngReader) Stats() (Stats, error) { return Stats{}, nil }

// Close closes the file OpenFile opened; later reads return ErrClosed.
func (p *pcapngReader) Close() error {
	p.err = ErrClosed
	p.buf = nil
	if p.closer == nil {
		return nil
	}
	c := p.closer
	p.closer = nil
	return c.Close()
}
