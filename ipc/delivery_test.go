package ipc_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// capture simulates a capturer's flow table: flows start, their counters
// grow, they end; each flush yields a batch. It remembers the truth: the
// latest record it sent of each flow, and every sample.
type capture struct {
	rnd     *rand.Rand
	active  []record.Flow
	nextID  int
	flushes int
	latest  map[string]record.Flow
	samples []record.PacketSample
	stats   record.CaptureStats
}

func newCapture(seed uint64, flows int) *capture {
	c := &capture{rnd: rand.New(rand.NewPCG(seed, 1)), latest: make(map[string]record.Flow)}
	for range flows {
		c.start()
	}
	return c
}

func (c *capture) start() {
	f := ipctest.Flow(c.nextID)
	c.nextID++
	f.PacketsSent, f.BytesSent, f.PacketsReceived, f.BytesReceived = 0, 0, 0, 0
	c.active = append(c.active, f)
}

// flush returns the next batch: about a third of the flows updated, a few
// ended and replaced, up to maxSamples samples.
func (c *capture) flush(maxSamples int) *ipc.Batch {
	c.flushes++
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(c.flushes) * time.Second)
	b := &ipc.Batch{}
	for i := range c.active {
		if c.rnd.IntN(3) != 0 {
			continue
		}
		f := &c.active[i]
		p, q := uint64(c.rnd.IntN(50)+1), uint64(c.rnd.IntN(40))
		f.PacketsSent += p
		f.BytesSent += p * uint64(60+c.rnd.IntN(1400))
		f.PacketsReceived += q
		f.BytesReceived += q * 60
		f.LastSeen = record.Time{Time: now}
		c.stats.Packets += p + q
		b.Flows = append(b.Flows, *f)
	}
	for range c.rnd.IntN(4) {
		i := c.rnd.IntN(len(c.active))
		f := c.active[i]
		f.EndReason, f.State = record.EndClosed, "SF"
		b.Ended = append(b.Ended, f)
		c.active = slices.Delete(c.active, i, i+1)
		c.start()
	}
	// A flow both updated and ended in this batch: its final record
	// supersedes the update, as a flow table's flush would have it.
	for _, f := range b.Flows {
		c.latest[f.ID] = f
	}
	for _, f := range b.Ended {
		c.latest[f.ID] = f
	}
	for range c.rnd.IntN(maxSamples + 1) {
		s := ipctest.Sample(c.rnd.IntN(c.nextID))
		s.Timestamp = now.UnixMilli() + int64(len(c.samples))
		b.Samples = append(b.Samples, s)
		c.samples = append(c.samples, s)
	}
	c.stats.Flows = uint64(c.nextID)
	c.stats.ActiveFlows = uint64(len(c.active))
	b.Stats = c.stats
	return b
}

func (c *capture) totals() (packets, bytes uint64) {
	in := ipctest.Instance{Flows: c.latest}
	return in.Totals()
}

// chaos disturbs a delivery: it cuts proxied connections from either
// side, restarts the server over the same handler, and stops when told.
type chaos struct {
	t       *testing.T
	path    string
	h       *ipctest.Handler
	proxy   *ipctest.Proxy
	rnd     *rand.Rand
	mu      sync.Mutex
	server  *ipc.Server // nil while down
	stop    chan struct{}
	done    chan struct{}
	cuts    int
	restart int
	// servers' counters, summed over restarts
	batches, duplicates uint64
}

func (c *chaos) startServer() {
	s := &ipc.Server{Path: c.path, Handler: c.h}
	if err := s.Start(context.Background()); err != nil {
		c.t.Errorf("start server: %v", err)
		return
	}
	c.mu.Lock()
	c.server = s
	c.mu.Unlock()
}

func (c *chaos) stopServer() {
	c.mu.Lock()
	s := c.server
	c.server = nil
	c.mu.Unlock()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		c.t.Errorf("close server: %v", err)
	}
	st := s.Stats()
	c.batches += st.Batches
	c.duplicates += st.Duplicates
}

// run disturbs until stop is closed. restarts says whether to restart the
// server too.
func (c *chaos) run(restarts bool) {
	defer close(c.done)
	for {
		t := time.NewTimer(time.Duration(5+c.rnd.IntN(30)) * time.Millisecond)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
		switch n := c.rnd.IntN(10); {
		case n < 4:
			c.cuts += c.proxy.CutClientSide()
		case n < 8:
			c.cuts += c.proxy.CutServerSide()
		case restarts:
			c.stopServer()
			c.restart++
			c.startServer()
		}
	}
}

// TestDelivery_ExactlyOnceUnderChaos is the at-least-once property test:
// 2000 batches sent while connections are cut mid-frame from either side,
// the server restarts over the same store, and commits fail or lag at
// random. In the end the server holds exactly what the capture sent: the
// latest record of every flow, every sample in order, the last stats; and
// no (instance, seq) was applied twice.
func TestDelivery_ExactlyOnceUnderChaos(t *testing.T) {
	const batches = 2000
	path := ipctest.SocketPath(t)
	proxy := ipctest.StartProxy(t, path)
	rnd := rand.New(rand.NewPCG(42, 7))
	var applyFailures atomic.Int64
	var rndMu sync.Mutex
	h := &ipctest.Handler{BeforeApply: func(ctx context.Context, _ ipc.Peer, _ *ipc.Batch) error {
		rndMu.Lock()
		fail, lag := rnd.IntN(40) == 0, time.Duration(rnd.IntN(3))*time.Millisecond
		rndMu.Unlock()
		if fail {
			applyFailures.Add(1)
			return errors.New("injected commit failure")
		}
		if lag > 0 { // a slow commit, not a synchronisation
			select {
			case <-time.After(lag):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	ch := &chaos{t: t, path: path, h: h, proxy: proxy, rnd: rand.New(rand.NewPCG(3, 4)),
		stop: make(chan struct{}), done: make(chan struct{})}
	ch.startServer()
	defer ch.stopServer()

	c := startClient(t, proxy.Path, func(c *ipc.Client) {
		c.Hello.InstanceID = "chaos"
		c.MaxPendingBytes = 256 << 20 // nothing may be dropped in this test
		c.AckTimeout = 2 * time.Second
	})
	capt := newCapture(1, 200)
	go ch.run(true)
	pace := time.NewTicker(time.Millisecond) // spread the batches over the chaos
	for range batches {
		<-pace.C
		send(t, c, capt.flush(10))
	}
	pace.Stop()
	close(ch.stop)
	<-ch.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close client: %v (%+v)", err, c.Stats())
	}

	in := h.Instance("chaos")
	st := c.Stats()
	ch.stopServer()
	t.Logf("%d batches; %d cuts, %d server restarts, %d commit failures; %d sessions; server applied %d, acked %d duplicates",
		batches, ch.cuts, ch.restart, applyFailures.Load(), st.Sessions, ch.batches, ch.duplicates)
	if ch.cuts < 10 || ch.restart < 3 || st.Sessions < 10 {
		t.Errorf("too little chaos to prove anything: %d cuts, %d restarts, %d sessions", ch.cuts, ch.restart, st.Sessions)
	}
	checkDelivered(t, capt, in, st.Dropped)
	if st.Dropped != (ipc.DropStats{}) {
		t.Errorf("dropped %+v, want nothing", st.Dropped)
	}
	if len(in.Seqs) != batches {
		t.Errorf("applied %d batches, want %d", len(in.Seqs), batches)
	}
}

// checkDelivered compares what the handler holds with what the capture
// sent, allowing only the samples the client reported dropped.
func checkDelivered(t *testing.T, capt *capture, in ipctest.Instance, dropped ipc.DropStats) {
	t.Helper()
	if len(in.Twice) != 0 {
		t.Errorf("seqs applied twice: %v", in.Twice)
	}
	if !slices.IsSorted(in.Seqs) {
		t.Errorf("seqs applied out of order")
	}
	wp, wb := capt.totals()
	gp, gb := in.Totals()
	t.Logf("%d flows, %d packets, %d bytes; %d samples sent, %d received, %d reported dropped",
		len(capt.latest), wp, wb, len(capt.samples), len(in.Samples), dropped.SamplesDropped)
	if gp != wp || gb != wb {
		t.Errorf("server totals %d packets, %d bytes; capture sent %d, %d", gp, gb, wp, wb)
	}
	if diff := cmp.Diff(capt.latest, in.Flows, equate); diff != "" {
		t.Errorf("latest flow records (-sent +held):\n%s", diff)
	}
	if uint64(len(in.Samples))+dropped.SamplesDropped != uint64(len(capt.samples)) {
		t.Errorf("samples: %d received + %d reported dropped != %d sent", len(in.Samples), dropped.SamplesDropped, len(capt.samples))
	}
	if dropped.SamplesDropped == 0 {
		if diff := cmp.Diff(capt.samples, in.Samples, equate); diff != "" {
			t.Errorf("samples (-sent +held):\n%s", diff)
		}
	} else if !isSubsequence(in.Samples, capt.samples) {
		t.Errorf("the samples received are not the samples sent, in order, less some")
	}
	if diff := cmp.Diff(capt.stats, in.Stats, equate); diff != "" {
		t.Errorf("last stats (-sent +held):\n%s", diff)
	}
	if in.Dropped != dropped {
		t.Errorf("server holds dropped %+v, client counted %+v", in.Dropped, dropped)
	}
}

func isSubsequence(sub, seq []record.PacketSample) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}

// TestDelivery_TinyBoundServerDown: with a pending bound a fraction of what an
// absent server makes the client hold, the client drops samples and
// coalesces batches, yet the server ends with every flow's exact counters,
// and the samples missing are exactly those reported dropped.
func TestDelivery_TinyBoundServerDown(t *testing.T) {
	path := ipctest.SocketPath(t)
	proxy := ipctest.StartProxy(t, path)
	h := &ipctest.Handler{}
	ch := &chaos{t: t, path: path, h: h, proxy: proxy, rnd: rand.New(rand.NewPCG(5, 6)),
		stop: make(chan struct{}), done: make(chan struct{})}
	ch.startServer()
	defer ch.stopServer()
	const bound = 1 << 20
	c := startClient(t, proxy.Path, func(c *ipc.Client) {
		c.Hello.InstanceID = "tiny"
		c.MaxPendingBytes = bound
		c.MaxBatchBytes = 64 << 10
	})
	capt := newCapture(2, 100)
	go ch.run(false) // cuts only
	generated := 0   // encoded bytes sent
	enc := ipc.NewEncoder()
	sendSome := func(n int) {
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		for range n {
			<-pace.C
			b := capt.flush(30)
			b.Seq = 1
			f, err := enc.Encode(b)
			if err != nil {
				t.Fatal(err)
			}
			generated += len(f)
			send(t, c, b)
			if st := c.Stats(); st.PendingBytes > bound {
				t.Fatalf("pending %d bytes, over the bound %d", st.PendingBytes, bound)
			}
		}
	}
	sendSome(200)
	ch.stopServer()
	before, generatedBefore := c.Stats(), generated
	sendSome(600)
	down := c.Stats()
	t.Logf("while the server was down: %d bytes of batches sent, %d coalesced, %d samples dropped, %d bytes pending",
		generated-generatedBefore, down.Dropped.BatchesCoalesced-before.Dropped.BatchesCoalesced,
		down.Dropped.SamplesDropped-before.Dropped.SamplesDropped, down.PendingBytes)
	if generated-generatedBefore < 4*bound {
		t.Errorf("only %d bytes sent while the server was down; want at least 4 times the bound", generated-generatedBefore)
	}
	ch.startServer()
	sendSome(200)
	close(ch.stop)
	<-ch.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close client: %v (%+v)", err, c.Stats())
	}

	st := c.Stats()
	t.Logf("%d cuts; %d sessions; dropped %+v", ch.cuts, st.Sessions, st.Dropped)
	d := st.Dropped
	if d.BatchesCoalesced == 0 || d.SamplesDropped == 0 {
		t.Errorf("dropped %+v: the bound was never reached, the test proves nothing", d)
	}
	if d.UpdatesDropped != 0 || d.EndedDropped != 0 {
		t.Errorf("dropped %+v: flow records lost, the bound is too small for this test", d)
	}
	checkDelivered(t, capt, h.Instance("tiny"), d)
}
