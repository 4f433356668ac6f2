package ipc

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name                   string
		cmin, cmax, smin, smax uint16
		want                   uint16
		ok                     bool
	}{
		{"same", 1, 1, 1, 1, 1, true},
		{"client newer, overlapping", 1, 3, 1, 2, 2, true},
		{"server newer, overlapping", 1, 2, 2, 5, 2, true},
		{"client range inside", 3, 4, 1, 9, 4, true},
		{"client too new", 2, 3, 1, 1, 0, false},
		{"client too old", 1, 1, 2, 3, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := negotiate(tt.cmin, tt.cmax, tt.smin, tt.smax)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func flow(id string, packets uint64, lastSeen int) record.Flow {
	return record.Flow{ID: id, PacketsSent: packets, BytesSent: 100 * packets, State: "S1",
		LastSeen: record.Time{Time: time.Unix(int64(lastSeen), 0).UTC()}}
}

// TestEncoder_SplitsBatches: a batch over the frame or record bound is
// split into frames with consecutive seqs that together hold every record
// once, each within the bounds and each with the stats; a batch marked
// Done has it on its last frame only.
func TestEncoder_SplitsBatches(t *testing.T) {
	b := &Batch{Stats: record.CaptureStats{Packets: 77, DecodeErrors: map[string]uint64{"x": 1}}, Done: true}
	for i := range 3000 {
		b.Flows = append(b.Flows, flow(fmt.Sprint("a", i), uint64(i), i))
	}
	for i := range 1000 {
		b.Ended = append(b.Ended, flow(fmt.Sprint("e", i), uint64(i), i))
	}
	for i := range 5000 {
		b.Samples = append(b.Samples, record.PacketSample{Timestamp: int64(i), SrcIP: "10.0.0.1", Protocol: "udp", Length: 60})
	}
	for _, tt := range []struct {
		maxBody, maxRecords int
	}{{64 << 10, DefaultMaxRecords}, {1 << 20, 1000}, {DefaultMaxFrame, DefaultMaxRecords}} {
		t.Run(fmt.Sprintf("%d bytes %d records", tt.maxBody, tt.maxRecords), func(t *testing.T) {
			e := NewEncoder()
			d := NewDecoder(Limits{})
			var got Batch
			wantSeq := uint64(10)
			samples := 0
			var doneSeqs []uint64
			n, err := e.encodeBatch(b, 10, tt.maxBody, tt.maxRecords, func(seq uint64, f []byte, nSamples int) error {
				if seq != wantSeq {
					t.Errorf("seq %d, want %d", seq, wantSeq)
				}
				wantSeq++
				if len(f)-headerLen > tt.maxBody {
					t.Errorf("frame %d of %d bytes, over %d", seq, len(f)-headerLen, tt.maxBody)
				}
				m, err := d.Decode(f[headerLen:])
				if err != nil {
					t.Fatalf("decode frame %d: %v", seq, err)
				}
				part := m.(*Batch)
				if records := len(part.Flows) + len(part.Ended) + len(part.Samples); records > tt.maxRecords {
					t.Errorf("frame %d holds %d records, over %d", seq, records, tt.maxRecords)
				}
				if len(part.Samples) != nSamples {
					t.Errorf("frame %d: reported %d samples, holds %d", seq, nSamples, len(part.Samples))
				}
				samples += nSamples
				if part.Done {
					doneSeqs = append(doneSeqs, seq)
				}
				if part.Stats.Packets != 77 || part.Stats.DecodeErrors["x"] != 1 {
					t.Errorf("frame %d stats %+v", seq, part.Stats)
				}
				got.Flows = append(got.Flows, part.Flows...)
				got.Ended = append(got.Ended, part.Ended...)
				got.Samples = append(got.Samples, part.Samples...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d frames", n)
			if len(doneSeqs) != 1 || doneSeqs[0] != wantSeq-1 {
				t.Errorf("done on frames %v of %d..%d, want on the last only", doneSeqs, 10, wantSeq-1)
			}
			if samples != len(b.Samples) {
				t.Errorf("reported %d samples, want %d", samples, len(b.Samples))
			}
			want := &Batch{Flows: b.Flows, Ended: b.Ended, Samples: b.Samples}
			if diff := cmp.Diff(want, &got, cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(0)); diff != "" {
				t.Errorf("records (-sent +received):\n%s", diff)
			}
		})
	}
}

// TestEncoder_LastFrameFitsTheBound: the last frame of a batch, whose
// sections after its records are opened with array32 headers, and which
// carries "done" when the batch is Done, stays within the frame bound: a
// batch of flows only (the most bytes after its records), under every
// bound around its size.
func TestEncoder_LastFrameFitsTheBound(t *testing.T) {
	b := &Batch{Seq: 1}
	for i := range 100 {
		b.Flows = append(b.Flows, flow(fmt.Sprint("a", i), uint64(i), i))
	}
	e := NewEncoder()
	f, err := e.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	size := len(f) - headerLen
	for _, done := range []bool{false, true} {
		b.Done = done
		for maxBody := size - 10; maxBody <= size+10; maxBody++ {
			dones := 0
			frames, err := e.encodeBatch(b, 1, maxBody, DefaultMaxRecords, func(_ uint64, f []byte, _ int) error {
				if len(f)-headerLen > maxBody {
					t.Errorf("done %v, bound %d: frame of %d bytes", done, maxBody, len(f)-headerLen)
				}
				if f[headerLen+2] == 0x87 { // fixmap(7): with "done"
					dones++
				}
				return nil
			})
			if err != nil || (done && dones != 1) || (!done && dones != 0) {
				t.Errorf("done %v, bound %d: %d frames, %v; %d with done", done, maxBody, frames, err, dones)
			}
		}
	}
}

func TestEncoder_RefusesWhatAPeerWouldReject(t *testing.T) {
	long := string(make([]byte, DefaultMaxString+1))
	tests := []struct {
		name string
		m    Message
	}{
		{"flow without id", &Batch{Seq: 1, Flows: []record.Flow{{State: "S0"}}}},
		{"seq 0", &Batch{}},
		{"long string", &Batch{Seq: 1, Samples: []record.PacketSample{{SrcIP: long}}}},
		{"too many decode error reasons", &Batch{Seq: 1, Stats: record.CaptureStats{DecodeErrors: func() map[string]uint64 {
			m := map[string]uint64{}
			for i := range DefaultMaxMapLen + 1 {
				m[fmt.Sprint(i)] = 1
			}
			return m
		}()}}},
		{"too many records for one frame", &Batch{Seq: 1, Samples: make([]record.PacketSample, DefaultMaxRecords+1)}},
		{"long hello field", &Hello{InstanceID: long}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f, err := NewEncoder().Encode(tt.m); err == nil {
				t.Fatalf("encoded %d bytes, want an error", len(f))
			}
		})
	}
}

func TestCoalesce(t *testing.T) {
	b1 := &Batch{Seq: 1, Flows: []record.Flow{flow("a", 1, 1), flow("b", 1, 1)},
		Samples: []record.PacketSample{{Timestamp: 1}}, Stats: record.CaptureStats{Packets: 2}}
	b2 := &Batch{Seq: 2, Flows: []record.Flow{flow("a", 5, 2), flow("c", 1, 2)},
		Ended: []record.Flow{flow("b", 3, 2)}, Stats: record.CaptureStats{Packets: 9}}
	b3 := &Batch{Seq: 3, Flows: []record.Flow{flow("c", 4, 3)}, Ended: []record.Flow{flow("a", 6, 3)},
		Samples: []record.PacketSample{{Timestamp: 3}}, Stats: record.CaptureStats{Packets: 20}}
	got := coalesce([]*Batch{b1, b2, b3})
	want := &Batch{
		Flows:   []record.Flow{flow("c", 4, 3)},
		Ended:   []record.Flow{flow("b", 3, 2), flow("a", 6, 3)},
		Samples: []record.PacketSample{{Timestamp: 1}, {Timestamp: 3}},
		Stats:   record.CaptureStats{Packets: 20},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Done, wherever it was, survives: the merged batch is the last.
	b2.Done = true
	if got := coalesce([]*Batch{b1, b2, b3}); !got.Done {
		t.Errorf("coalesced with a done batch: Done %v, want true", got.Done)
	}
}
