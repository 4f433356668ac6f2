package capturer

import (
	"context"
	"errors"
	"io"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
)

// batchSize is the number of decoded packets handed from the reading
// goroutine to the flow goroutine at a time; inFlight batches circulate.
const (
	batchSize = 512
	inFlight  = 4
)

type decoded struct {
	pkt decode.Packet
	ts  int64
}

// batch is what the reading goroutine hands over: decoded packets and the
// counters of every frame it read for them.
type batch struct {
	pkts     [batchSize]decoded
	n        int
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
		for {
			var b *batch
			select {
			case b = <-free:
			case <-stop:
				return
			}
			b.n, b.packets, b.bytes, b.filtered, b.err = 0, 0, 0, 0, nil
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
				d := &b.pkts[b.n]
				res := dec.Decode(data, info.LinkType, uint32(info.Length), &d.pkt)
				b.results[res]++
				if res != decode.OK {
					continue
				}
				d.ts = info.Timestamp.UnixNano()
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
		for i := range b.n {
			p.update(&b.pkts[i].pkt, b.pkts[i].ts)
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
