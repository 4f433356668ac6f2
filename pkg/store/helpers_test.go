package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// openTest opens a store in a fresh temporary directory, closed at cleanup.
func openTest(tb testing.TB, opts Options) *DB {
	tb.Helper()
	return openAt(tb, filepath.Join(tb.TempDir(), "traffic.db"), opts)
}

// openAt opens the store at path, closed at cleanup.
func openAt(tb testing.TB, path string, opts Options) *DB {
	tb.Helper()
	db, err := Open(tb.Context(), path, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// mustApply applies b and fails the test unless it was applied.
func mustApply(tb testing.TB, db *DB, c Capturer, b *Batch) {
	tb.Helper()
	ok, err := db.ApplyBatch(tb.Context(), c, b)
	if err != nil {
		tb.Fatalf("ApplyBatch(seq %d): %v", b.Seq, err)
	}
	if !ok {
		tb.Fatalf("ApplyBatch(seq %d): not applied", b.Seq)
	}
}

// sim simulates a capturer: a population of active flows whose cumulative
// counters grow, some ending and being replaced each batch, with sampled
// packets, advancing capture time by one second per batch. Deterministic
// for a seed.
type sim struct {
	rng     *rand.Rand
	now     time.Time
	active  []record.Flow
	nextID  uint64
	seq     uint64
	stats   record.CaptureStats
	cap     Capturer
	sampleN int64
	idBase  uint64 // keeps the flow ids of sims with different seeds apart
}

var simStart = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newSim(seed uint64, active int) *sim {
	s := &sim{
		rng:    rand.New(rand.NewPCG(seed, seed^0x5eed)),
		now:    simStart,
		idBase: seed << 32,
		cap:    Capturer{InstanceID: fmt.Sprintf("inst-%d", seed), Hostname: "h", Software: "test", Interface: "eth0", LinkType: 1},
	}
	for range active {
		s.active = append(s.active, s.newFlow())
	}
	return s
}

var (
	simProtos = []struct {
		name string
		num  uint8
	}{{"tcp", 6}, {"tcp", 6}, {"tcp", 6}, {"udp", 17}, {"udp", 17}, {"icmp", 1}, {"icmpv6", 58}, {"sctp", 132}, {"47", 47}}
	simStates = []string{"S0", "S1", "SF", "REJ", "RSTO", "OTH"}
	simDirs   = []string{record.DirInbound, record.DirOutbound, record.DirInternal, ""}
	simPorts  = []uint16{22, 53, 80, 443, 5432, 8080, 9000}
)

// addr returns a random address: IPv4 in 10.0.0.0/16 and 192.168.1.0/24,
// IPv6 in 2001:db8::/48 and fd00::/64, and the odd 4in6 address.
func (s *sim) addr() string {
	switch s.rng.IntN(10) {
	case 0, 1, 2, 3:
		return fmt.Sprintf("10.0.%d.%d", s.rng.IntN(4), s.rng.IntN(256))
	case 4, 5:
		return fmt.Sprintf("192.168.1.%d", s.rng.IntN(256))
	case 6, 7:
		return fmt.Sprintf("2001:db8:0:%x::%x", s.rng.IntN(4), s.rng.IntN(65536))
	case 8:
		return fmt.Sprintf("fd00::%x", s.rng.IntN(256))
	default:
		return fmt.Sprintf("::ffff:10.0.0.%d", s.rng.IntN(256))
	}
}

func (s *sim) newFlow() record.Flow {
	s.nextID++
	p := simProtos[s.rng.IntN(len(simProtos))]
	f := record.Flow{
		ID:          strconv.FormatUint((s.idBase+s.nextID)*0x9e3779b97f4a7c15, 16),
		CommunityID: "1:" + strconv.FormatUint(s.nextID, 36),
		Proto:       p.name,
		ProtoNum:    p.num,
		SrcIP:       s.addr(),
		DstIP:       s.addr(),
		FirstSeen:   record.Time{Time: s.now.Add(-time.Duration(s.rng.IntN(1e9)))},
		State:       simStates[s.rng.IntN(len(simStates))],
		Direction:   simDirs[s.rng.IntN(len(simDirs))],
		History:     "ShAD",
		TCPFlags:    "SA",
	}
	if p.num == 6 || p.num == 17 || p.num == 132 {
		f.SrcPort = uint16(32768 + s.rng.IntN(28000))
		f.DstPort = simPorts[s.rng.IntN(len(simPorts))]
		if s.rng.IntN(4) == 0 {
			f.SrcPort, f.DstPort = f.DstPort, f.SrcPort
		}
	}
	if s.rng.IntN(8) == 0 {
		f.VLAN = uint16(1 + s.rng.IntN(4094))
	}
	f.LastSeen = f.FirstSeen
	s.grow(&f)
	return f
}

// grow adds traffic to f and moves its last_seen to now.
func (s *sim) grow(f *record.Flow) {
	ps, pr := uint64(1+s.rng.IntN(20)), uint64(s.rng.IntN(20))
	f.PacketsSent += ps
	f.BytesSent += ps * uint64(60+s.rng.IntN(1400))
	f.PacketsReceived += pr
	f.BytesReceived += pr * uint64(60+s.rng.IntN(1400))
	f.LastSeen = record.Time{Time: s.now.Add(-time.Duration(s.rng.IntN(1e9)))}
	if f.LastSeen.Before(f.FirstSeen.Time) {
		f.LastSeen = f.FirstSeen
	}
}

// batch advances the capture by one second and returns a batch with
// nFlows updated active flows (nEnded of them ended and replaced by new
// ones) and nSamples samples.
func (s *sim) batch(nFlows, nEnded, nSamples int) *Batch {
	s.now = s.now.Add(time.Second)
	s.seq++
	b := &Batch{Seq: s.seq, ReceivedAt: s.now}
	nFlows = min(nFlows, len(s.active))
	start := s.rng.IntN(len(s.active))
	for i := range nFlows {
		k := (start + i) % len(s.active)
		f := &s.active[k]
		s.grow(f)
		s.stats.Packets += f.PacketsSent
		if i < nEnded {
			f.EndReason = record.EndClosed
			f.State = "SF"
			b.Ended = append(b.Ended, *f)
			s.active[k] = s.newFlow()
			b.Flows = append(b.Flows, s.active[k])
			continue
		}
		b.Flows = append(b.Flows, *f)
	}
	for range nSamples {
		f := &s.active[s.rng.IntN(len(s.active))]
		s.sampleN++
		b.Samples = append(b.Samples, record.PacketSample{
			Timestamp: s.now.UnixMilli() - 1000 + int64(s.rng.IntN(1000)),
			SrcIP:     f.SrcIP, DstIP: f.DstIP, SrcPort: f.SrcPort, DstPort: f.DstPort,
			Protocol: f.Proto, Length: uint32(60 + s.rng.IntN(1400)), FlowID: f.ID,
		})
	}
	s.stats.Flows = s.nextID
	s.stats.ActiveFlows = uint64(len(s.active))
	b.Stats = s.stats
	return b
}

// scaled returns n, or race under the race detector (SQLite runs about 20
// times slower there): the long tests keep their shape with less data.
func scaled(n, race int) int {
	if raceEnabled {
		return race
	}
	return n
}

// ctxT is t.Context for helpers without a testing.TB at hand.
func ctxT(tb testing.TB) context.Context { return tb.Context() }

// mustPrefix parses a prefix or panics (test tables).
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
