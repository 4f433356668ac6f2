package bench

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/capturer"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
)

func TestMix_Write_deterministic(t *testing.T) {
	sum := func(seed uint64) [32]byte {
		var buf bytes.Buffer
		if _, err := (Mix{Seed: seed, Packets: 20000}).Write(Output{W: &buf}); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(buf.Bytes())
	}
	if a, b := sum(7), sum(7); a != b {
		t.Errorf("seed 7 wrote different files: %x, %x", a, b)
	}
	if a, b := sum(7), sum(8); a == b {
		t.Errorf("seeds 7 and 8 wrote the same file")
	}
}

// TestMix_Write_prefix checks that a shorter mix is a prefix of a longer
// one with the same seed (the live benchmark replays such a prefix).
func TestMix_Write_prefix(t *testing.T) {
	var short, long bytes.Buffer
	if _, err := (Mix{Seed: 3, Packets: 5000}).Write(Output{W: &short}); err != nil {
		t.Fatal(err)
	}
	if _, err := (Mix{Seed: 3, Packets: 9000}).Write(Output{W: &long}); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(long.Bytes(), short.Bytes()) {
		t.Errorf("the 5000-packet mix is not a prefix of the 9000-packet one")
	}
}

// readAll runs a capture through the product's pipeline, checking frame
// sizes and timestamps on the way.
func readAll(t *testing.T, data []byte, table *flow.Table) *capturer.Pipeline {
	t.Helper()
	src, err := capture.OpenReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	p := capturer.NewPipeline(table)
	var last int64
	for n := 0; ; n++ {
		frame, info, err := src.ReadPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("packet %d: %v", n, err)
		}
		if info.Length < 60 || info.Length > 1514 || info.CaptureLength != len(frame) {
			t.Fatalf("packet %d: length %d, captured %d", n, info.Length, info.CaptureLength)
		}
		ts := info.Timestamp.UnixNano()
		if ts <= last {
			t.Fatalf("packet %d: timestamp %v not after the previous one", n, info.Timestamp)
		}
		last = ts
		p.Packet(frame, &info)
	}
	table.Flush()
	return p
}

func TestMix_Write_decodes(t *testing.T) {
	var buf, cut bytes.Buffer
	st, err := Mix{Seed: 1, Packets: 100_000}.Write(Output{W: &buf}, Output{W: &cut, Snaplen: 128})
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 100_000 || st.TCP == 0 || st.UDP == 0 || st.ICMP == 0 || st.IPv6 == 0 {
		t.Fatalf("stats %+v: want every kind of traffic", st)
	}
	for name, data := range map[string][]byte{"whole": buf.Bytes(), "snap128": cut.Bytes()} {
		t.Run(name, func(t *testing.T) {
			table := flow.NewTable(1 << 20)
			p := readAll(t, data, table)
			ps := p.Stats()
			if ps.Packets != st.Packets || ps.Bytes != st.Bytes {
				t.Errorf("read %d packets %d bytes, generated %d packets %d bytes", ps.Packets, ps.Bytes, st.Packets, st.Bytes)
			}
			if len(ps.DecodeErrors) != 0 || ps.NonIP != uint64(st.NonIP) || ps.FlowPackets+ps.NonIP != ps.Packets {
				t.Errorf("decode errors %v, non-IP %d (generated %d), flow packets %d of %d", ps.DecodeErrors, ps.NonIP, st.NonIP, ps.FlowPackets, ps.Packets)
			}
			// ICMP flows are keyed by address pair, not by echo
			// identifier, so a few conversations share a flow.
			if ps.Flows > uint64(st.Conversations) || ps.Flows < uint64(st.Conversations-st.ICMP) {
				t.Errorf("%d flows from %d conversations (%d ICMP)", ps.Flows, st.Conversations, st.ICMP)
			}
		})
	}
}

func TestConcurrent_Write(t *testing.T) {
	const n = 3000
	var buf bytes.Buffer
	st, err := Concurrent{Seed: 2, Flows: n}.Write(Output{W: &buf})
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != n*(3+4+3) {
		t.Errorf("%d packets, want %d", st.Packets, n*10)
	}
	table := flow.NewTable(n)
	var states = map[string]int{}
	table.OnEnd = func(f *flow.Flow) { states[f.Record().State]++ }
	p := readAll(t, buf.Bytes(), table)
	ts := p.Table().Stats()
	if ts.Flows != n || ts.Evictions != 0 {
		t.Errorf("%d flows, %d evictions; want %d flows, none evicted", ts.Flows, ts.Evictions, n)
	}
	if states["SF"] != n {
		t.Errorf("states %v, want %d SF", states, n)
	}
}
