package capturer

import (
	"context"
	"errors"
	"io"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
)

// batchSize is the number of packets handed from the reading goroutine to
// the flow goroutine at a time; inFlight batches circulate. A deep queue
// absorbs the two goroutines' jitter, so that neither waits (and is woken)
// often: on the 5.5M-packet benchmark file cut to 128 bytes, 4 batches of
// 512 summaries took 0.54 s, 8 of them 0.355 s, 8 of 1024 0.34 s. 8 of 512
// keep the queue (256 KiB) smaller than the 4 batches of 512 whole
// decode.Packets (344 KiB) it replaced, for the RSS targets. maxFull bounds
// the packets a batch carries whole: sampling sends every packet whole, in
// batches of 256.
const (
	batchSize = 512
	inFlight  = 8
	maxFull   = 256
)

type decoded struct {
	pkt decode.Packet
	ts  int64
}

// batch is what the reading goroutine hands over: decoded packets and the
// counters of every frame it read for them. A packet goes across as a
// flow.Summary, one cache line, unless the flow goroutine needs all of it
// (an IP fragment, or every packet while sampling): then it goes whole, in
// full, and fullAt holds its place among the summaries.
type batch struct {
	sums     [batchSize]flow.Summary
	n        int
	full     []decoded // grows to the most a batch needed, then stays
	fullAt   []int
	packets  uint64
	bytes    uint64
	filtered uint64
	results  [decode.NumResults]uint64
	err      error // the read error that ended the file (io.EOF: clean)
}

// readFileParallel is ReadFile on two goroutines: one reads, filters and
// decodes, the other (the caller's) runs the flow table, sampling and
// exports, so a file is aggregated at the speed of the slower half. The
// result is the same as the one-goroutine loop, packet for packet.
func readFileParallel(ctx context.Context, src capture.Source, p *Pipeline, pr *Periodic) error {
	free := make(chan *batch, inFlight)
	full := make(chan *batch, inFlight)
	for range inFlight {
		free <- new(batch)
	}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	defer func() {
		// The reader stops after its current read; the caller may close
		// src once this returns.
		close(stop)
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		// The reader: its own decoder, so it shares nothing with the
		// flow goroutine but the batches.
		dec := decode.NewDecoder()
		filter := p.Filter
		whole := p.OnSample != nil
		var pkt decode.Packet
		for {
			var b *batch
			select {
			case b = <-free:
			case <-stop:
				return
			}
			b.n, b.full, b.fullAt = 0, b.full[:0], b.fullAt[:0]
			b.packets, b.bytes, b.filtered, b.err = 0, 0, 0, nil
			clear(b.results[:])
			for b.n < batchSize {
				data, info, err := src.ReadPacket()
				if err != nil {
					b.err = err
					break
				}
				b.packets++
				b.bytes += uint64(info.Length)
				if !filter.IsEmpty() && !filter.Match(info.LinkType, data) {
					b.filtered++
					continue
				}
				res := dec.Decode(data, info.LinkType, uint32(info.Length), &pkt)
				b.results[res]++
				if res != decode.OK {
					continue
				}
				ts := info.Timestamp.UnixNano()
				if whole || !b.sums[b.n].Set(&pkt, ts) {
					b.full = append(b.full, decoded{pkt: pkt, ts: ts})
					b.fullAt = append(b.fullAt, b.n)
					if len(b.full) == maxFull {
						b.n++
						break
					}
				}
				b.n++
			}
			select {
			case full <- b:
			case <-stop:
				return
			}
			if b.err != nil {
				return
			}
		}
	}()

	defer p.Table().Flush()
	if pr != nil {
		if pr.Now == nil {
			pr.Now = nowFunc
		}
		pr.last = pr.Now()
	}
	for {
		var b *batch
		select {
		case b = <-full:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.packets += b.packets
		p.bytes += b.bytes
		p.filtered += b.filtered
		for i, n := range b.results {
			p.results[i] += n
		}
		t := p.Table()
		next := 0
		for i := range b.n {
			if next < len(b.fullAt) && b.fullAt[next] == i {
				d := &b.full[next]
				p.update(&d.pkt, d.ts)
				next++
				continue
			}
			t.UpdateSummary(&b.sums[i])
		}
		pr.tick(false)
		if err := b.err; err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		free <- b
	}
}
