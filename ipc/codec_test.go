package ipc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// equate compares messages: nil and empty slices and maps alike, times by
// instant.
var equate = cmp.Options{cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(0)}

// roundTrip encodes m, reads the frame back and decodes it.
func roundTrip(t *testing.T, m ipc.Message) ipc.Message {
	t.Helper()
	f, err := ipc.NewEncoder().Encode(m)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	body, err := ipc.ReadFrame(bytes.NewReader(f), nil, ipc.DefaultMaxFrame)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	got, err := ipc.NewDecoder(ipc.Limits{}).Decode(body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

func TestEncoder_RoundTripEveryMessage(t *testing.T) {
	full := ipctest.Batch(7, 3, 2, 4)
	full.Flows[0].VLAN = 42
	full.Flows[1].TCPFlags, full.Flows[1].History, full.Flows[1].Direction = "", "", "" // omitempty both ways
	full.Samples[0].FlowID = ""
	full.Dropped = ipc.DropStats{SamplesDropped: 1, BatchesCoalesced: 2, UpdatesDropped: 3, EndedDropped: 4, EndedPackets: 5, EndedBytes: math.MaxUint64}
	full.Stats.FragmentsPending = 9
	full.Stats.SamplesSkipped = 10
	done := ipctest.Batch(8, 2, 1, 1)
	done.Done = true
	tests := []struct {
		name string
		m    ipc.Message
	}{
		{"hello", &ipc.Hello{VersionMin: 1, VersionMax: 3, InstanceID: "0123456789abcdef", Hostname: "sensor-1",
			Software: "lightshark-capturer 0.1.0", Interface: "eth0", LinkType: 1, Filter: "port 443 and proto tcp",
			StartTime: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)}},
		{"hello zero time", &ipc.Hello{VersionMin: 1, VersionMax: 1, InstanceID: "x"}},
		{"hello_ack", &ipc.HelloAck{Version: 1, LastSeq: 1 << 40}},
		{"batch", full},
		{"empty batch", &ipc.Batch{Seq: 1}},
		{"done batch", done},
		{"done batch without records", &ipc.Batch{Seq: 2, Done: true}},
		{"ack", &ipc.Ack{Seq: math.MaxUint64}},
		{"error", &ipc.Error{Code: ipc.ErrCodeApply, Message: "disk full"}},
		{"version error", &ipc.Error{Code: ipc.ErrCodeVersion, Message: "no common version", VersionMin: 2, VersionMax: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := roundTrip(t, tt.m)
			if diff := cmp.Diff(tt.m, got, equate); diff != "" {
				t.Errorf("round trip (-sent +decoded):\n%s", diff)
			}
		})
	}
}

// fillNonZero sets every exported field of the struct v points to a
// distinct non-zero value.
func fillNonZero(t *testing.T, v reflect.Value, n *int) {
	for i := range v.NumField() {
		f := v.Field(i)
		*n++
		switch f.Kind() {
		case reflect.String:
			f.SetString("v" + strings.Repeat("x", *n))
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(*n))
		case reflect.Int64:
			f.SetInt(int64(*n) * 1e12)
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]uint64{"reason": uint64(*n)}))
		case reflect.Struct:
			if f.Type() == reflect.TypeFor[record.Time]() {
				f.Set(reflect.ValueOf(record.Time{Time: time.Unix(int64(*n)*1e6, int64(*n))}))
				continue
			}
			fillNonZero(t, f, n)
		default:
			t.Fatalf("field %s of kind %s: teach this test and the codec", v.Type().Field(i).Name, f.Kind())
		}
	}
}

// msgpackKeys returns the msgpack tag names of struct type typ.
func msgpackKeys(typ reflect.Type) []string {
	var keys []string
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("msgpack"), ",")
		keys = append(keys, name)
	}
	slices.Sort(keys)
	return keys
}

func sortedKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestRecordFields_AllOnTheWire guards the hand-written codec against the
// shared record types: every field, set, survives the trip, under the
// name of its msgpack tag. A field added to pkg/record fails here until
// the codec learns it.
func TestRecordFields_AllOnTheWire(t *testing.T) {
	var b ipc.Batch
	n := 0
	b.Seq = 1
	b.Flows = make([]record.Flow, 1)
	fillNonZero(t, reflect.ValueOf(&b.Flows[0]).Elem(), &n)
	b.Samples = make([]record.PacketSample, 1)
	fillNonZero(t, reflect.ValueOf(&b.Samples[0]).Elem(), &n)
	fillNonZero(t, reflect.ValueOf(&b.Stats).Elem(), &n)
	fillNonZero(t, reflect.ValueOf(&b.Dropped).Elem(), &n)
	b.Done = true

	got := roundTrip(t, &b)
	if diff := cmp.Diff(&b, got, equate); diff != "" {
		t.Errorf("round trip (-sent +decoded):\n%s", diff)
	}

	// The library, reading the same bytes generically, sees the tag names.
	f, err := ipc.NewEncoder().Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	var env []any
	if err := msgpack.Unmarshal(f[4:], &env); err != nil {
		t.Fatalf("library decode: %v", err)
	}
	body := env[1].(map[string]any)
	checks := []struct {
		name string
		m    any
		typ  reflect.Type
	}{
		{"batch", body, reflect.TypeFor[ipc.Batch]()},
		{"flow", body["flows"].([]any)[0], reflect.TypeFor[record.Flow]()},
		{"sample", body["samples"].([]any)[0], reflect.TypeFor[record.PacketSample]()},
		{"stats", body["stats"], reflect.TypeFor[record.CaptureStats]()},
		{"dropped", body["dropped"], reflect.TypeFor[ipc.DropStats]()},
	}
	for _, c := range checks {
		if diff := cmp.Diff(msgpackKeys(c.typ), sortedKeys(c.m.(map[string]any))); diff != "" {
			t.Errorf("%s keys (-tags +wire):\n%s", c.name, diff)
		}
	}
	if got := body["flows"].([]any)[0].(map[string]any)["first_seen"]; !reflect.DeepEqual(got, b.Flows[0].FirstSeen.Time) {
		t.Errorf("library reads first_seen as %#v, want the msgpack timestamp %v", got, b.Flows[0].FirstSeen.Time)
	}
}

// TestDecoder_ReadsLibraryEncodings: what the msgpack library writes from
// the tagged structs, or with other integer and container widths, decodes
// to the same messages, so any msgpack implementation can speak to us.
func TestDecoder_ReadsLibraryEncodings(t *testing.T) {
	hello := &ipc.Hello{VersionMin: 1, VersionMax: 2, InstanceID: "abc", Hostname: "h", Interface: "any",
		LinkType: 113, Filter: "f", StartTime: time.Unix(1700000000, 5).UTC(), Software: "s"}
	enc := func(v any) []byte {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.UseCompactInts(false) // fixed-width integers: uint16 as 0xcd and so on
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	longStr := strings.Repeat("z", 300) // str16
	tests := []struct {
		name string
		body []byte
		want ipc.Message
	}{
		{"hello from struct tags", enc([]any{uint8(ipc.TypeHello), hello}), hello},
		{"hello_ack from struct tags", enc([]any{uint8(ipc.TypeHelloAck), &ipc.HelloAck{Version: 1, LastSeq: 5}}), &ipc.HelloAck{Version: 1, LastSeq: 5}},
		{"ack from struct tags", enc([]any{uint8(ipc.TypeAck), &ipc.Ack{Seq: 1 << 33}}), &ipc.Ack{Seq: 1 << 33}},
		{"error from struct tags", enc([]any{uint8(ipc.TypeError), &ipc.Error{Code: "version", Message: longStr, VersionMin: 1, VersionMax: 1}}),
			&ipc.Error{Code: "version", Message: longStr, VersionMin: 1, VersionMax: 1}},
		{"batch from a generic map", enc([]any{int64(ipc.TypeBatch), map[string]any{
			"seq":     int32(3),
			"stats":   map[string]any{"packets": uint64(10), "decode_errors": map[string]any{"short": int8(2)}},
			"dropped": nil,
			"flows": []any{map[string]any{
				"id": "f1", "src_port": int64(80), "proto_num": uint16(6), "bytes_sent": uint64(math.MaxUint64),
				"first_seen": time.Unix(1, 0), "last_seen": time.Unix(1<<35, 999999999), "state": longStr,
			}},
			"samples": make([]any, 20), // array16 of nil maps: empty samples
		}}), &ipc.Batch{
			Seq:   3,
			Stats: record.CaptureStats{Packets: 10, DecodeErrors: map[string]uint64{"short": 2}},
			Flows: []record.Flow{{ID: "f1", SrcPort: 80, ProtoNum: 6, BytesSent: math.MaxUint64,
				FirstSeen: record.Time{Time: time.Unix(1, 0)}, LastSeen: record.Time{Time: time.Unix(1<<35, 999999999)}, State: longStr}},
			Samples: make([]record.PacketSample, 20),
		}},
		{"batch from struct tags, done", enc([]any{uint8(ipc.TypeBatch), &ipc.Batch{Seq: 4, Done: true}}), &ipc.Batch{Seq: 4, Done: true}},
		{"batch from struct tags, not done (key omitted)", enc([]any{uint8(ipc.TypeBatch), &ipc.Batch{Seq: 4}}), &ipc.Batch{Seq: 4}},
		{"batch with done false", enc([]any{uint8(ipc.TypeBatch), map[string]any{"seq": 5, "done": false}}), &ipc.Batch{Seq: 5}},
		{"batch with done nil", enc([]any{uint8(ipc.TypeBatch), map[string]any{"seq": 5, "done": nil}}), &ipc.Batch{Seq: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ipc.NewDecoder(ipc.Limits{}).Decode(tt.body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, equate); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecoder_SkipsUnknownFields is the forward-compatibility rule of
// PROTOCOL.md: a newer minor version may add fields of any type.
func TestDecoder_SkipsUnknownFields(t *testing.T) {
	body := ipctest.Body(ipc.TypeHello, map[string]any{
		"version_min": 1, "version_max": 1, "instance_id": "i",
		"future_nested": map[string]any{"a": []any{1, -2, 3.5, float32(1), true, nil, []byte{1, 2}, map[string]any{"b": "c"}}},
		"future_time":   time.Now(),
		"future_ext":    &msgpack.RawMessage{0xd4, 0x05, 0x01}, // fixext1
		"future_bin":    bytes.Repeat([]byte{7}, 70000),        // bin32
		"future_flag":   true,                                  // as "done" is to a reader that predates it
	})
	got, err := ipc.NewDecoder(ipc.Limits{}).Decode(body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(&ipc.Hello{VersionMin: 1, VersionMax: 1, InstanceID: "i"}, got, equate); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDecoder_Rejects(t *testing.T) {
	hello := func(fields map[string]any) []byte {
		m := map[string]any{"version_min": 1, "version_max": 1, "instance_id": "i"}
		for k, v := range fields {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return ipctest.Body(ipc.TypeHello, m)
	}
	batch := func(fields map[string]any) []byte {
		m := map[string]any{"seq": 1}
		for k, v := range fields {
			m[k] = v
		}
		return ipctest.Body(ipc.TypeBatch, m)
	}
	valid := ipctest.Encode(t, ipctest.Batch(1, 2, 1, 1))[4:]
	// {"version_min": 1, "version_max": 1, "instance_id": "i", "z": [[[[...1]]]]}
	deep := []byte{0x92, byte(ipc.TypeHello), 0x84}
	for _, kv := range [][2]string{{"version_min", "\x01"}, {"version_max", "\x01"}, {"instance_id", "\xa1i"}} {
		deep = append(deep, 0xa0|byte(len(kv[0])))
		deep = append(deep, kv[0]+kv[1]...)
	}
	deep = append(deep, 0xa1, 'z')
	deep = append(deep, bytes.Repeat([]byte{0x91}, 100)...)
	deep = append(deep, 0x01)
	bigMap := map[string]int{}
	for i := range ipc.DefaultMaxMapLen + 1 {
		bigMap[fmt.Sprint("k", i)] = i
	}
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"empty", nil, ipc.ErrMalformed},
		{"truncated batch", valid[:len(valid)/2], ipc.ErrMalformed},
		{"trailing bytes", append(slices.Clone(valid), 0xc0), ipc.ErrMalformed},
		{"not an envelope", []byte{0x80}, ipc.ErrMalformed},
		{"envelope of three", []byte{0x93, 0x04, 0x80, 0x80}, ipc.ErrMalformed},
		{"unknown type", ipctest.Body(ipc.MsgType(99), map[string]any{}), ipc.ErrMalformed},
		{"type as string", []byte{0x92, 0xa1, 'x', 0x80}, ipc.ErrMalformed},
		{"reserved code 0xc1", []byte{0x92, 0x01, 0x81, 0xa1, 'x', 0xc1}, ipc.ErrMalformed},
		{"nesting too deep", deep, ipc.ErrTooLarge},
		{"string over limit", hello(map[string]any{"filter": strings.Repeat("a", ipc.DefaultMaxString+1)}), ipc.ErrTooLarge},
		{"key over limit", hello(map[string]any{strings.Repeat("k", ipc.DefaultMaxString+1): 1}), ipc.ErrTooLarge},
		{"map over limit", hello(map[string]any{"future": bigMap}), ipc.ErrTooLarge},
		{"records over limit", batch(map[string]any{"samples": make([]any, ipc.DefaultMaxRecords/2+1), "flows": make([]any, ipc.DefaultMaxRecords/2)}), ipc.ErrTooLarge},
		{"array longer than the frame", ipctest.HugeArrayBody(1 << 31), ipc.ErrMalformed},
		{"negative unsigned", batch(map[string]any{"seq": -1}), ipc.ErrMalformed},
		{"proto_num over 255", batch(map[string]any{"flows": []any{map[string]any{"id": "x", "proto_num": 256}}}), ipc.ErrMalformed},
		{"float where integer", batch(map[string]any{"seq": 1.5}), ipc.ErrMalformed},
		{"integer where boolean", batch(map[string]any{"done": 1}), ipc.ErrMalformed},
		{"string where boolean", batch(map[string]any{"done": "true"}), ipc.ErrMalformed},
		{"timestamp with 1e9 ns", batch(map[string]any{"flows": []any{map[string]any{"id": "x",
			"first_seen": &msgpack.RawMessage{0xc7, 12, 0xff, 0x3b, 0x9a, 0xca, 0x00, 0, 0, 0, 0, 0, 0, 0, 1}}}}), ipc.ErrMalformed},
		{"timestamp of other ext type", batch(map[string]any{"flows": []any{map[string]any{"id": "x",
			"first_seen": &msgpack.RawMessage{0xd6, 0x05, 0, 0, 0, 1}}}}), ipc.ErrMalformed},
		{"hello without instance_id", hello(map[string]any{"instance_id": nil}), ipc.ErrInvalid},
		{"hello versions reversed", hello(map[string]any{"version_min": 3, "version_max": 2}), ipc.ErrInvalid},
		{"hello version 0", hello(map[string]any{"version_min": 0}), ipc.ErrInvalid},
		{"batch seq 0", batch(map[string]any{"seq": 0}), ipc.ErrInvalid},
		{"flow without id", batch(map[string]any{"ended": []any{map[string]any{"state": "SF"}}}), ipc.ErrInvalid},
		{"error without code", ipctest.Body(ipc.TypeError, map[string]any{"message": "m"}), ipc.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ipc.NewDecoder(ipc.Limits{}).Decode(tt.body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want error %v", m, err, tt.want)
			}
		})
	}
}

// heapAllocated returns the bytes allocated while f runs.
func heapAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecoder_HugeCountsAllocateNothing: counts inside a small frame that
// claim billions of elements are refused before any allocation sized by
// them.
func TestDecoder_HugeCountsAllocateNothing(t *testing.T) {
	bodies := map[string][]byte{
		"array32 of 2^31 flows":  ipctest.HugeArrayBody(1 << 31),
		"array32 of 65535 flows": ipctest.HugeArrayBody(65535),
		"map32 of 2^32-1 fields": {0x92, byte(ipc.TypeHello), 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'x'},
		"str32 of 2^32-1 bytes":  {0x92, byte(ipc.TypeHello), 0x81, 0xdb, 0xff, 0xff, 0xff, 0xff},
		"bin32 of 2^32-1 bytes":  {0x92, byte(ipc.TypeHello), 0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff},
		"ext32 of 2^32-1 bytes":  {0x92, byte(ipc.TypeHello), 0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			d := ipc.NewDecoder(ipc.Limits{})
			var err error
			allocs := testing.AllocsPerRun(100, func() { _, err = d.Decode(body) })
			if err == nil {
				t.Fatal("decoded")
			}
			bytes := heapAllocated(func() { d.Decode(body) })
			t.Logf("%v; %.0f allocs, %d bytes", err, allocs, bytes)
			if bytes > 4<<10 {
				t.Errorf("allocated %d bytes for a %d-byte frame, want < 4 KiB", bytes, len(body))
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	frame := ipctest.Encode(t, &ipc.Ack{Seq: 5})
	t.Run("two frames then EOF", func(t *testing.T) {
		r := bytes.NewReader(append(slices.Clone(frame), frame...))
		buf := make([]byte, 0, 64)
		for range 2 {
			body, err := ipc.ReadFrame(r, buf, 100)
			if err != nil || !bytes.Equal(body, frame[4:]) {
				t.Fatalf("got %x, %v; want %x", body, err, frame[4:])
			}
		}
		if _, err := ipc.ReadFrame(r, buf, 100); err != io.EOF {
			t.Fatalf("got %v, want io.EOF", err)
		}
	})
	t.Run("over the limit, body unread", func(t *testing.T) {
		r := bytes.NewReader(frame)
		_, err := ipc.ReadFrame(r, nil, len(frame)-5)
		if !errors.Is(err, ipc.ErrFrameTooLarge) || !errors.Is(err, ipc.ErrTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
		if r.Len() != len(frame)-4 {
			t.Errorf("read %d body bytes, want 0", len(frame)-4-r.Len())
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{1, 3, 5, len(frame) - 1} {
			_, err := ipc.ReadFrame(bytes.NewReader(frame[:n]), nil, 100)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%d bytes: got %v, want io.ErrUnexpectedEOF", n, err)
			}
		}
	})
	t.Run("a big prefix costs what arrives", func(t *testing.T) {
		in := binary.BigEndian.AppendUint32(nil, ipc.DefaultMaxFrame)
		in = append(in, make([]byte, 1000)...)
		var err error
		n := heapAllocated(func() { _, err = ipc.ReadFrame(bytes.NewReader(in), nil, ipc.DefaultMaxFrame) })
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
		}
		if n > 256<<10 {
			t.Errorf("allocated %d bytes for a 16 MiB prefix and 1000 bytes, want < 256 KiB", n)
		}
	})
	t.Run("large frame grows to fit", func(t *testing.T) {
		body := bytes.Repeat([]byte{0xab}, 300000)
		got, err := ipc.ReadFrame(bytes.NewReader(ipctest.Frame(body)), make([]byte, 10), 1<<20)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("got %d bytes, %v; want the 300000-byte body", len(got), err)
		}
	})
}

// TestEncoder_NoAllocationPerRecord: encoding a batch into the reused
// buffer allocates nothing, whatever its size.
func TestEncoder_NoAllocationPerRecord(t *testing.T) {
	e := ipc.NewEncoder()
	for _, n := range []int{1, 100, 2000} {
		b := ipctest.Batch(1, n, n/10, n/2)
		e.Encode(b) // grow the buffer once
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := e.Encode(b); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%d flows: %v allocations per encode, want 0", n, allocs)
		}
	}
}

// TestDecoder_SteadyStateAllocations: decoding a batch like the previous
// one reuses the batch's slices and interned strings; what remains is a
// few allocations per batch, not per record.
func TestDecoder_SteadyStateAllocations(t *testing.T) {
	b := ipctest.Batch(1, 1000, 100, 500)
	f := ipctest.Encode(t, b)
	d := ipc.NewDecoder(ipc.Limits{})
	d.Decode(f[4:])
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := d.Decode(f[4:]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("%v allocations per batch of 1600 records, want at most 10", allocs)
	}
}

// TestDecoder_MemoryBoundedByFrame: the worst frames for memory a peer can
// build allocate at most a small multiple of their size plus the
// records' fixed size (PROTOCOL.md, Limits).
func TestDecoder_MemoryBoundedByFrame(t *testing.T) {
	// MaxRecords minimal flows: the most records per byte.
	minimal := []byte{0x92, byte(ipc.TypeBatch), 0x82, 0xa3, 's', 'e', 'q', 0x01, 0xa5, 'f', 'l', 'o', 'w', 's', 0xdc,
		byte(ipc.DefaultMaxRecords >> 8), byte(ipc.DefaultMaxRecords & 0xff)}
	for range ipc.DefaultMaxRecords {
		minimal = append(minimal, 0x81, 0xa2, 'i', 'd', 0xa1, 'x')
	}
	// 380 samples (a frame just under MaxFrame), each repeating one field
	// 200 times with distinct 16-byte strings: the most strings per byte,
	// defeating the interning.
	var strs []byte
	strs = append(strs, 0x92, byte(ipc.TypeBatch), 0x82, 0xa3, 's', 'e', 'q', 0x01, 0xa7)
	strs = append(strs, "samples"...)
	strs = append(strs, 0xdc, 0x01, 0x7c) // 380
	n := 0
	for range 380 {
		strs = append(strs, 0xde, 0x00, 200)
		for range 200 {
			strs = append(strs, 0xa7)
			strs = append(strs, "flow_id"...)
			strs = append(strs, fmt.Sprintf("\xb0%016x", n)...)
			n++
		}
	}
	if len(strs) > ipc.DefaultMaxFrame || len(minimal) > ipc.DefaultMaxFrame {
		t.Fatalf("frames of %d and %d bytes exceed MaxFrame", len(minimal), len(strs))
	}
	for name, body := range map[string][]byte{"MaxRecords minimal flows": minimal, "76k distinct strings": strs} {
		t.Run(name, func(t *testing.T) {
			d := ipc.NewDecoder(ipc.Limits{})
			var err error
			alloc := heapAllocated(func() { _, err = d.Decode(body) })
			if err != nil {
				t.Fatalf("a frame within the limits was refused: %v", err)
			}
			records := ipc.DefaultMaxRecords
			bound := uint64(3*len(body) + records*300 + 2<<20)
			t.Logf("frame %d bytes, allocated %d bytes (err %v); bound %d", len(body), alloc, err, bound)
			if alloc > bound {
				t.Errorf("allocated %d bytes for a %d-byte frame, over %d", alloc, len(body), bound)
			}
		})
	}
}
