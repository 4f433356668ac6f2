package flow

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
)

var (
	cli = netip.MustParseAddr("10.0.0.1")
	srv = netip.MustParseAddr("10.0.0.2")
)

const (
	S  = decode.TCPSyn
	A  = decode.TCPAck
	F  = decode.TCPFin
	R  = decode.TCPRst
	SA = decode.TCPSyn | decode.TCPAck
	FA = decode.TCPFin | decode.TCPAck
	RA = decode.TCPRst | decode.TCPAck
	PA = decode.TCPPsh | decode.TCPAck
)

// seg describes one TCP segment: from the client (c2s) or the server.
type seg struct {
	c2s     bool
	flags   uint8
	payload uint32
}

func tcpPacket(s seg, seq uint32) decode.Packet {
	p := decode.Packet{Proto: decode.ProtoTCP, HasPorts: true, TCPFlags: s.flags, Payload: s.payload,
		Length: 60 + s.payload, Seq: seq}
	if s.c2s {
		p.Src, p.Dst, p.SrcPort, p.DstPort = cli, srv, 40000, 80
	} else {
		p.Src, p.Dst, p.SrcPort, p.DstPort = srv, cli, 80, 40000
	}
	return p
}

// collect runs segments through a fresh table and returns every flow, ended
// or flushed, in the order they ended.
func collect(t *testing.T, segs []seg) []Flow {
	t.Helper()
	tb := NewTable(16)
	var out []Flow
	tb.OnEnd = func(f *Flow) { out = append(out, *f) }
	ts := int64(1e18)
	for i, s := range segs {
		p := tcpPacket(s, uint32(1000+i))
		tb.Update(&p, ts)
		ts += int64(time.Millisecond)
	}
	tb.Flush()
	return out
}

// The expected states and histories are Zeek's own, from the conn.log
// documentation (conn_state and history) and Zeek's test baselines for the
// same packet sequences.
func TestTable_TCPStateAndHistory(t *testing.T) {
	tests := []struct {
		name    string
		segs    []seg
		state   string
		history string
	}{
		{"syn only", []seg{{true, S, 0}}, "S0", "S"},
		{"rejected", []seg{{true, S, 0}, {false, RA, 0}}, "REJ", "Sr"},
		{"normal", []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {true, PA, 100}, {false, A, 0}, {false, PA, 1000},
			{true, FA, 0}, {false, FA, 0}, {true, A, 0}}, "SF", "ShADadFf"},
		{"established", []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {true, PA, 10}}, "S1", "ShAD"},
		{"orig aborts", []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {true, R, 0}}, "RSTO", "ShAR"},
		{"resp aborts", []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {false, R, 0}}, "RSTR", "ShAr"},
		{"orig closes", []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {true, FA, 0}}, "S2", "ShAF"},
		{"resp closes", []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {false, FA, 0}}, "S3", "ShAf"},
		{"syn then rst", []seg{{true, S, 0}, {true, R, 0}}, "RSTOS0", "SR"},
		{"syn then fin", []seg{{true, S, 0}, {true, F, 0}}, "SH", "SF"},
		{"midstream", []seg{{true, PA, 10}, {false, A, 0}}, "OTH", "Da"},
		{"missed syn", []seg{{false, SA, 0}, {true, A, 0}, {true, PA, 5}}, "S1", "^hAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flows := collect(t, tt.segs)
			if len(flows) != 1 {
				t.Fatalf("got %d flows, want 1", len(flows))
			}
			f := flows[0]
			if f.State != tt.state || f.History() != tt.history {
				t.Errorf("got state %s history %q, want %s %q", f.State, f.History(), tt.state, tt.history)
			}
			if f.Src != cli || f.SrcPort != 40000 || f.Dst != srv || f.DstPort != 80 {
				t.Errorf("originator: got %v:%d -> %v:%d, want the client", f.Src, f.SrcPort, f.Dst, f.DstPort)
			}
		})
	}
}

func TestTable_Counters(t *testing.T) {
	flows := collect(t, []seg{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {true, PA, 100}, {false, PA, 1000}})
	f := flows[0]
	if f.Packets != [2]uint64{3, 2} || f.Bytes != [2]uint64{60*3 + 100, 60*2 + 1000} {
		t.Errorf("got packets %v bytes %v, want [3 2] [280 1120]", f.Packets, f.Bytes)
	}
	if f.First != 1e18 || f.Last != 1e18+4*int64(time.Millisecond) {
		t.Errorf("got first %d last %d", f.First, f.Last)
	}
	if got := f.TCPFlagString(); got != "SPA" {
		t.Errorf("got tcp_flags %q, want SPA", got)
	}
}

// A new SYN on a 4-tuple whose connection was reset starts a new flow, as
// tshark's tcp.stream and Zeek do (shared/pcaps conformance
// suricata-bug-3844.pcap has this sequence).
func TestTable_Reuse(t *testing.T) {
	flows := collect(t, []seg{{true, S, 0}, {false, R, 0}, {true, S, 0}, {false, SA, 0}, {true, A, 0}})
	// (collect gives every segment a new sequence number, so the second
	// SYN is a new connection, not a retransmission.)
	if len(flows) != 2 {
		t.Fatalf("got %d flows, want 2", len(flows))
	}
	if flows[0].EndReason != "reused" || flows[0].State != "REJ" || flows[0].Packets != [2]uint64{1, 1} {
		t.Errorf("first flow: got %s %s %v", flows[0].EndReason, flows[0].State, flows[0].Packets)
	}
	if flows[1].Packets != [2]uint64{2, 1} || flows[1].ID == flows[0].ID {
		t.Errorf("second flow: got packets %v id %x (first %x)", flows[1].Packets, flows[1].ID, flows[0].ID)
	}
}

// A SYN that repeats the first SYN's sequence number after a RST is a
// retransmission, not a new connection (shared/pcaps conformance
// gopacket-cip.pcap has such SYNs; tshark keeps one stream).
func TestTable_SYNRetransmissionIsNotReuse(t *testing.T) {
	tb := NewTable(16)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	for i, s := range []seg{{true, S, 0}, {false, R, 0}, {true, S, 0}} {
		p := tcpPacket(s, 1000)
		tb.Update(&p, int64(i))
	}
	tb.Flush()
	if len(ended) != 1 || ended[0].Packets != [2]uint64{2, 1} {
		t.Fatalf("got %+v, want one flow", ended)
	}
}

func udp(src, dst netip.Addr, sport, dport uint16, n uint32) decode.Packet {
	return decode.Packet{Proto: decode.ProtoUDP, HasPorts: true, Src: src, Dst: dst, SrcPort: sport, DstPort: dport,
		Length: n, Payload: n - 42}
}

func TestTable_IdleExpiryAndEviction(t *testing.T) {
	tb := NewTable(2)
	tb.IdleTimeout = 10 * time.Second
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	base := int64(1e18)
	sec := int64(time.Second)
	p1 := udp(cli, srv, 1000, 53, 100)
	p2 := udp(cli, srv, 1001, 53, 100)
	p3 := udp(cli, srv, 1002, 53, 100)
	tb.Update(&p1, base)
	tb.Update(&p2, base+sec)
	tb.Update(&p1, base+2*sec) // p1's flow is now the most recent
	tb.Update(&p3, base+3*sec) // full: evicts p2's flow, the longest idle
	if len(ended) != 1 || ended[0].SrcPort != 1001 || ended[0].EndReason != "evicted" {
		t.Fatalf("after eviction: got %+v, want the flow from port 1001 evicted", ended)
	}
	if s := tb.Stats(); s.Evictions != 1 || s.Active != 2 || s.Flows != 3 {
		t.Errorf("stats: got %+v", s)
	}
	tb.Advance(base + 13*sec) // p1 idle 11 s, p3 idle 10 s
	if len(ended) != 2 || ended[1].SrcPort != 1000 || ended[1].EndReason != "idle" {
		t.Fatalf("after idle: got %+v, want the flow from port 1000 ended idle", ended)
	}
	if ended[1].Packets[0] != 2 || ended[1].State != "S0" || ended[1].History() != "D" {
		t.Errorf("udp flow: got %v %s %q", ended[1].Packets, ended[1].State, ended[1].History())
	}
}

func TestTable_ClosedTimeoutIsShorter(t *testing.T) {
	tb := NewTable(16)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	ts := int64(1e18)
	for i, s := range []seg{{true, S, 0}, {false, SA, 0}, {true, FA, 0}, {false, FA, 0}} {
		p := tcpPacket(s, uint32(i))
		tb.Update(&p, ts)
	}
	tb.Advance(ts + int64(DefaultClosedTimeout) + int64(time.Second))
	if len(ended) != 1 || ended[0].EndReason != "closed" || ended[0].State != "SF" {
		t.Fatalf("got %+v, want one closed SF flow", ended)
	}
}

func TestTable_ICMPEchoIsOneFlow(t *testing.T) {
	tb := NewTable(16)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	req := decode.Packet{Proto: decode.ProtoICMP, HasPorts: true, Src: cli, Dst: srv, SrcPort: 8, DstPort: 0, Length: 98}
	rep := decode.Packet{Proto: decode.ProtoICMP, HasPorts: true, Src: srv, Dst: cli, SrcPort: 0, DstPort: 0, Length: 98}
	for i := range 3 {
		tb.Update(&req, int64(2*i))
		tb.Update(&rep, int64(2*i+1))
	}
	tb.Flush()
	if len(ended) != 1 || ended[0].Packets != [2]uint64{3, 3} || ended[0].Src != cli || ended[0].SrcPort != 8 {
		t.Fatalf("got %+v, want one flow of 3+3 packets from the client, type 8", ended)
	}
}

// The VLAN is not part of the key: a routed conversation captured on a
// trunk has a different tag in each direction (shared/pcaps conformance
// zeek-ldap-modify-request.pcapng), and tshark and Zeek key without it. The
// flow records the first packet's tag.
func TestTable_VLANIsNotPartOfTheKey(t *testing.T) {
	tb := NewTable(16)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	p := udp(cli, srv, 1, 2, 100)
	p.HasVLAN, p.VLAN = true, 81
	tb.Update(&p, 1)
	r := udp(srv, cli, 2, 1, 100)
	r.HasVLAN, r.VLAN = true, 80
	tb.Update(&r, 2)
	tb.Flush()
	if len(ended) != 1 || !ended[0].HasVLAN || ended[0].VLAN != 81 || ended[0].Packets != [2]uint64{1, 1} {
		t.Fatalf("got %+v, want one flow in VLAN 81 with a packet each way", ended)
	}
}

// Later fragments carry no ports: they are charged to the flow of their
// first fragment, also when they arrive before it.
func TestTable_Fragments(t *testing.T) {
	tb := NewTable(16)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	fk := decode.FragKey{Src: cli, Dst: srv, ID: 7, Proto: decode.ProtoUDP}
	first := udp(cli, srv, 123, 137, 1514)
	first.Frag, first.FragKey = decode.FirstFragment, fk
	later := decode.Packet{Proto: decode.ProtoUDP, Src: cli, Dst: srv, Length: 600, Frag: decode.LaterFragment, FragKey: fk}

	tb.Update(&later, 1) // out of order: before its first fragment
	if s := tb.Stats(); s.FragmentsPending != 1 {
		t.Errorf("got %d fragments pending, want 1", s.FragmentsPending)
	}
	tb.Update(&first, 2)
	tb.Update(&later, 3)
	// An orphan: its first fragment never comes.
	orphan := later
	orphan.FragKey.ID = 8
	tb.Update(&orphan, 4)
	tb.Flush()
	if len(ended) != 2 {
		t.Fatalf("got %d flows, want 2: %+v", len(ended), ended)
	}
	var withPorts, noPorts Flow
	for _, f := range ended {
		if f.SrcPort == 123 {
			withPorts = f
		} else {
			noPorts = f
		}
	}
	if withPorts.Packets[0] != 3 || withPorts.Bytes[0] != 1514+600+600 || withPorts.First != 1 {
		t.Errorf("flow with ports: got %v %v first %d, want 3 packets 2714 bytes first 1", withPorts.Packets, withPorts.Bytes, withPorts.First)
	}
	if noPorts.Packets[0] != 1 || noPorts.Bytes[0] != 600 || noPorts.DstPort != 0 {
		t.Errorf("orphan flow: got %+v", noPorts)
	}
	if s := tb.Stats(); s.FragmentsOrphaned != 1 || s.Packets != 4 {
		t.Errorf("stats: got %+v", s)
	}
}

// Many flows through a small table: every packet is accounted for in
// exactly one exported flow, whatever was evicted and when.
func TestTable_NothingLostUnderPressure(t *testing.T) {
	tb := NewTable(64)
	var pkts, bytes uint64
	tb.OnEnd = func(f *Flow) {
		pkts += f.Packets[0] + f.Packets[1]
		bytes += f.Bytes[0] + f.Bytes[1]
	}
	var want uint64
	for i := range 10000 {
		p := udp(cli, srv, uint16(i%500), 53, 100)
		if i%3 == 0 {
			p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
		}
		tb.Update(&p, int64(i))
		want++
	}
	tb.Flush()
	if pkts != want || bytes != 100*want {
		t.Errorf("got %d packets %d bytes, want %d and %d", pkts, bytes, want, 100*want)
	}
	if s := tb.Stats(); s.Evictions == 0 || s.Active != 0 {
		t.Errorf("stats: got %+v, want evictions and an empty table", s)
	}
}

func TestTable_UpdateDoesNotAllocate(t *testing.T) {
	tb := NewTable(1024)
	tb.OnEnd = func(*Flow) {}
	pkts := make([]decode.Packet, 0, 2048)
	for i := range 2048 {
		pkts = append(pkts, udp(cli, srv, uint16(i), 53, 100))
	}
	ts := int64(0)
	for i := range pkts { // warm up: the table reaches its size
		ts++
		tb.Update(&pkts[i], ts)
	}
	n := 0
	allocs := testing.AllocsPerRun(10000, func() {
		ts++
		tb.Update(&pkts[n%len(pkts)], ts) // hits, misses and evictions
		n += 7
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per Update, want 0", allocs)
	}
}

func BenchmarkTable_Update(b *testing.B) {
	run := func(b *testing.B, max, distinct, burst int) {
		tb := NewTable(max)
		tb.OnEnd = func(*Flow) {}
		pkts := make([]decode.Packet, distinct)
		for i := range pkts {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			pkts[i] = udp(a, srv, uint16(i), 443, 1500)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			tb.Update(&pkts[i/burst%len(pkts)], int64(i))
		}
	}
	b.Run("hit", func(b *testing.B) { run(b, 16384, 1000, 1) })
	// Packets in bursts of 8 of one flow, as a TCP window's worth comes.
	b.Run("burst", func(b *testing.B) { run(b, 16384, 1000, 8) })
	b.Run("miss", func(b *testing.B) { run(b, 1<<20, 1<<20, 1) })
	b.Run("evict", func(b *testing.B) { run(b, 1024, 100000, 1) })
}

// Under pressure the longest-idle flow goes first, whichever list it is
// in: a TCP connection that has just sent its first FIN is not exported in
// the middle of its close while an idle UDP flow waits.
func TestTable_EvictsLongestIdleAcrossLists(t *testing.T) {
	tb := NewTable(2)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	d := udp(cli, srv, 5353, 53, 80)
	tb.Update(&d, 1)
	for i, s := range []seg{{true, S, 0}, {false, SA, 0}, {true, FA, 0}} { // closing now
		p := tcpPacket(s, uint32(i))
		tb.Update(&p, int64(10+i))
	}
	n := udp(cli, srv, 5354, 53, 80)
	tb.Update(&n, 20) // full: the idle UDP flow is the one to go
	if len(ended) != 1 || ended[0].Proto != decode.ProtoUDP || ended[0].SrcPort != 5353 {
		t.Fatalf("evicted %+v, want the UDP flow idle since t=1", ended)
	}
}

// A flow's id does not change when an earlier packet arrives late (merged
// captures are not always in time order).
func TestTable_IDIsStable(t *testing.T) {
	tb := NewTable(4)
	var ended []Flow
	tb.OnEnd = func(f *Flow) { ended = append(ended, *f) }
	p := udp(cli, srv, 1, 2, 100)
	h := tb.Update(&p, 1000)
	id := tb.ID(h)
	tb.Update(&p, 500)
	if tb.ID(h) != id {
		t.Errorf("id changed from %x to %x", id, tb.ID(h))
	}
	tb.Flush()
	if ended[0].ID != id || ended[0].First != 500 {
		t.Errorf("got id %x first %d, want %x and 500", ended[0].ID, ended[0].First, id)
	}
}

func TestFlow_AppendJSONDoesNotAllocate(t *testing.T) {
	tb := NewTable(4)
	var f Flow
	tb.OnEnd = func(x *Flow) { f = *x }
	p := tcpPacket(seg{true, S, 0}, 1)
	tb.Update(&p, 1)
	tb.Flush()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(1000, func() { buf = f.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

func TestSummary_IsOneCacheLine(t *testing.T) {
	if got := unsafe.Sizeof(Summary{}); got != 64 {
		t.Errorf("got %d bytes, want 64", got)
	}
}

func TestTable_UpdateSummaryDoesNotAllocate(t *testing.T) {
	tb := NewTable(1024)
	tb.OnEnd = func(*Flow) {}
	sums := make([]Summary, 2048)
	ts := int64(0)
	for i := range sums {
		p := udp(cli, srv, uint16(i), 53, 100)
		ts++
		if !sums[i].Set(&p, ts) {
			t.Fatal("Set: got false for a whole datagram, want true")
		}
		tb.UpdateSummary(&sums[i])
	}
	n := 0
	allocs := testing.AllocsPerRun(10000, func() {
		s := &sums[n%len(sums)]
		ts++
		s.ts = ts
		tb.UpdateSummary(s) // hits, misses and evictions
		n += 7
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per UpdateSummary, want 0", allocs)
	}
}
