package ipc_test

import (
	"context"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
)

const benchFlows = 1000

// BenchmarkFlowRecords measures the codec on one goroutine, for a batch
// of 1000 realistic flow records: records/s and bytes per record on the
// wire. DESIGN target: encode+decode at 1 M records/s or more.
func BenchmarkFlowRecords(b *testing.B) {
	batch := ipctest.Batch(1, benchFlows, 0, 0)
	frame := ipctest.Encode(b, batch)
	perRecord := float64(len(frame)) / benchFlows
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)*benchFlows/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(perRecord, "B/record")
	}
	// Each encoder and decoder is warmed up first: the steady state is what
	// a connection lives in (buffer grown, strings interned).
	b.Run("encode", func(b *testing.B) {
		e := ipc.NewEncoder()
		e.Encode(batch)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Encode(batch); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("decode", func(b *testing.B) {
		d := ipc.NewDecoder(ipc.Limits{})
		d.Decode(frame[4:])
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.Decode(frame[4:]); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("encode+decode", func(b *testing.B) {
		e := ipc.NewEncoder()
		d := ipc.NewDecoder(ipc.Limits{})
		d.Decode(frame[4:])
		e.Encode(batch)
		b.ReportAllocs()
		for b.Loop() {
			f, err := e.Encode(batch)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.Decode(f[4:]); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	// A decoder meeting every record for the first time: strings are new,
	// so they cost allocations (the steady state interns them).
	b.Run("decode-cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ipc.NewDecoder(ipc.Limits{}).Decode(frame[4:]); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
}

// countingHandler commits nothing and signals each seq applied.
type countingHandler struct{ applied chan uint64 }

func (h countingHandler) Apply(_ context.Context, _ ipc.Peer, b *ipc.Batch) error {
	h.applied <- b.Seq
	return nil
}

func (countingHandler) LastSeq(context.Context, string) (uint64, error) { return 0, nil }

// BenchmarkClientToServer measures delivery through a real socket: Client
// Send, frames, Server decode, Apply, ack.
func BenchmarkClientToServer(b *testing.B) {
	path := ipctest.SocketPath(b)
	h := countingHandler{applied: make(chan uint64, 1024)}
	s := &ipc.Server{Path: path, Handler: h}
	if err := s.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	c := &ipc.Client{Path: path, MaxPendingBytes: 256 << 20}
	if err := c.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	batch := ipctest.Batch(1, benchFlows, 0, 0)
	b.ReportAllocs()
	sent := uint64(0)
	for b.Loop() {
		if err := c.Send(batch); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	timeout := time.After(time.Minute)
	for last := uint64(0); last < sent; {
		select {
		case last = <-h.applied:
		case <-timeout:
			b.Fatalf("applied %d of %d batches", last, sent)
		}
	}
	b.ReportMetric(float64(sent)*benchFlows/b.Elapsed().Seconds(), "records/s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
