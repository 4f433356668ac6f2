package live

import (
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// seen sets a flow's capture times, relative to t.
func seen(f record.Flow, t time.Time, first, last time.Duration) record.Flow {
	f.FirstSeen, f.LastSeen = record.Time{Time: t.Add(first)}, record.Time{Time: t.Add(last)}
	return f
}

type ioRates struct{ pin, pout, bin, bout float64 }

func inOutOf(st Stats) ioRates {
	return ioRates{st.PacketsInPerSecond, st.PacketsOutPerSecond, st.BytesInPerSecond, st.BytesOutPerSecond}
}

// TestState_InOutRates: in and out rates come from what each flow record
// grew by over the one the view held, by direction; internal and unknown
// flows count in neither; a flow the view does not hold counts only when
// it is new.
func TestState_InOutRates(t *testing.T) {
	c := newClock()
	s := newState(c)
	s.RateWindow = 10 * time.Second
	t0 := c.Now()

	out1 := func(ps, bs, pr, br uint64) record.Flow {
		return seen(flow("out1", "tcp", record.DirOutbound, ps, bs, pr, br), t0, -5*time.Second, 0)
	}
	in1 := func(ps, bs, pr, br uint64) record.Flow {
		return seen(flow("in1", "tcp", record.DirInbound, ps, bs, pr, br), t0, -5*time.Second, 0)
	}
	internal := func(n uint64) record.Flow {
		return seen(flow("int1", "udp", record.DirInternal, n, n*100, n, n*100), t0, -5*time.Second, 0)
	}
	unknown := seen(flow("unk1", "icmp", "", 50, 5000, 50, 5000), t0, -5*time.Second, 0)

	// t0: four new flows. Their traffic is at the window's first point,
	// the base of every rate below.
	s.Apply("cap", Batch{Seq: 1, Flows: []record.Flow{out1(10, 1000, 5, 4000), in1(3, 300, 7, 7000), internal(100), unknown},
		ReceivedAt: t0})

	// t0+1 s: out1 grows by 10/1000 sent, 10/10000 received; in1 ends
	// after 1/100 more sent (by the remote originator: in) and 2/2000
	// received (out); the internal flow grows by 100.
	c.Advance(time.Second)
	s.Apply("cap", Batch{Seq: 2, Flows: []record.Flow{out1(20, 2000, 15, 14000), internal(200)},
		Ended: []record.Flow{in1(4, 400, 9, 9000)}, ReceivedAt: c.Now()})
	want := ioRates{pin: 10 + 1, pout: 10 + 2, bin: 10000 + 100, bout: 1000 + 2000} // over 1 s
	if got := inOutOf(s.Stats()); got != want {
		t.Errorf("after 1 s: got %+v, want %+v", got, want)
	}

	// t0+10 s: out1 ends with 5/500 more sent; a new outbound flow (it
	// began after every record seen) counts whole: 1/100 out, 1/50 in;
	// an inbound flow the view never held that began before (evicted,
	// say) counts nothing.
	c.Advance(9 * time.Second)
	fresh := seen(flow("out2", "udp", record.DirOutbound, 1, 100, 1, 50), t0, 9*time.Second, 10*time.Second)
	old := seen(flow("old", "tcp", record.DirInbound, 1e6, 1e9, 1e6, 1e9), t0, -100*time.Second, 10*time.Second)
	s.Apply("cap", Batch{Seq: 3, Flows: []record.Flow{fresh, old}, Ended: []record.Flow{out1(25, 2500, 15, 14000)},
		ReceivedAt: c.Now()})
	st := s.Stats()
	want = ioRates{pin: (11 + 1) / 10.0, pout: (12 + 5 + 1) / 10.0, bin: (10100 + 50) / 10.0, bout: (3000 + 500 + 100) / 10.0}
	if got := inOutOf(st); got != want {
		t.Errorf("after 10 s: got %+v, want %+v", got, want)
	}

	// The old flow is held now: its growth counts.
	c.Advance(time.Second)
	old.PacketsSent += 4
	old.BytesSent += 4000
	old.LastSeen.Time = old.LastSeen.Add(time.Second)
	s.Apply("cap", Batch{Seq: 4, Flows: []record.Flow{old}, ReceivedAt: c.Now()})
	// The window is (t0+1 s, t0+11 s]: batches 3 and 4.
	want = ioRates{pin: (1 + 4) / 10.0, pout: (5 + 1) / 10.0, bin: (50 + 4000) / 10.0, bout: (500 + 100) / 10.0}
	if got := inOutOf(s.Stats()); got != want {
		t.Errorf("after 11 s: got %+v, want %+v", got, want)
	}

	// Silence: the rates fall to zero once the window has passed.
	c.Advance(11 * time.Second)
	if got := inOutOf(s.Stats()); got != (ioRates{}) {
		t.Errorf("after silence: got %+v, want zero", got)
	}
}

// TestState_InOutRates_baseline: the first batch seen of a capture
// already running (seq > 1) holds flows whose counters began before; it
// sets the baseline, and only the growth after it counts.
func TestState_InOutRates_baseline(t *testing.T) {
	c := newClock()
	s := newState(c)
	t0 := c.Now()
	long := func(ps, bs uint64) record.Flow {
		return seen(flow("long", "tcp", record.DirOutbound, ps, bs, 0, 0), t0, -time.Hour, 0)
	}
	s.Apply("cap", Batch{Seq: 500, Flows: []record.Flow{long(1e6, 1e9)}, ReceivedAt: t0})
	c.Advance(2 * time.Second)
	s.Apply("cap", Batch{Seq: 501, Flows: []record.Flow{long(1e6+20, 1e9+2000)}, ReceivedAt: c.Now()})
	want := ioRates{pout: 10, bout: 1000}
	if got := inOutOf(s.Stats()); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
