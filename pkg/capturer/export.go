package capturer

import (
	"fmt"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Sender takes batches for the API server (ipc.Client). Send must not
// block capture and must not keep the batch.
type Sender interface {
	Send(b *ipc.Batch) error
}

// Defaults of Exporter.
const (
	DefaultMaxSamples = 4096 // packet samples kept per batch
	DefaultMaxRecords = 8192 // flow records per batch before an early flush
)

// Exporter gathers what a capture produces between flushes (ended flows,
// packet samples) and, at each flush, the flows updated since the last
// one, and hands them to a Sender as one batch. It is owned by the capture
// goroutine. Memory is bounded: samples beyond MaxSamples are counted and
// skipped, and ended flows beyond MaxRecords make the caller flush early
// (see Full).
type Exporter struct {
	Sender     Sender
	MaxSamples int
	MaxRecords int

	batch   ipc.Batch
	samples []Sample
	skipped uint64
}

// NewExporter returns an exporter sending to s.
func NewExporter(s Sender) *Exporter {
	return &Exporter{Sender: s, MaxSamples: DefaultMaxSamples, MaxRecords: DefaultMaxRecords}
}

// Ended records a flow that ended (flow.Table.OnEnd).
func (x *Exporter) Ended(f *flow.Flow) {
	x.batch.Ended = append(x.batch.Ended, f.Record())
}

// Sample keeps a packet sample (Pipeline.OnSample) if the batch has room.
func (x *Exporter) Sample(s *Sample) {
	if len(x.samples) >= x.MaxSamples {
		x.skipped++
		return
	}
	x.samples = append(x.samples, *s)
}

// Full reports whether enough ended flows are waiting that the caller
// should flush now rather than at the next interval.
func (x *Exporter) Full() bool { return len(x.batch.Ended) >= x.MaxRecords }

// Flush sends one batch: the flows of t updated since the last flush, the
// ended flows and samples gathered since, and the capture statistics.
func (x *Exporter) Flush(t *flow.Table, stats record.CaptureStats) error {
	t.Updated(func(f *flow.Flow) {
		x.batch.Flows = append(x.batch.Flows, f.Record())
	})
	for i := range x.samples {
		s := &x.samples[i]
		x.batch.Samples = append(x.batch.Samples, record.PacketSample{
			Timestamp: s.Timestamp / 1e6,
			SrcIP:     s.Src.String(),
			DstIP:     s.Dst.String(),
			SrcPort:   s.SrcPort,
			DstPort:   s.DstPort,
			Protocol:  protocolName(s.Proto),
			Length:    s.Length,
			FlowID:    fmt.Sprintf("%016x", s.FlowID),
		})
	}
	stats.SamplesSkipped = x.skipped
	x.batch.Stats = stats
	err := x.Sender.Send(&x.batch)
	clear(x.batch.Flows)
	clear(x.batch.Ended)
	clear(x.batch.Samples)
	x.batch.Flows, x.batch.Ended, x.batch.Samples = x.batch.Flows[:0], x.batch.Ended[:0], x.batch.Samples[:0]
	x.samples = x.samples[:0]
	return err
}

// FlushDone is Flush for the last batch of a source read to its end (a
// file, at its end): the batch carries ipc.Batch.Done, which tells
// the API server that the capture finished rather than was lost. Call it
// once, after the table's last flows have ended, and not after a signal or
// a read error.
func (x *Exporter) FlushDone(t *flow.Table, stats record.CaptureStats) error {
	x.batch.Done = true
	defer func() { x.batch.Done = false }()
	return x.Flush(t, stats)
}

// protocolName is the original tool's /api/history protocol: upper case.
func protocolName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 1:
		return "ICMP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	}
	return record.ProtoName(p)
}
