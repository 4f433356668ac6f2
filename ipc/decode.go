package ipc

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// msgpack format codes (https://github.com/msgpack/msgpack/blob/master/spec.md).
// Constants, unlike the variables of the msgpcode package, so that switches
// compile to jump tables.
const (
	cNil      = 0xc0
	cFalse    = 0xc2
	cTrue     = 0xc3
	cBin8     = 0xc4
	cBin16    = 0xc5
	cBin32    = 0xc6
	cExt8     = 0xc7
	cExt16    = 0xc8
	cExt32    = 0xc9
	cFloat32  = 0xca
	cFloat64  = 0xcb
	cUint8    = 0xcc
	cUint16   = 0xcd
	cUint32   = 0xce
	cUint64   = 0xcf
	cInt8     = 0xd0
	cInt16    = 0xd1
	cInt32    = 0xd2
	cInt64    = 0xd3
	cFixExt1  = 0xd4
	cFixExt2  = 0xd5
	cFixExt4  = 0xd6
	cFixExt8  = 0xd7
	cFixExt16 = 0xd8
	cStr8     = 0xd9
	cStr16    = 0xda
	cStr32    = 0xdb
	cArray16  = 0xdc
	cArray32  = 0xdd
	cMap16    = 0xde
	cMap32    = 0xdf
)

// Interning: strings of at most internMaxLen bytes are looked up in a table
// of at most internMaxEntries, which is emptied when full. Flow ids,
// addresses, protocol and state names repeat from batch to batch, so most
// decoded strings cost no allocation.
const (
	internMaxLen     = 64
	internMaxEntries = 8192
)

// Decoder decodes frame bodies into messages, checking every length against
// its Limits and the bytes left in the body before allocating anything. It
// reuses one Batch: the *Batch that Decode returns, its slices and its
// DecodeErrors map are valid until the next call; strings stay valid.
// A Decoder is not safe for concurrent use; the zero value is not usable,
// call NewDecoder.
type Decoder struct {
	limits Limits
	r      reader
	batch  Batch
	intern map[string]string
}

// NewDecoder returns a Decoder enforcing l (zero fields: defaults).
func NewDecoder(l Limits) *Decoder {
	return &Decoder{limits: l.withDefaults(), intern: make(map[string]string)}
}

// Decode decodes one frame body (without its length prefix). Errors wrap
// ErrMalformed, ErrTooLarge or ErrInvalid.
func (d *Decoder) Decode(body []byte) (Message, error) {
	return d.decode(body, &d.batch)
}

// decode decodes body, into dst if it is a batch.
func (d *Decoder) decode(body []byte, dst *Batch) (Message, error) {
	r := &d.r
	*r = reader{b: body, lim: &d.limits, intern: d.intern}
	if len(body) > d.limits.MaxFrame {
		return nil, fmt.Errorf("frame of %d bytes: %w", len(body), ErrFrameTooLarge)
	}
	if n := r.arrayLen(); r.err == nil && n != 2 {
		r.fail(fmt.Errorf("envelope of %d elements: %w", n, ErrMalformed))
	}
	t := MsgType(r.uint(math.MaxUint8))
	if r.err != nil {
		return nil, r.err
	}
	var m Message
	switch t {
	case TypeHello:
		h := new(Hello)
		r.hello(h)
		m = h
	case TypeHelloAck:
		a := new(HelloAck)
		r.mapFields(func(k []byte) bool {
			switch string(k) {
			case "version":
				a.Version = uint16(r.uint(math.MaxUint16))
			case "last_seq":
				a.LastSeq = r.uint(math.MaxUint64)
			default:
				return false
			}
			return true
		})
		m = a
	case TypeBatch:
		r.batch(dst)
		m = dst
	case TypeAck:
		a := new(Ack)
		r.mapFields(func(k []byte) bool {
			if string(k) != "seq" {
				return false
			}
			a.Seq = r.uint(math.MaxUint64)
			return true
		})
		m = a
	case TypeError:
		e := new(Error)
		r.mapFields(func(k []byte) bool {
			switch string(k) {
			case "code":
				e.Code = r.str()
			case "message":
				e.Message = r.str()
			case "version_min":
				e.VersionMin = uint16(r.uint(math.MaxUint16))
			case "version_max":
				e.VersionMax = uint16(r.uint(math.MaxUint16))
			default:
				return false
			}
			return true
		})
		m = e
	default:
		return nil, fmt.Errorf("unknown message type %d: %w", t, ErrMalformed)
	}
	if r.err == nil && r.pos != len(r.b) {
		r.fail(fmt.Errorf("%d bytes after the message: %w", len(r.b)-r.pos, ErrMalformed))
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, r.err)
	}
	if err := validate(m); err != nil {
		return nil, err
	}
	return m, nil
}

// validate checks the rules of PROTOCOL.md that decoding alone does not.
func validate(m Message) error {
	switch m := m.(type) {
	case *Hello:
		if m.InstanceID == "" {
			return fmt.Errorf("hello without instance_id: %w", ErrInvalid)
		}
		if m.VersionMin == 0 || m.VersionMin > m.VersionMax {
			return fmt.Errorf("hello version range [%d, %d]: %w", m.VersionMin, m.VersionMax, ErrInvalid)
		}
	case *Batch:
		if m.Seq == 0 {
			return fmt.Errorf("batch seq 0: %w", ErrInvalid)
		}
		for _, fs := range [2][]record.Flow{m.Flows, m.Ended} {
			for i := range fs {
				if fs[i].ID == "" {
					return fmt.Errorf("batch %d: flow without id: %w", m.Seq, ErrInvalid)
				}
			}
		}
	case *Error:
		if m.Code == "" {
			return fmt.Errorf("error without code: %w", ErrInvalid)
		}
	}
	return nil
}

// reader reads msgpack values from a byte slice. The first error sticks:
// after it every method returns a zero value, so callers check err once.
// Lengths are checked against the limits and against the bytes left
// before anything is allocated: every array element and map entry takes at
// least one byte, so a count can never exceed what remains.
type reader struct {
	b       []byte
	pos     int
	err     error
	lim     *Limits
	records int // array elements so far in this frame, against MaxRecords
	intern  map[string]string
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
		r.pos = len(r.b)
	}
}

func (r *reader) truncated() {
	r.fail(fmt.Errorf("truncated at byte %d: %w", r.pos, ErrMalformed))
}

func (r *reader) left() int { return len(r.b) - r.pos }

func (r *reader) byte() byte {
	if r.pos >= len(r.b) {
		r.truncated()
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

// next returns the next n bytes (a subslice of the body).
func (r *reader) next(n int) []byte {
	if n < 0 || n > r.left() {
		r.truncated()
		return nil
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b
}

func (r *reader) be(n int) uint64 {
	b := r.next(n)
	switch n {
	case 1:
		if b != nil {
			return uint64(b[0])
		}
	case 2:
		if b != nil {
			return uint64(binary.BigEndian.Uint16(b))
		}
	case 4:
		if b != nil {
			return uint64(binary.BigEndian.Uint32(b))
		}
	case 8:
		if b != nil {
			return binary.BigEndian.Uint64(b)
		}
	}
	return 0
}

func (r *reader) wrongType(want string, c byte) {
	r.fail(fmt.Errorf("code 0x%02x at byte %d where %s expected: %w", c, r.pos-1, want, ErrMalformed))
}

// arrayLen reads an array header. nil reads as an empty array.
func (r *reader) arrayLen() int {
	c := r.byte()
	var n int
	switch {
	case r.err != nil:
		return 0
	case c >= 0x90 && c <= 0x9f:
		n = int(c & 0x0f)
	case c == cArray16:
		n = int(r.be(2))
	case c == cArray32:
		n = int(r.be(4))
	case c == cNil:
		return 0
	default:
		r.wrongType("array", c)
		return 0
	}
	if n > r.left() {
		r.fail(fmt.Errorf("array of %d elements in %d bytes: %w", n, r.left(), ErrMalformed))
		return 0
	}
	return n
}

// recordsLen reads the header of a record array, charging it to the
// frame's MaxRecords.
func (r *reader) recordsLen() int {
	n := r.arrayLen()
	r.records += n
	if r.records > r.lim.MaxRecords {
		r.fail(fmt.Errorf("%d records, limit %d: %w", r.records, r.lim.MaxRecords, ErrTooLarge))
		return 0
	}
	return n
}

// mapLen reads a map header. nil reads as an empty map.
func (r *reader) mapLen() int {
	c := r.byte()
	var n int
	switch {
	case r.err != nil:
		return 0
	case c >= 0x80 && c <= 0x8f:
		n = int(c & 0x0f)
	case c == cMap16:
		n = int(r.be(2))
	case c == cMap32:
		n = int(r.be(4))
	case c == cNil:
		return 0
	default:
		r.wrongType("map", c)
		return 0
	}
	if n > r.lim.MaxMapLen {
		r.fail(fmt.Errorf("map of %d entries, limit %d: %w", n, r.lim.MaxMapLen, ErrTooLarge))
		return 0
	}
	if 2*n > r.left() {
		r.fail(fmt.Errorf("map of %d entries in %d bytes: %w", n, r.left(), ErrMalformed))
		return 0
	}
	return n
}

// mapFields reads a map with string keys, calling field for each key; field
// reads the value and returns true, or returns false for an unknown key,
// whose value is skipped (PROTOCOL.md: readers ignore unknown fields).
func (r *reader) mapFields(field func(key []byte) bool) {
	n := r.mapLen()
	for i := 0; i < n && r.err == nil; i++ {
		k := r.strBytes()
		if r.err != nil {
			return
		}
		if !field(k) {
			r.skip(0)
		}
	}
}

// strBytes reads a string (or nil, as empty) and returns its bytes, a
// subslice of the body.
func (r *reader) strBytes() []byte {
	c := r.byte()
	var n int
	switch {
	case r.err != nil:
		return nil
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == cStr8:
		n = int(r.be(1))
	case c == cStr16:
		n = int(r.be(2))
	case c == cStr32:
		n = int(r.be(4))
	case c == cNil:
		return nil
	default:
		r.wrongType("string", c)
		return nil
	}
	if n > r.lim.MaxString {
		r.fail(fmt.Errorf("string of %d bytes, limit %d: %w", n, r.lim.MaxString, ErrTooLarge))
		return nil
	}
	return r.next(n)
}

// str reads a string, interning short ones.
func (r *reader) str() string {
	b := r.strBytes()
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen || r.intern == nil {
		return string(b)
	}
	if s, ok := r.intern[string(b)]; ok {
		return s
	}
	if len(r.intern) >= internMaxEntries {
		clear(r.intern) // bounded even within one hostile frame
	}
	s := string(b)
	r.intern[s] = s
	return s
}

// uint reads a non-negative integer of at most max.
func (r *reader) uint(max uint64) uint64 {
	c := r.byte()
	var v uint64
	switch {
	case r.err != nil:
		return 0
	case c <= 0x7f:
		v = uint64(c)
	case c == cUint8:
		v = r.be(1)
	case c == cUint16:
		v = r.be(2)
	case c == cUint32:
		v = r.be(4)
	case c == cUint64:
		v = r.be(8)
	case c == cInt8, c == cInt16, c == cInt32, c == cInt64:
		r.pos--
		i := r.int()
		if i < 0 {
			r.fail(fmt.Errorf("negative %d where unsigned expected: %w", i, ErrMalformed))
			return 0
		}
		v = uint64(i)
	default:
		r.wrongType("unsigned integer", c)
		return 0
	}
	if v > max {
		r.fail(fmt.Errorf("%d over %d: %w", v, max, ErrMalformed))
		return 0
	}
	return v
}

// bool reads a boolean, or nil as false.
func (r *reader) bool() bool {
	c := r.byte()
	switch {
	case r.err != nil:
		return false
	case c == cTrue:
		return true
	case c == cFalse, c == cNil:
		return false
	}
	r.wrongType("boolean", c)
	return false
}

// int reads a signed integer.
func (r *reader) int() int64 {
	c := r.byte()
	switch {
	case r.err != nil:
		return 0
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	case c == cInt8:
		return int64(int8(r.be(1)))
	case c == cInt16:
		return int64(int16(r.be(2)))
	case c == cInt32:
		return int64(int32(r.be(4)))
	case c == cInt64:
		return int64(r.be(8))
	case c == cUint8:
		return int64(r.be(1))
	case c == cUint16:
		return int64(r.be(2))
	case c == cUint32:
		return int64(r.be(4))
	case c == cUint64:
		v := r.be(8)
		if v > math.MaxInt64 {
			r.fail(fmt.Errorf("%d over int64: %w", v, ErrMalformed))
			return 0
		}
		return int64(v)
	}
	r.wrongType("integer", c)
	return 0
}

// time reads a msgpack timestamp (extension type -1, in its 32-, 64- or
// 96-bit form), or nil as the zero time. Times are returned in UTC.
func (r *reader) time() time.Time {
	c := r.byte()
	var n int
	switch {
	case r.err != nil:
		return time.Time{}
	case c == cNil:
		return time.Time{}
	case c == cFixExt4:
		n = 4
	case c == cFixExt8:
		n = 8
	case c == cExt8:
		n = int(r.be(1))
		if n != 12 && r.err == nil {
			r.fail(fmt.Errorf("timestamp of %d bytes: %w", n, ErrMalformed))
		}
	default:
		r.wrongType("timestamp", c)
		return time.Time{}
	}
	if typ := int8(r.be(1)); typ != -1 && r.err == nil {
		r.fail(fmt.Errorf("extension type %d where timestamp (-1) expected: %w", typ, ErrMalformed))
	}
	var sec, nsec int64
	switch n {
	case 4:
		sec = int64(r.be(4))
	case 8:
		v := r.be(8)
		sec, nsec = int64(v&(1<<34-1)), int64(v>>34)
	case 12:
		nsec = int64(r.be(4))
		sec = int64(r.be(8))
	}
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		r.fail(fmt.Errorf("timestamp with %d ns: %w", nsec, ErrMalformed))
		return time.Time{}
	}
	return time.Unix(sec, nsec).UTC()
}

// skip skips one value of any type. Containers may nest maxDepth deep.
func (r *reader) skip(depth int) {
	if depth > maxDepth {
		r.fail(fmt.Errorf("values nested over %d deep: %w", maxDepth, ErrTooLarge))
		return
	}
	c := r.byte()
	switch {
	case r.err != nil:
	case c <= 0x7f || c >= 0xe0, c == cNil, c == cFalse, c == cTrue:
	case c >= 0x80 && c <= 0x8f, c == cMap16, c == cMap32:
		r.pos--
		n := r.mapLen()
		for i := 0; i < 2*n && r.err == nil; i++ {
			r.skip(depth + 1)
		}
	case c >= 0x90 && c <= 0x9f, c == cArray16, c == cArray32:
		r.pos--
		n := r.arrayLen()
		for i := 0; i < n && r.err == nil; i++ {
			r.skip(depth + 1)
		}
	case c >= 0xa0 && c <= 0xbf, c == cStr8, c == cStr16, c == cStr32:
		r.pos--
		r.strBytes()
	case c == cBin8, c == cBin16, c == cBin32:
		r.next(int(r.be(1 << (c - cBin8))))
	case c == cExt8, c == cExt16, c == cExt32:
		r.next(int(r.be(1<<(c-cExt8))) + 1)
	case c >= cFixExt1 && c <= cFixExt16:
		r.next(1 + 1<<(c-cFixExt1))
	case c == cFloat32, c == cUint32, c == cInt32:
		r.next(4)
	case c == cFloat64, c == cUint64, c == cInt64:
		r.next(8)
	case c == cUint8, c == cInt8:
		r.next(1)
	case c == cUint16, c == cInt16:
		r.next(2)
	default: // 0xc1, never used
		r.wrongType("value", c)
	}
}

func (r *reader) hello(h *Hello) {
	r.mapFields(func(k []byte) bool {
		switch string(k) {
		case "version_min":
			h.VersionMin = uint16(r.uint(math.MaxUint16))
		case "version_max":
			h.VersionMax = uint16(r.uint(math.MaxUint16))
		case "instance_id":
			h.InstanceID = r.str()
		case "hostname":
			h.Hostname = r.str()
		case "software":
			h.Software = r.str()
		case "interface":
			h.Interface = r.str()
		case "link_type":
			h.LinkType = uint16(r.uint(math.MaxUint16))
		case "filter":
			h.Filter = r.str()
		case "start_time":
			h.StartTime = r.time()
		default:
			return false
		}
		return true
	})
}

// shrink returns s emptied, or nil when it grew far beyond what the last
// batch needed, so that one huge batch does not pin memory forever.
func shrink[T any](s []T) []T {
	if cap(s) > 8192 && len(s) < cap(s)/4 {
		return nil
	}
	return s[:0]
}

// grow returns s with room for n more elements. n was checked against the
// bytes left, so this allocates at most MaxRecords elements.
func grow[T any](s []T, n int) []T {
	if cap(s)-len(s) < n {
		s = append(make([]T, 0, len(s)+n), s...)
	}
	return s
}

func (r *reader) batch(b *Batch) {
	decodeErrors := b.Stats.DecodeErrors
	clear(decodeErrors)
	*b = Batch{
		Flows:   shrink(b.Flows),
		Ended:   shrink(b.Ended),
		Samples: shrink(b.Samples),
	}
	b.Stats.DecodeErrors = decodeErrors
	r.mapFields(func(k []byte) bool {
		switch string(k) {
		case "seq":
			b.Seq = r.uint(math.MaxUint64)
		case "flows":
			b.Flows = r.flows(b.Flows)
		case "ended":
			b.Ended = r.flows(b.Ended)
		case "samples":
			n := r.recordsLen()
			b.Samples = grow(b.Samples, n)
			for i := 0; i < n && r.err == nil; i++ {
				b.Samples = append(b.Samples, record.PacketSample{})
				r.sample(&b.Samples[len(b.Samples)-1])
			}
		case "stats":
			r.stats(&b.Stats)
		case "dropped":
			r.dropped(&b.Dropped)
		case "done":
			b.Done = r.bool()
		default:
			return false
		}
		return true
	})
}

func (r *reader) flows(fs []record.Flow) []record.Flow {
	n := r.recordsLen()
	fs = grow(fs, n)
	for i := 0; i < n && r.err == nil; i++ {
		fs = append(fs, record.Flow{})
		r.flow(&fs[len(fs)-1])
	}
	return fs
}

func (r *reader) flow(f *record.Flow) {
	r.mapFields(func(k []byte) bool {
		switch string(k) {
		case "id":
			f.ID = r.str()
		case "community_id":
			f.CommunityID = r.str()
		case "proto":
			f.Proto = r.str()
		case "proto_num":
			f.ProtoNum = uint8(r.uint(math.MaxUint8))
		case "src_ip":
			f.SrcIP = r.str()
		case "src_port":
			f.SrcPort = uint16(r.uint(math.MaxUint16))
		case "dst_ip":
			f.DstIP = r.str()
		case "dst_port":
			f.DstPort = uint16(r.uint(math.MaxUint16))
		case "vlan":
			f.VLAN = uint16(r.uint(math.MaxUint16))
		case "first_seen":
			f.FirstSeen.Time = r.time()
		case "last_seen":
			f.LastSeen.Time = r.time()
		case "packets_sent":
			f.PacketsSent = r.uint(math.MaxUint64)
		case "bytes_sent":
			f.BytesSent = r.uint(math.MaxUint64)
		case "packets_received":
			f.PacketsReceived = r.uint(math.MaxUint64)
		case "bytes_received":
			f.BytesReceived = r.uint(math.MaxUint64)
		case "tcp_flags":
			f.TCPFlags = r.str()
		case "history":
			f.History = r.str()
		case "state":
			f.State = r.str()
		case "direction":
			f.Direction = r.str()
		case "end_reason":
			f.EndReason = r.str()
		default:
			return false
		}
		return true
	})
}

func (r *reader) sample(s *record.PacketSample) {
	r.mapFields(func(k []byte) bool {
		switch string(k) {
		case "timestamp":
			s.Timestamp = r.int()
		case "src_ip":
			s.SrcIP = r.str()
		case "dst_ip":
			s.DstIP = r.str()
		case "src_port":
			s.SrcPort = uint16(r.uint(math.MaxUint16))
		case "dst_port":
			s.DstPort = uint16(r.uint(math.MaxUint16))
		case "protocol":
			s.Protocol = r.str()
		case "length":
			s.Length = uint32(r.uint(math.MaxUint32))
		case "flow_id":
			s.FlowID = r.str()
		default:
			return false
		}
		return true
	})
}

func (r *reader) stats(s *record.CaptureStats) {
	r.mapFields(func(k []byte) bool {
		switch string(k) {
		case "packets":
			s.Packets = r.uint(math.MaxUint64)
		case "bytes":
			s.Bytes = r.uint(math.MaxUint64)
		case "kernel_received":
			s.KernelReceived = r.uint(math.MaxUint64)
		case "kernel_drops":
			s.KernelDrops = r.uint(math.MaxUint64)
		case "flow_packets":
			s.FlowPackets = r.uint(math.MaxUint64)
		case "non_ip":
			s.NonIP = r.uint(math.MaxUint64)
		case "decode_errors":
			n := r.mapLen()
			if n > 0 && s.DecodeErrors == nil {
				s.DecodeErrors = make(map[string]uint64, n)
			}
			for i := 0; i < n && r.err == nil; i++ {
				k := r.str()
				s.DecodeErrors[k] = r.uint(math.MaxUint64)
			}
		case "filtered":
			s.Filtered = r.uint(math.MaxUint64)
		case "flows":
			s.Flows = r.uint(math.MaxUint64)
		case "active_flows":
			s.ActiveFlows = r.uint(math.MaxUint64)
		case "evictions":
			s.Evictions = r.uint(math.MaxUint64)
		case "fragments_pending":
			s.FragmentsPending = r.uint(math.MaxUint64)
		case "samples_skipped":
			s.SamplesSkipped = r.uint(math.MaxUint64)
		default:
			return false
		}
		return true
	})
}

func (r *reader) dropped(d *DropStats) {
	r.mapFields(func(k []byte) bool {
		switch string(k) {
		case "samples_dropped":
			d.SamplesDropped = r.uint(math.MaxUint64)
		case "batches_coalesced":
			d.BatchesCoalesced = r.uint(math.MaxUint64)
		case "updates_dropped":
			d.UpdatesDropped = r.uint(math.MaxUint64)
		case "ended_dropped":
			d.EndedDropped = r.uint(math.MaxUint64)
		case "ended_packets":
			d.EndedPackets = r.uint(math.MaxUint64)
		case "ended_bytes":
			d.EndedBytes = r.uint(math.MaxUint64)
		default:
			return false
		}
		return true
	})
}
