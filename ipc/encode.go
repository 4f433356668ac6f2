package ipc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// headerLen is the length of the frame prefix: a big-endian uint32 body
// length.
const headerLen = 4

// batchTail is room for the keys and empty arrays that close a batch body
// after its last record: "ended" [] "samples" [], with the array32 headers
// that the last frame's sections get when the loop opens them (a frame
// closed early writes fixarrays, 8 bytes fewer).
const batchTail = 24

// doneTail is room for the "done" true that closes the last frame of a
// batch with Done set.
const doneTail = 6

// Encoder encodes messages into frames (length prefix and msgpack body),
// reusing one buffer: in steady state it allocates nothing per record.
// It checks what it writes against the default Limits, so that a peer
// never receives a frame it would reject. An Encoder is not safe for
// concurrent use; the zero value is not usable, call NewEncoder.
type Encoder struct {
	buf    bytes.Buffer
	enc    *msgpack.Encoder
	limits Limits
	err    error
	keys   []string // scratch for sorting decode_errors
}

// NewEncoder returns an Encoder checking against DefaultLimits.
func NewEncoder() *Encoder {
	e := &Encoder{limits: DefaultLimits()}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}

// Encode returns the frame of m. The slice is valid until the next call.
// A batch that does not fit in one frame within the limits is an error
// wrapping ErrTooLarge (Client splits such batches instead).
func (e *Encoder) Encode(m Message) ([]byte, error) {
	if b, ok := m.(*Batch); ok {
		var frame []byte
		_, err := e.encodeBatch(b, b.Seq, e.limits.MaxFrame, e.limits.MaxRecords, func(_ uint64, f []byte, _ int) error {
			if frame != nil {
				return fmt.Errorf("batch needs more than one frame: %w", ErrTooLarge)
			}
			frame = f
			return nil
		})
		return frame, err
	}
	e.begin(m.Type())
	switch m := m.(type) {
	case *Hello:
		e.hello(m)
	case *HelloAck:
		e.mapLen(2)
		e.key("version")
		e.uint(uint64(m.Version))
		e.key("last_seq")
		e.uint(m.LastSeq)
	case *Ack:
		e.mapLen(1)
		e.key("seq")
		e.uint(m.Seq)
	case *Error:
		n := 2
		if m.VersionMin != 0 {
			n++
		}
		if m.VersionMax != 0 {
			n++
		}
		e.mapLen(n)
		e.key("code")
		e.str(m.Code)
		e.key("message")
		e.str(m.Message)
		if m.VersionMin != 0 {
			e.key("version_min")
			e.uint(uint64(m.VersionMin))
		}
		if m.VersionMax != 0 {
			e.key("version_max")
			e.uint(uint64(m.VersionMax))
		}
	default:
		return nil, fmt.Errorf("encode %T: %w", m, ErrInvalid)
	}
	return e.end()
}

// begin starts a frame: room for the length, then [type, map...].
func (e *Encoder) begin(t MsgType) {
	e.buf.Reset()
	e.err = nil
	e.buf.Write([]byte{0, 0, 0, 0, 0x92}) // length placeholder, fixarray(2)
	e.uint(uint64(t))
}

// end patches the length prefix and returns the frame.
func (e *Encoder) end() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	b := e.buf.Bytes()
	if len(b)-headerLen > e.limits.MaxFrame {
		return nil, fmt.Errorf("frame of %d bytes: %w", len(b)-headerLen, ErrFrameTooLarge)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-headerLen))
	return b, nil
}

func (e *Encoder) check(err error) {
	if err != nil && e.err == nil {
		e.err = err
	}
}

func (e *Encoder) mapLen(n int)          { e.check(e.enc.EncodeMapLen(n)) }
func (e *Encoder) key(k string)          { e.check(e.enc.EncodeString(k)) }
func (e *Encoder) uint(v uint64)         { e.check(e.enc.EncodeUint(v)) }
func (e *Encoder) int(v int64)           { e.check(e.enc.EncodeInt(v)) }
func (e *Encoder) timestamp(t time.Time) { e.check(e.enc.EncodeTime(t)) }
func (e *Encoder) rtime(t record.Time)   { e.timestamp(t.Time) }

func (e *Encoder) str(s string) {
	if len(s) > e.limits.MaxString {
		e.check(fmt.Errorf("string of %d bytes: %w", len(s), ErrTooLarge))
		return
	}
	e.check(e.enc.EncodeString(s))
}

func (e *Encoder) hello(h *Hello) {
	e.mapLen(9)
	e.key("version_min")
	e.uint(uint64(h.VersionMin))
	e.key("version_max")
	e.uint(uint64(h.VersionMax))
	e.key("instance_id")
	e.str(h.InstanceID)
	e.key("hostname")
	e.str(h.Hostname)
	e.key("software")
	e.str(h.Software)
	e.key("interface")
	e.str(h.Interface)
	e.key("link_type")
	e.uint(uint64(h.LinkType))
	e.key("filter")
	e.str(h.Filter)
	e.key("start_time")
	e.timestamp(h.StartTime)
}

// batchSections are the record arrays of a batch body, in wire order.
var batchSections = [3]string{"flows", "ended", "samples"}

// encodeBatch encodes b as one or more frames, numbered from seq, each with
// a body of at most maxBody bytes and at most maxRecords records. Every
// frame repeats the stats and dropped counters (they are cumulative); only
// the last one carries Done. emit receives each frame, valid during the
// call, with its seq and its number of samples. It returns the number of
// frames emitted.
func (e *Encoder) encodeBatch(b *Batch, seq uint64, maxBody, maxRecords int, emit func(seq uint64, frame []byte, samples int) error) (int, error) {
	if seq == 0 {
		return 0, fmt.Errorf("batch seq 0: %w", ErrInvalid)
	}
	lens := [3]int{len(b.Flows), len(b.Ended), len(b.Samples)}
	tail := batchTail
	if b.Done {
		tail += doneTail
	}
	frames := 0
	section := 0 // the section whose array is open
	mapAt := 0   // offset of the body map's header
	arrayAt := 0 // offset of the open array's header
	inArray := 0 // records in the open array
	inFrame := 0 // records in the frame
	start := func() {
		e.begin(TypeBatch)
		mapAt = e.buf.Len()
		e.mapLen(6)
		e.key("seq")
		e.uint(seq)
		e.key("stats")
		e.keys = e.stats(&b.Stats, e.keys)
		e.key("dropped")
		e.dropped(&b.Dropped)
		for i := range section {
			e.key(batchSections[i])
			e.buf.WriteByte(0x90) // empty fixarray
		}
		e.openArray(section)
		arrayAt, inArray, inFrame = e.buf.Len()-5, 0, 0
	}
	finish := func(last bool) error {
		e.closeArray(arrayAt, inArray)
		for i := section + 1; i < len(batchSections); i++ {
			e.key(batchSections[i])
			e.buf.WriteByte(0x90)
		}
		if last && b.Done {
			// Whether a frame is the last is known only now: the map
			// header written by start, fixmap(6), becomes fixmap(7).
			e.key("done")
			e.check(e.enc.EncodeBool(true))
			e.buf.Bytes()[mapAt] = 0x87
		}
		f, err := e.end()
		if err != nil {
			return err
		}
		if len(f)-headerLen > maxBody {
			return fmt.Errorf("batch header of %d bytes: %w", len(f)-headerLen, ErrTooLarge)
		}
		frames++
		samples := 0
		if section == len(batchSections)-1 {
			samples = inArray
		}
		return emit(seq, f, samples)
	}

	start()
	for section = 0; section < len(batchSections); section++ {
		if section > 0 {
			e.closeArray(arrayAt, inArray)
			e.openArray(section)
			arrayAt, inArray = e.buf.Len()-5, 0
		}
		for i := 0; i < lens[section]; i++ {
			mark := e.buf.Len()
			e.record(b, section, i)
			if e.err != nil {
				return frames, e.err
			}
			if e.buf.Len()-headerLen+tail > maxBody || inFrame >= maxRecords {
				if inFrame == 0 {
					return frames, fmt.Errorf("record of %d bytes in a frame of at most %d: %w", e.buf.Len()-mark, maxBody, ErrTooLarge)
				}
				// Close this frame without the record and start the next
				// one with it.
				e.buf.Truncate(mark)
				if err := finish(false); err != nil {
					return frames, err
				}
				seq++
				start()
				e.record(b, section, i)
				if e.err != nil {
					return frames, e.err
				}
				if e.buf.Len()-headerLen+tail > maxBody {
					return frames, fmt.Errorf("record of %d bytes in a frame of at most %d: %w", e.buf.Len()-arrayAt-5, maxBody, ErrTooLarge)
				}
			}
			inArray++
			inFrame++
		}
	}
	section = len(batchSections) - 1
	err := finish(true)
	return frames, err
}

// openArray writes a section key and an array32 header whose count
// closeArray patches. array32 is valid msgpack for any count.
func (e *Encoder) openArray(section int) {
	e.key(batchSections[section])
	e.buf.Write([]byte{0xdd, 0, 0, 0, 0})
}

func (e *Encoder) closeArray(at, n int) {
	binary.BigEndian.PutUint32(e.buf.Bytes()[at+1:], uint32(n))
}

func (e *Encoder) record(b *Batch, section, i int) {
	switch section {
	case 0:
		e.flow(&b.Flows[i])
	case 1:
		e.flow(&b.Ended[i])
	default:
		e.sample(&b.Samples[i])
	}
}

// flow writes a record.Flow as a map keyed by its msgpack tags, leaving
// out the omitempty fields that are empty.
func (e *Encoder) flow(f *record.Flow) {
	if f.ID == "" {
		e.check(fmt.Errorf("flow without id: %w", ErrInvalid))
		return
	}
	n := 15
	for _, s := range [...]string{f.TCPFlags, f.History, f.Direction, f.EndReason} {
		if s != "" {
			n++
		}
	}
	if f.VLAN != 0 {
		n++
	}
	e.mapLen(n)
	e.key("id")
	e.str(f.ID)
	e.key("community_id")
	e.str(f.CommunityID)
	e.key("proto")
	e.str(f.Proto)
	e.key("proto_num")
	e.uint(uint64(f.ProtoNum))
	e.key("src_ip")
	e.str(f.SrcIP)
	e.key("src_port")
	e.uint(uint64(f.SrcPort))
	e.key("dst_ip")
	e.str(f.DstIP)
	e.key("dst_port")
	e.uint(uint64(f.DstPort))
	if f.VLAN != 0 {
		e.key("vlan")
		e.uint(uint64(f.VLAN))
	}
	e.key("first_seen")
	e.rtime(f.FirstSeen)
	e.key("last_seen")
	e.rtime(f.LastSeen)
	e.key("packets_sent")
	e.uint(f.PacketsSent)
	e.key("bytes_sent")
	e.uint(f.BytesSent)
	e.key("packets_received")
	e.uint(f.PacketsReceived)
	e.key("bytes_received")
	e.uint(f.BytesReceived)
	if f.TCPFlags != "" {
		e.key("tcp_flags")
		e.str(f.TCPFlags)
	}
	if f.History != "" {
		e.key("history")
		e.str(f.History)
	}
	e.key("state")
	e.str(f.State)
	if f.Direction != "" {
		e.key("direction")
		e.str(f.Direction)
	}
	if f.EndReason != "" {
		e.key("end_reason")
		e.str(f.EndReason)
	}
}

func (e *Encoder) sample(s *record.PacketSample) {
	n := 7
	if s.FlowID != "" {
		n++
	}
	e.mapLen(n)
	e.key("timestamp")
	e.int(s.Timestamp)
	e.key("src_ip")
	e.str(s.SrcIP)
	e.key("dst_ip")
	e.str(s.DstIP)
	e.key("src_port")
	e.uint(uint64(s.SrcPort))
	e.key("dst_port")
	e.uint(uint64(s.DstPort))
	e.key("protocol")
	e.str(s.Protocol)
	e.key("length")
	e.uint(uint64(s.Length))
	if s.FlowID != "" {
		e.key("flow_id")
		e.str(s.FlowID)
	}
}

// stats writes s; keys is scratch space for sorting decode_errors, returned
// for reuse.
func (e *Encoder) stats(s *record.CaptureStats, keys []string) []string {
	e.mapLen(13)
	e.key("packets")
	e.uint(s.Packets)
	e.key("bytes")
	e.uint(s.Bytes)
	e.key("kernel_received")
	e.uint(s.KernelReceived)
	e.key("kernel_drops")
	e.uint(s.KernelDrops)
	e.key("flow_packets")
	e.uint(s.FlowPackets)
	e.key("non_ip")
	e.uint(s.NonIP)
	e.key("decode_errors")
	if len(s.DecodeErrors) > e.limits.MaxMapLen {
		e.check(fmt.Errorf("%d decode error reasons: %w", len(s.DecodeErrors), ErrTooLarge))
	}
	// Sorted, so that equal stats encode to equal bytes.
	keys = keys[:0]
	for k := range s.DecodeErrors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.mapLen(len(keys))
	for _, k := range keys {
		e.str(k)
		e.uint(s.DecodeErrors[k])
	}
	e.key("filtered")
	e.uint(s.Filtered)
	e.key("flows")
	e.uint(s.Flows)
	e.key("active_flows")
	e.uint(s.ActiveFlows)
	e.key("evictions")
	e.uint(s.Evictions)
	e.key("fragments_pending")
	e.uint(s.FragmentsPending)
	e.key("samples_skipped")
	e.uint(s.SamplesSkipped)
	return keys
}

func (e *Encoder) dropped(d *DropStats) {
	e.mapLen(6)
	e.key("samples_dropped")
	e.uint(d.SamplesDropped)
	e.key("batches_coalesced")
	e.uint(d.BatchesCoalesced)
	e.key("updates_dropped")
	e.uint(d.UpdatesDropped)
	e.key("ended_dropped")
	e.uint(d.EndedDropped)
	e.key("ended_packets")
	e.uint(d.EndedPackets)
	e.key("ended_bytes")
	e.uint(d.EndedBytes)
}

// flowSize returns the encoded size of one flow record.
func (e *Encoder) flowSize(f *record.Flow) int {
	mark := e.buf.Len()
	e.flow(f)
	n := e.buf.Len() - mark
	e.buf.Truncate(mark)
	return n
}
