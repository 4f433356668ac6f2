// Package capturer is the capturer process as a library: it reads frames
// from a capture.Source, decodes them, aggregates them in a flow.Table and
// hands flows to a Sink. It links no SQLite and no HTTP.
package capturer

import (
	"net/netip"

	"github.com/lightshark-dev/lightshark-mini/pkg/capfilter"
	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Pipeline turns frames into flows: decode, optional user-space filter,
// flow table, packet sampling. It is owned by one goroutine.
type Pipeline struct {
	// Filter, if not empty, is applied in user space (files, where no
	// kernel filter runs). Live captures filter in the kernel instead.
	Filter capfilter.Spec
	// SampleRate keeps every Nth packet's metadata (0 or 1: every packet
	// when OnSample is set).
	SampleRate int
	// OnSample receives sampled packets. The sample is valid only during
	// the call.
	OnSample func(*Sample)

	table   *flow.Table
	dec     *decode.Decoder
	pkt     decode.Packet
	sample  Sample
	nSample int

	packets  uint64
	bytes    uint64
	filtered uint64
	results  [decode.NumResults]uint64
}

// Sample is the metadata of one sampled packet.
type Sample struct {
	Timestamp        int64 // Unix nanoseconds
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Length           uint32
	FlowID           uint64
}

// NewPipeline returns a pipeline feeding t.
func NewPipeline(t *flow.Table) *Pipeline {
	return &Pipeline{table: t, dec: decode.NewDecoder()}
}

// Table returns the pipeline's flow table.
func (p *Pipeline) Table() *flow.Table { return p.table }

// Packet processes one frame. data is only read during the call.
func (p *Pipeline) Packet(data []byte, info *capture.Info) {
	p.packets++
	p.bytes += uint64(info.Length)
	if !p.Filter.IsEmpty() && !p.Filter.Match(info.LinkType, data) {
		p.filtered++
		return
	}
	res := p.dec.Decode(data, info.LinkType, uint32(info.Length), &p.pkt)
	p.results[res]++
	if res != decode.OK {
		return
	}
	if info.VLAN >= 0 && !p.pkt.HasVLAN {
		// The kernel took the tag off; the ring reported it.
		p.pkt.VLAN, p.pkt.HasVLAN = uint16(info.VLAN), true
	}
	p.update(&p.pkt, info.Timestamp.UnixNano())
}

// update charges a decoded packet to its flow and samples it.
func (p *Pipeline) update(pkt *decode.Packet, ts int64) {
	h := p.table.Update(pkt, ts)
	if p.OnSample != nil {
		p.nSample++
		if p.SampleRate <= 1 || p.nSample >= p.SampleRate {
			p.nSample = 0
			p.sample = Sample{Timestamp: ts, Src: pkt.Src, Dst: pkt.Dst, SrcPort: pkt.SrcPort,
				DstPort: pkt.DstPort, Proto: pkt.Proto, Length: pkt.Length, FlowID: p.table.ID(h)}
			p.OnSample(&p.sample)
		}
	}
}

// Stats returns the pipeline's cumulative counters (without the kernel's).
func (p *Pipeline) Stats() record.CaptureStats {
	ts := p.table.Stats()
	s := record.CaptureStats{
		Packets:          p.packets,
		Bytes:            p.bytes,
		FlowPackets:      ts.Packets,
		NonIP:            p.results[decode.NonIP],
		Filtered:         p.filtered,
		Flows:            ts.Flows,
		ActiveFlows:      uint64(ts.Active),
		Evictions:        ts.Evictions,
		FragmentsPending: uint64(ts.FragmentsPending),
		DecodeErrors:     map[string]uint64{},
	}
	for r, n := range p.results {
		if n == 0 || decode.Result(r) == decode.OK || decode.Result(r) == decode.NonIP {
			continue
		}
		s.DecodeErrors[decode.Result(r).String()] = n
	}
	return s
}
