package capture

import (
	"encoding/binary"
)

// ngFile builds pcapng files block by block, for tests of edge cases the
// corpus lacks. Each block is written in the byte order of the last
// section header.
type ngFile struct {
	b     []byte
	order ngOrder
}

// ngOrder is binary.LittleEndian or binary.BigEndian.
type ngOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// ngOpt is one option: code and value (padded when written).
type ngOpt struct {
	code  uint16
	value []byte
}

func newNgFile(order ngOrder) *ngFile {
	f := &ngFile{order: order}
	f.shb(order, 1, 0)
	return f
}

// block appends a block of type typ around body; length overrides the
// total length written at both ends when not 0.
func (f *ngFile) block(typ uint32, body []byte, length uint32) *ngFile {
	n := uint32(12 + len(body))
	if length != 0 {
		n = length
	}
	f.b = f.order.AppendUint32(f.b, typ)
	f.b = f.order.AppendUint32(f.b, n)
	f.b = append(f.b, body...)
	f.b = f.order.AppendUint32(f.b, n)
	return f
}

func (f *ngFile) opts(body []byte, opts []ngOpt) []byte {
	if len(opts) == 0 {
		return body
	}
	for _, o := range opts {
		body = f.order.AppendUint16(body, o.code)
		body = f.order.AppendUint16(body, uint16(len(o.value)))
		body = append(body, o.value...)
		body = append(body, make([]byte, pad4(len(o.value)))...)
	}
	return append(body, 0, 0, 0, 0) // opt_endofopt
}

func pad4(n int) int { return (4 - n%4) % 4 }

// shb starts a section in the given byte order.
func (f *ngFile) shb(order ngOrder, major, minor uint16, opts ...ngOpt) *ngFile {
	f.order = order
	var body []byte
	body = order.AppendUint32(body, byteOrderMagic)
	body = order.AppendUint16(body, major)
	body = order.AppendUint16(body, minor)
	body = order.AppendUint64(body, ^uint64(0)) // section length unknown
	return f.block(blockSHB, f.opts(body, opts), 0)
}

// idb describes an interface.
func (f *ngFile) idb(linkType uint16, snaplen uint32, opts ...ngOpt) *ngFile {
	var body []byte
	body = f.order.AppendUint16(body, linkType)
	body = f.order.AppendUint16(body, 0)
	body = f.order.AppendUint32(body, snaplen)
	return f.block(blockIDB, f.opts(body, opts), 0)
}

// tsresol and tsoffset are IDB options.
func tsresol(v uint8) ngOpt { return ngOpt{optTsresol, []byte{v}} }

func (f *ngFile) tsoffset(sec int64) ngOpt {
	return ngOpt{optTsoffset, f.order.AppendUint64(nil, uint64(sec))}
}

// epb appends an Enhanced Packet Block (or, with obsolete, a Packet Block)
// holding data, whose original length was origLen.
func (f *ngFile) epb(iface uint32, ts uint64, data []byte, origLen uint32, opts ...ngOpt) *ngFile {
	return f.packet(blockEPB, iface, ts, data, origLen, opts...)
}

func (f *ngFile) pb(iface uint16, ts uint64, data []byte, origLen uint32) *ngFile {
	return f.packet(blockPB, uint32(iface), ts, data, origLen)
}

func (f *ngFile) packet(typ, iface uint32, ts uint64, data []byte, origLen uint32, opts ...ngOpt) *ngFile {
	var body []byte
	if typ == blockPB {
		body = f.order.AppendUint16(body, uint16(iface))
		body = f.order.AppendUint16(body, 0) // drops count
	} else {
		body = f.order.AppendUint32(body, iface)
	}
	body = f.order.AppendUint32(body, uint32(ts>>32))
	body = f.order.AppendUint32(body, uint32(ts))
	body = f.order.AppendUint32(body, uint32(len(data)))
	body = f.order.AppendUint32(body, origLen)
	body = append(body, data...)
	body = append(body, make([]byte, pad4(len(data)))...)
	return f.block(typ, f.opts(body, opts), 0)
}

// spb appends a Simple Packet Block holding data, whose original length
// was origLen.
func (f *ngFile) spb(data []byte, origLen uint32) *ngFile {
	body := f.order.AppendUint32(nil, origLen)
	body = append(body, data...)
	body = append(body, make([]byte, pad4(len(data)))...)
	return f.block(blockSPB, body, 0)
}

// testFrame returns n bytes that tell frames apart.
func testFrame(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}
