package capturer

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/capfilter"
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

// reset empties b for reuse.
func (b *batch) reset() {
	b.n, b.full, b.fullAt = 0, b.full[:0], b.fullAt[:0]
	b.packets, b.bytes, b.filtered, b.err = 0, 0, 0, nil
	clear(b.results[:])
}

// take moves the packets and counters of b into c, a free batch, and
// leaves b empty. Only the summaries in use are copied; the slices of
// whole packets change hands.
func (c *batch) take(b *batch) {
	c.n = copy(c.sums[:], b.sums[:b.n])
	c.full, b.full = b.full, c.full[:0]
	c.fullAt, b.fullAt = b.fullAt, c.fullAt[:0]
	c.packets, c.bytes, c.filtered, c.results, c.err = b.packets, b.bytes, b.filtered, b.results, nil
	b.reset()
}

// errStopped ends a stream's read when the flow goroutine has stopped.
var errStopped = errors.New("capturer: reading stopped")

// reader is the reading goroutine of readParallel: it reads, filters and
// decodes frames into batches. Its fields other than cur are set before it
// starts; cur is its own.
type reader struct {
	src        capture.Source
	filter     capfilter.Spec
	whole      bool        // send every packet whole (sampling)
	free, full chan *batch // batches to fill, and filled ones
	stop       chan struct{}
	done       chan struct{} // closed when run returns
	cur        *batch        // the batch being filled
}

// run fills batches until the source ends or stop is closed. It has its
// own decoder, so it shares nothing with the flow goroutine but the
// batches.
func (r *reader) run() {
	defer close(r.done)
	src, filter, whole := r.src, r.filter, r.whole
	dec := decode.NewDecoder()
	var pkt decode.Packet
	for {
		var b *batch
		select {
		case b = <-r.free:
		case <-r.stop:
			return
		}
		b.reset()
		r.cur = b
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
		case r.full <- b:
		case <-r.stop:
			return
		}
		if b.err != nil {
			return
		}
	}
}

// handOver is a stream's idle hook: the source calls it, on the reading
// goroutine, before each read of its input, which may block until the
// writer writes. It hands the packets read so far, and the counters of
// every frame, to the flow goroutine, so that a stream that pauses does
// not hold them back: they reach the flow table, and the next flush,
// without waiting for a whole batch. The batch being filled stays the
// reader's; what it holds moves to a free batch.
func (r *reader) handOver() error {
	b := r.cur
	if b == nil || b.packets == 0 {
		return nil
	}
	var c *batch
	select {
	case c = <-r.free:
	case <-r.stop:
		return errStopped
	}
	c.take(b)
	// full has room for every batch: this does not block.
	select {
	case r.full <- c:
	case <-r.stop:
		return errStopped
	}
	return nil
}

// readParallel is ReadFile and ReadStream on two goroutines: one reads,
// filters and decodes, the other (the caller's) runs the flow table,
// sampling and exports, so a file is aggregated at the speed of the slower
// half. The result is the same as the one-goroutine loop, packet for
// packet.
//
// in is the input of a stream (nil for a file): the reader then hands over
// what it holds before a read of it that may block, the periodic work runs
// on a timer while no batch comes, and cancelling ctx returns nil at once,
// without waiting for the reader, which may be blocked in a read only the
// writer can end. The reader owns src and its batches, and shares nothing
// else: after the return it touches nothing of the caller's, and it stops
// once its read returns (it then finds stop closed).
func readParallel(ctx context.Context, src capture.Source, p *Pipeline, pr *Periodic, in *streamReader) error {
	r := &reader{
		src:    src,
		filter: p.Filter,
		whole:  p.OnSample != nil,
		free:   make(chan *batch, inFlight),
		full:   make(chan *batch, inFlight),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range inFlight {
		r.free <- new(batch)
	}
	stream := in != nil
	if stream {
		in.idle = r.handOver
	}
	go r.run()
	defer func() {
		close(r.stop)
		if !stream {
			// The reader stops after its current read; the caller may
			// close src once this returns.
			<-r.done
		}
	}()

	defer p.Table().Flush()
	var due *time.Timer // a stream's next flush
	var dueC <-chan time.Time
	if pr != nil {
		if pr.Now == nil {
			pr.Now = nowFunc
		}
		pr.last = pr.Now()
		if stream && pr.Flush != nil && pr.Interval > 0 {
			// The flushes keep to the wall clock while the stream is
			// quiet; flows still expire on packet time, as in a file.
			due = time.NewTimer(pr.Interval)
			defer due.Stop()
			dueC = due.C
		}
	}
	for {
		var b *batch
		select {
		case b = <-r.full:
		case <-dueC:
			pr.tick(false)
			due.Reset(pr.untilDue())
			continue
		case <-ctx.Done():
			if stream {
				return nil
			}
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
		r.free <- b
	}
}
