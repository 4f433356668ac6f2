package ipc_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
)

// fuzzLimits are small, so that the fuzzer reaches them.
var fuzzLimits = ipc.Limits{MaxFrame: 1 << 16, MaxRecords: 100, MaxString: 64, MaxMapLen: 32}

// seedFrames are valid frames of every message type.
func seedFrames(t testing.TB) [][]byte {
	b := ipctest.Batch(3, 2, 1, 2)
	b.Flows[0].VLAN = 7
	b.Dropped.SamplesDropped = 9
	done := ipctest.Batch(4, 1, 1, 0)
	done.Done = true
	return [][]byte{
		ipctest.Encode(t, &ipc.Hello{VersionMin: 1, VersionMax: 2, InstanceID: "i", Hostname: "h", Software: "s",
			Interface: "eth0", LinkType: 1, Filter: "port 53", StartTime: time.Unix(1700000000, 1)}),
		ipctest.Encode(t, &ipc.HelloAck{Version: 1, LastSeq: 77}),
		ipctest.Encode(t, b),
		ipctest.Encode(t, &ipc.Batch{Seq: 1}),
		ipctest.Encode(t, done),
		ipctest.Encode(t, &ipc.Ack{Seq: 3}),
		ipctest.Encode(t, &ipc.Error{Code: ipc.ErrCodeVersion, Message: "m", VersionMin: 1, VersionMax: 1}),
		ipctest.Frame(ipctest.HugeArrayBody(1 << 31)),
	}
}

// FuzzReadFrame: any byte stream yields frames no larger than the limit,
// or an error; never a panic, never a buffer beyond the limit.
func FuzzReadFrame(f *testing.F) {
	seeds := seedFrames(f)
	f.Add(bytes.Join(seeds, nil))
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		d := ipc.NewDecoder(fuzzLimits)
		var buf []byte
		read := 0
		for {
			body, err := ipc.ReadFrame(r, buf, fuzzLimits.MaxFrame)
			if err != nil {
				return
			}
			if len(body) > fuzzLimits.MaxFrame || cap(body) > 2*fuzzLimits.MaxFrame {
				t.Fatalf("body of %d bytes (cap %d) over the limit %d", len(body), cap(body), fuzzLimits.MaxFrame)
			}
			if !bytes.Equal(body, data[read+4:read+4+len(body)]) {
				t.Fatal("body is not the bytes after the prefix")
			}
			read += 4 + len(body)
			d.Decode(body)
			buf = body[:0]
		}
	})
}

// FuzzDecodeMessage: any body decodes to a message within the limits, which
// re-encodes and decodes to itself, or to an error of one of the three
// kinds; never a panic.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s[4:])
	}
	f.Add(ipctest.Body(ipc.TypeHello, map[string]any{"version_min": 1, "version_max": 1, "instance_id": "x",
		"extra": []any{map[string]any{"a": 1.5}, []byte{1}, nil, true, -3}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ipc.NewDecoder(fuzzLimits).Decode(body)
		if err != nil {
			if !errors.Is(err, ipc.ErrMalformed) && !errors.Is(err, ipc.ErrTooLarge) && !errors.Is(err, ipc.ErrInvalid) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if b, ok := m.(*ipc.Batch); ok {
			if n := len(b.Flows) + len(b.Ended) + len(b.Samples); n > fuzzLimits.MaxRecords {
				t.Fatalf("%d records, over %d", n, fuzzLimits.MaxRecords)
			}
		}
		f, err := ipc.NewEncoder().Encode(m)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", m, err)
		}
		m2, err := ipc.NewDecoder(fuzzLimits).Decode(f[4:])
		if err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if diff := cmp.Diff(m, m2, equate); diff != "" {
			t.Fatalf("re-encoded message differs (-first +second):\n%s", diff)
		}
	})
}
