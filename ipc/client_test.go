package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// startClient starts a client of path with fast backoff, configured by
// opts, and closes it at cleanup.
func startClient(t testing.TB, path string, opts ...func(*ipc.Client)) *ipc.Client {
	t.Helper()
	c := &ipc.Client{Path: path, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: testLogger(t)}
	for _, o := range opts {
		o(c)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start client: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// closeClient closes c, failing the test if anything stays unacknowledged
// after wait.
func closeClient(t testing.TB, c *ipc.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close client: %v (stats %+v)", err, c.Stats())
	}
}

func send(t testing.TB, c *ipc.Client, b *ipc.Batch) {
	t.Helper()
	if err := c.Send(b); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func TestClient_DeliversInOrder(t *testing.T) {
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	startServer(t, path, h)
	c := startClient(t, path, func(c *ipc.Client) { c.Hello.InstanceID = "in-order" })
	for i := range 50 {
		b := ipctest.Batch(99, 5, 1, 2) // the seq given is ignored
		b.Stats.Packets = uint64(i)
		send(t, c, b)
	}
	closeClient(t, c)
	in := h.Instance("in-order")
	for i, seq := range in.Seqs {
		if seq != uint64(i+1) {
			t.Fatalf("applied seqs %v, want 1..50", in.Seqs)
		}
	}
	if len(in.Seqs) != 50 || in.Stats.Packets != 49 || len(in.Samples) != 100 {
		t.Errorf("applied %d batches, last stats %d packets, %d samples; want 50, 49, 100", len(in.Seqs), in.Stats.Packets, len(in.Samples))
	}
	if st := c.Stats(); st.PendingBatches != 0 || st.AckedSeq != 50 || st.Sessions != 1 {
		t.Errorf("client stats %+v", st)
	}
	if err := c.Send(ipctest.Batch(1, 1, 0, 0)); !errors.Is(err, ipc.ErrClosed) {
		t.Errorf("send after close: %v, want ErrClosed", err)
	}
}

// TestClient_ServerStartsLater: the client buffers while the server is
// absent and delivers once it appears.
func TestClient_ServerStartsLater(t *testing.T) {
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	c := startClient(t, path, func(c *ipc.Client) { c.Hello.InstanceID = "early" })
	for range 5 {
		send(t, c, ipctest.Batch(0, 3, 1, 1))
	}
	if st := c.Stats(); st.Connected || st.PendingBatches != 5 {
		t.Errorf("stats %+v, want 5 pending and not connected", st)
	}
	startServer(t, path, h)
	closeClient(t, c)
	if in := h.Instance("early"); len(in.Seqs) != 5 {
		t.Errorf("applied %v, want 5 batches", in.Seqs)
	}
}

// TestClient_ResendsWhatFailed: a batch whose Apply fails is resent after
// the reconnect, and applied once.
func TestClient_ResendsWhatFailed(t *testing.T) {
	path := ipctest.SocketPath(t)
	calls := 0
	h := &ipctest.Handler{}
	h.BeforeApply = func(context.Context, ipc.Peer, *ipc.Batch) error {
		calls++ // Apply calls of one instance never run concurrently
		if calls%3 == 0 {
			return errors.New("database is locked")
		}
		return nil
	}
	s := startServer(t, path, h)
	c := startClient(t, path, func(c *ipc.Client) { c.Hello.InstanceID = "retry" })
	for range 20 {
		send(t, c, ipctest.Batch(0, 2, 0, 1))
	}
	closeClient(t, c)
	in := h.Instance("retry")
	if len(in.Seqs) != 20 || len(in.Twice) != 0 || len(in.Samples) != 20 {
		t.Errorf("applied %v (twice %v), %d samples; want 1..20 once, 20 samples", in.Seqs, in.Twice, len(in.Samples))
	}
	if st := s.Stats(); st.ApplyErrors == 0 {
		t.Errorf("server stats %+v, want apply errors", st)
	}
}

func TestClient_VersionRefused(t *testing.T) {
	path := ipctest.SocketPath(t)
	startServer(t, path, &ipctest.Handler{})
	c := startClient(t, path, func(c *ipc.Client) { c.Hello.VersionMin, c.Hello.VersionMax = 2, 3 })
	send(t, c, ipctest.Batch(0, 1, 0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Close(ctx); err == nil {
		t.Fatal("close succeeded, want the batch unacknowledged")
	}
	var e *ipc.Error
	if err := c.Stats().LastError; !errors.As(err, &e) || e.Code != ipc.ErrCodeVersion || e.VersionMax != 1 {
		t.Errorf("last error %v, want a version error naming server version 1", err)
	}
}

// fakeServer accepts connections on path and hands them over, for tests
// that play the server by hand.
func fakeServer(t *testing.T, path string) <-chan *ipctest.Conn {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *ipctest.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- ipctest.Wrap(t, nc)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return conns
}

func next(t *testing.T, conns <-chan *ipctest.Conn) *ipctest.Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(wait):
		t.Fatal("no connection")
		return nil
	}
}

func read[T ipc.Message](t *testing.T, c *ipctest.Conn) T {
	t.Helper()
	m, err := c.Read(wait)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("got %#v, want %T", m, v)
	}
	return v
}

// TestClient_RefusesForeignVersion: a server choosing a version outside the
// client's range is dropped.
func TestClient_RefusesForeignVersion(t *testing.T) {
	path := ipctest.SocketPath(t)
	conns := fakeServer(t, path)
	c := startClient(t, path)
	s1 := next(t, conns)
	read[*ipc.Hello](t, s1)
	s1.Send(ipctest.Encode(t, &ipc.HelloAck{Version: 9}))
	s2 := next(t, conns) // the client tries again
	read[*ipc.Hello](t, s2)
	if err := c.Stats().LastError; err == nil || !errors.Is(err, ipc.ErrMalformed) {
		t.Errorf("last error %v, want a version complaint", err)
	}
}

// TestClient_AckTimeout: a server that reads batches but never acks is
// dropped after AckTimeout, and the batch is resent on the next connection.
func TestClient_AckTimeout(t *testing.T) {
	path := ipctest.SocketPath(t)
	conns := fakeServer(t, path)
	c := startClient(t, path, func(c *ipc.Client) { c.AckTimeout = 200 * time.Millisecond })
	send(t, c, ipctest.Batch(0, 1, 0, 0))
	start := time.Now()
	s1 := next(t, conns)
	read[*ipc.Hello](t, s1)
	s1.Send(ipctest.Encode(t, &ipc.HelloAck{Version: 1}))
	if b := read[*ipc.Batch](t, s1); b.Seq != 1 {
		t.Fatalf("batch %d, want 1", b.Seq)
	}
	s2 := next(t, conns)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("reconnected after %v, before AckTimeout", d)
	}
	read[*ipc.Hello](t, s2)
	s2.Send(ipctest.Encode(t, &ipc.HelloAck{Version: 1}))
	if b := read[*ipc.Batch](t, s2); b.Seq != 1 {
		t.Fatalf("resent batch %d, want 1", b.Seq)
	}
	s2.Send(ipctest.Encode(t, &ipc.Ack{Seq: 1}))
	closeClient(t, c)
}

// TestClient_SplitsLargeBatches: a batch over MaxBatchBytes arrives whole,
// in several frames, Done on the last of them only.
func TestClient_SplitsLargeBatches(t *testing.T) {
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	startServer(t, path, h)
	c := startClient(t, path, func(c *ipc.Client) {
		c.Hello.InstanceID = "big"
		c.MaxBatchBytes = 256 << 10
		c.MaxPendingBytes = 64 << 20
	})
	b := ipctest.Batch(0, 30000, 5000, 20000)
	b.Done = true
	send(t, c, b)
	closeClient(t, c)
	in := h.Instance("big")
	if len(in.Flows) != 35000 || len(in.Samples) != 20000 || len(in.Seqs) < 10 {
		t.Errorf("%d flows, %d samples in %d batches; want 35000, 20000 in at least 10", len(in.Flows), len(in.Samples), len(in.Seqs))
	}
	if want := []uint64{in.LastSeq}; !slices.Equal(in.DoneSeqs, want) {
		t.Errorf("done on batches %v of %v, want %v: the last only", in.DoneSeqs, in.Seqs, want)
	}
	for _, f := range b.Ended {
		if got := in.Flows[f.ID]; got.EndReason != record.EndClosed {
			t.Fatalf("flow %s: %+v, want its final record", f.ID, got)
		}
	}
}

func TestClient_RefusesInvalidBatches(t *testing.T) {
	c := startClient(t, ipctest.SocketPath(t))
	noID := ipctest.Batch(0, 1, 0, 0)
	noID.Flows[0].ID = ""
	long := ipctest.Batch(0, 1, 0, 0)
	long.Flows[0].History = string(make([]byte, ipc.DefaultMaxString+1))
	if err := c.Send(noID); !errors.Is(err, ipc.ErrInvalid) {
		t.Errorf("flow without id: %v, want ErrInvalid", err)
	}
	if err := c.Send(long); !errors.Is(err, ipc.ErrTooLarge) {
		t.Errorf("long string: %v, want ErrTooLarge", err)
	}
	if st := c.Stats(); st.PendingBatches != 0 || st.LastSeq != 0 {
		t.Errorf("stats %+v, want nothing queued", st)
	}
}

// TestClient_InstanceIDReused: if the server already holds seqs beyond
// this client's for its instance id, the client renumbers instead of
// having its batches taken for duplicates.
func TestClient_InstanceIDReused(t *testing.T) {
	path := ipctest.SocketPath(t)
	h := &ipctest.Handler{}
	h.Apply(t.Context(), ipc.Peer{Hello: ipc.Hello{InstanceID: "reused"}}, &ipc.Batch{Seq: 100})
	startServer(t, path, h)
	c := startClient(t, path, func(c *ipc.Client) { c.Hello.InstanceID = "reused" })
	for i := range 3 {
		b := ipctest.Batch(0, 1, 0, 0)
		b.Flows[0].ID = fmt.Sprint("new-", i)
		send(t, c, b)
	}
	closeClient(t, c)
	in := h.Instance("reused")
	if in.LastSeq != 103 || len(in.Flows) != 3 {
		t.Errorf("last seq %d, %d flows; want 103, 3", in.LastSeq, len(in.Flows))
	}
}

// TestClient_PendingBoundOrder drives the client with the server absent
// through each step of Send's degradation order, checking the counters at
// each step, and then that the server receives exactly what was not
// counted as dropped.
func TestClient_PendingBoundOrder(t *testing.T) {
	path := ipctest.SocketPath(t)
	c := startClient(t, path, func(c *ipc.Client) {
		c.Hello.InstanceID = "pressure"
		c.MaxPendingBytes = 64 << 10
		c.MaxBatchBytes = 64 << 10
	})
	sentSamples := 0
	counters := map[string]record.Flow{} // latest record sent, by flow id
	endedPackets := uint64(0)
	seq := 0
	batch := func(active, firstActive, ended, samples int) *ipc.Batch {
		seq++
		b := &ipc.Batch{Stats: record.CaptureStats{Packets: uint64(seq)}}
		for i := range active {
			f := ipctest.Flow(firstActive + i)
			f.PacketsSent, f.LastSeen.Time = uint64(seq), f.LastSeen.Add(time.Duration(seq)*time.Second)
			b.Flows = append(b.Flows, f)
			counters[f.ID] = f
		}
		for i := range ended {
			f := ipctest.Flow(1_000_000 + seq*1000 + i)
			f.EndReason = record.EndIdle
			b.Ended = append(b.Ended, f)
			counters[f.ID] = f
			endedPackets += f.PacketsSent + f.PacketsReceived
		}
		for i := range samples {
			b.Samples = append(b.Samples, ipctest.Sample(i))
		}
		sentSamples += samples
		return b
	}

	// 1. Samples go first: when batches first coalesce, every sample sent
	// so far has been dropped. 2. Then batches coalesce; the same 20
	// flows, so no update is lost.
	coalesced := false
	for range 60 {
		send(t, c, batch(20, 0, 0, 50))
		d := c.Stats().Dropped
		if d.BatchesCoalesced > 0 && !coalesced {
			coalesced = true
			if d.SamplesDropped != uint64(sentSamples) {
				t.Fatalf("coalescing with %d of %d samples dropped, want all first", d.SamplesDropped, sentSamples)
			}
		}
		if !coalesced && d.SamplesDropped%50 != 0 {
			t.Fatalf("dropped %+v, want whole batches of samples", d)
		}
	}
	d := c.Stats().Dropped
	if d.SamplesDropped == 0 || d.BatchesCoalesced == 0 || d.UpdatesDropped != 0 || d.EndedDropped != 0 {
		t.Fatalf("dropped %+v, want samples dropped and batches coalesced only", d)
	}
	if st := c.Stats(); st.PendingBytes > 64<<10 {
		t.Fatalf("pending %d bytes over the bound", st.PendingBytes)
	}
	// 3. Too many distinct active flows: the least recently seen go.
	send(t, c, batch(400, 100, 0, 0))
	if d = c.Stats().Dropped; d.UpdatesDropped == 0 || d.EndedDropped != 0 {
		t.Fatalf("dropped %+v, want updates dropped, no ended flow", d)
	}
	// 4. Too many ended flows: some are lost, and counted.
	send(t, c, batch(0, 0, 400, 0))
	if d = c.Stats().Dropped; d.EndedDropped == 0 || d.EndedPackets == 0 {
		t.Fatalf("dropped %+v, want ended flows dropped", d)
	}
	// A last small batch carries the final counters.
	send(t, c, batch(1, 0, 0, 3))
	if st := c.Stats(); st.PendingBytes > 64<<10 {
		t.Fatalf("pending %d bytes over the bound", st.PendingBytes)
	}

	h := &ipctest.Handler{}
	startServer(t, path, h)
	closeClient(t, c)
	in := h.Instance("pressure")
	d = c.Stats().Dropped
	if in.Dropped != d {
		t.Errorf("server got dropped %+v, client counted %+v", in.Dropped, d)
	}
	if got := uint64(len(in.Samples)) + d.SamplesDropped; got != uint64(sentSamples) {
		t.Errorf("samples received %d + dropped %d = %d, sent %d", len(in.Samples), d.SamplesDropped, got, sentSamples)
	}
	// Every flow received is the latest record sent; the active flows
	// missing are those whose updates were dropped.
	var receivedEnded, receivedEndedPackets uint64
	missing := 0
	for id, f := range counters {
		got, ok := in.Flows[id]
		if !ok {
			if f.EndReason == "" {
				missing++
			}
			continue
		}
		if !cmp.Equal(got, f, equate) {
			t.Errorf("flow %s: received %+v, not the latest sent %+v", id, got, f)
		}
		if f.EndReason != "" {
			receivedEnded++
			receivedEndedPackets += f.PacketsSent + f.PacketsReceived
		}
	}
	if missing == 0 || uint64(missing) > d.UpdatesDropped {
		t.Errorf("%d active flows missing, %d updates dropped", missing, d.UpdatesDropped)
	}
	if receivedEnded+d.EndedDropped != 400 || receivedEndedPackets+d.EndedPackets != endedPackets {
		t.Errorf("ended flows received %d + dropped %d, packets %d + %d; want 400 flows, %d packets",
			receivedEnded, d.EndedDropped, receivedEndedPackets, d.EndedPackets, endedPackets)
	}
	if in.Stats.Packets != uint64(seq) {
		t.Errorf("stats of batch %d, want the last, %d", in.Stats.Packets, seq)
	}
}

// TestClient_DoneSurvivesCoalescing: with the server absent, a batch
// marked Done that the pending bound makes the client coalesce with the
// batches before it keeps its mark: the server gets it on the last batch.
func TestClient_DoneSurvivesCoalescing(t *testing.T) {
	path := ipctest.SocketPath(t)
	c := startClient(t, path, func(c *ipc.Client) {
		c.Hello.InstanceID = "done-coalesced"
		c.MaxPendingBytes = 64 << 10
		c.MaxBatchBytes = 64 << 10
	})
	for range 20 {
		send(t, c, ipctest.Batch(0, 20, 0, 50))
	}
	before := c.Stats().Dropped.BatchesCoalesced
	last := ipctest.Batch(0, 300, 0, 0)
	last.Done = true
	send(t, c, last)
	if st := c.Stats(); st.Dropped.BatchesCoalesced == before || st.PendingBatches != 1 {
		t.Fatalf("stats %+v: want the done batch coalesced with the pending ones into one", st)
	}
	h := &ipctest.Handler{}
	startServer(t, path, h)
	closeClient(t, c)
	in := h.Instance("done-coalesced")
	if want := []uint64{in.LastSeq}; len(in.Seqs) == 0 || !slices.Equal(in.DoneSeqs, want) {
		t.Errorf("done on batches %v of %v, want %v", in.DoneSeqs, in.Seqs, want)
	}
}

// TestClient_DoneKeptWhenTheBoundIsFull: when the batches written but not
// acknowledged fill the pending bound, a new batch is dropped whole (its
// stats come with the next one), but a batch marked Done has no next one:
// its stats and Done are queued without its records, and sent.
func TestClient_DoneKeptWhenTheBoundIsFull(t *testing.T) {
	path := ipctest.SocketPath(t)
	conns := fakeServer(t, path)
	c := startClient(t, path, func(c *ipc.Client) {
		c.MaxPendingBytes = 64 << 10
		c.MaxBatchBytes = 64 << 10
	})
	s := next(t, conns)
	read[*ipc.Hello](t, s)
	s.Send(ipctest.Encode(t, &ipc.HelloAck{Version: 1}))
	// Fill the bound with batches the server reads and never acks, until
	// one is dropped whole.
	full := false
	for range 1000 {
		n := c.Stats().PendingBatches
		send(t, c, ipctest.Batch(0, 40, 0, 0))
		if c.Stats().PendingBatches == n {
			full = true
			break
		}
		read[*ipc.Batch](t, s)
	}
	if !full {
		t.Fatalf("stats %+v: the bound never filled", c.Stats())
	}
	dropped := c.Stats().Dropped.UpdatesDropped
	last := ipctest.Batch(0, 40, 0, 0)
	last.Done = true
	last.Stats.Packets = 4242
	send(t, c, last)
	b := read[*ipc.Batch](t, s)
	if !b.Done || len(b.Flows) != 0 || b.Stats.Packets != 4242 {
		t.Errorf("batch %d: done %v, %d flows, %d packets; want done, no flows, 4242 packets",
			b.Seq, b.Done, len(b.Flows), b.Stats.Packets)
	}
	if got := b.Dropped.UpdatesDropped - dropped; got != 40 {
		t.Errorf("the done batch counts %d more updates dropped, want its 40", got)
	}
}
