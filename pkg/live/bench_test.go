package live

import (
	"fmt"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// BenchmarkApply applies batches of 10,000 flow updates drawn from 50,000
// active flows (the API server's ingest benchmark's shape): the live
// view's share of ingest.
func BenchmarkApply(b *testing.B) {
	const active, perBatch = 50000, 10000
	c := newClock()
	s := New()
	s.Now = c.Now
	flows := make([]record.Flow, active)
	t0 := c.Now()
	for i := range flows {
		dir := record.DirOutbound
		if i%2 == 1 {
			dir = record.DirInbound
		}
		flows[i] = record.Flow{ID: fmt.Sprintf("%016x", i), Proto: "tcp", ProtoNum: 6, Direction: dir,
			FirstSeen: record.Time{Time: t0}, LastSeen: record.Time{Time: t0}}
	}
	batch := make([]record.Flow, perBatch)
	seq := uint64(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := c.Advance(100 * time.Millisecond)
		for j := range batch {
			f := &flows[(i*perBatch+j)%active]
			f.PacketsSent++
			f.BytesSent += 100
			f.LastSeen = record.Time{Time: now}
			batch[j] = *f
		}
		seq++
		s.Apply("cap", Batch{Seq: seq, Flows: batch, ReceivedAt: now})
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "records/s")
}
