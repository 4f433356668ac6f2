package ipc

import (
	"slices"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// relieve makes room for the incoming batch b (encoded as entries, size
// bytes) when the pending bytes would exceed MaxPendingBytes, following the
// order documented on Send. It changes only batches not written since the
// last hello-ack: a written one may have been applied, and changing it
// could make the server apply something twice. It returns the entries to
// queue, possibly none.
func (c *Client) relieve(b *Batch, entries []*pending, size int) ([]*pending, int, error) {
	defer c.logPressure()
	fits := func() bool { return c.pendingBytes+size <= c.MaxPendingBytes }
	var err error
	reencode := func() bool {
		entries, size, err = c.encode(b, c.nextSeq)
		return err != nil || fits()
	}
	// The batches not written since the last hello-ack are a suffix of the
	// queue: the writer writes in order, and a hello-ack resets them all.
	first := len(c.queue)
	for first > 0 && !c.queue[first-1].sent {
		first--
	}

	// 1. Packet samples, oldest batches first, then the incoming one.
	for _, p := range c.queue[first:] {
		if p.samples == 0 {
			continue
		}
		old := c.decodeOwn(p)
		n := len(old.Samples)
		old.Samples = nil
		c.dropped.SamplesDropped += uint64(n)
		es, _, err := c.encode(old, p.seq)
		if err != nil || len(es) != 1 {
			// Cannot happen (the frame only shrank); leave it be.
			c.dropped.SamplesDropped -= uint64(n)
			continue
		}
		c.pendingBytes += len(es[0].frame) - len(p.frame)
		p.frame, p.samples = es[0].frame, 0
		// The counters grew by a few bytes in the incoming batch too.
		if c.pendingBytes+size+dropStatsSlack <= c.MaxPendingBytes && reencode() {
			return entries, size, err
		}
	}
	if len(b.Samples) > 0 {
		c.dropped.SamplesDropped += uint64(len(b.Samples))
		b.Samples = nil
	}
	if reencode() {
		return entries, size, err
	}

	// 2. Coalesce the unwritten batches and the incoming one.
	batches := make([]*Batch, 0, len(c.queue)-first+1)
	for _, p := range c.queue[first:] {
		batches = append(batches, c.decodeOwn(p))
		c.pendingBytes -= len(p.frame)
	}
	clear(c.queue[first:])
	c.queue = c.queue[:first]
	*b = *coalesce(append(batches, b))
	c.dropped.BatchesCoalesced += uint64(len(batches))
	if reencode() {
		return entries, size, err
	}

	// 3. Records of active flows, least recently seen first.
	b.Flows = c.dropOldest(b.Flows, &size, func(*record.Flow) { c.dropped.UpdatesDropped++ })
	if reencode() {
		return entries, size, err
	}
	// 4. Final records, least recently seen first: a real loss, counted.
	b.Ended = c.dropOldest(b.Ended, &size, c.countEnded)
	if reencode() {
		return entries, size, err
	}
	// 5. Only stats are left, and the written batches fill the bound; the
	// next batch carries the stats. A batch marked Done has no next one:
	// what is left of it is dropped (counted) and its stats and Done are
	// queued beyond the bound, one frame without records, or the server
	// would take the finished capture for a lost one.
	if !b.Done {
		return nil, 0, nil
	}
	c.dropped.UpdatesDropped += uint64(len(b.Flows))
	for i := range b.Ended {
		c.countEnded(&b.Ended[i])
	}
	b.Flows, b.Ended = nil, nil
	entries, size, err = c.encode(b, c.nextSeq)
	return entries, size, err
}

// countEnded counts the final record f as dropped.
func (c *Client) countEnded(f *record.Flow) {
	c.dropped.EndedDropped++
	c.dropped.EndedPackets += f.PacketsSent + f.PacketsReceived
	c.dropped.EndedBytes += f.BytesSent + f.BytesReceived
}

// dropStatsSlack is how much a batch's DropStats can grow in encoded size
// when its counters do: six integers of up to 9 bytes.
const dropStatsSlack = 6 * 9

// dropOldest removes the least recently seen flows until size, reduced by
// their encoded sizes, fits the bound, calling count for each. It updates
// size with its estimate; the caller re-encodes to be exact.
func (c *Client) dropOldest(fs []record.Flow, size *int, count func(*record.Flow)) []record.Flow {
	slices.SortStableFunc(fs, func(a, b record.Flow) int { return a.LastSeen.Compare(b.LastSeen.Time) })
	excess := c.pendingBytes + *size + dropStatsSlack - c.MaxPendingBytes
	n := 0
	for n < len(fs) && excess > 0 {
		s := c.enc.flowSize(&fs[n])
		excess -= s
		*size -= s
		count(&fs[n])
		n++
	}
	return fs[n:]
}

// coalesce merges batches, oldest first, into one: the latest record of
// each active flow, the latest final record of each ended flow (which
// supersedes an active one), every sample, the latest stats and drop
// counters, and Done if any batch had it. Flow counters are cumulative, so
// the result carries every packet the batches did.
func coalesce(batches []*Batch) *Batch {
	out := new(Batch)
	active := make(map[string]int)
	ended := make(map[string]int)
	for _, b := range batches {
		for _, f := range b.Flows {
			if i, ok := active[f.ID]; ok {
				out.Flows[i] = f
			} else {
				active[f.ID] = len(out.Flows)
				out.Flows = append(out.Flows, f)
			}
		}
		for _, f := range b.Ended {
			if i, ok := ended[f.ID]; ok {
				out.Ended[i] = f
			} else {
				ended[f.ID] = len(out.Ended)
				out.Ended = append(out.Ended, f)
			}
		}
		out.Samples = append(out.Samples, b.Samples...)
		out.Stats = b.Stats
		out.Dropped = b.Dropped
		out.Done = out.Done || b.Done
	}
	out.Flows = slices.DeleteFunc(out.Flows, func(f record.Flow) bool {
		_, ok := ended[f.ID]
		return ok
	})
	return out
}

// logPressure logs that the bound was reached, with what it cost so far,
// at most every 10 s.
func (c *Client) logPressure() {
	now := time.Now()
	if now.Sub(c.lastPressure) < 10*time.Second {
		return
	}
	c.lastPressure = now
	d := c.dropped
	c.log.Warn("ipc pending bytes reached MaxPendingBytes; dropping samples and coalescing batches",
		"max_pending_bytes", c.MaxPendingBytes, "pending_batches", len(c.queue),
		"samples_dropped", d.SamplesDropped, "batches_coalesced", d.BatchesCoalesced,
		"updates_dropped", d.UpdatesDropped, "ended_dropped", d.EndedDropped)
}
