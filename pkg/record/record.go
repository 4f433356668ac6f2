// Package record holds the domain records that both processes share: the flow
// record of DESIGN.md, sampled packet records and capture statistics. It has
// no behaviour beyond formatting, and imports only the standard library.
//
// The same struct tags serve JSON (the API and the offline JSONL output) and
// msgpack (the IPC wire), so a field has one name everywhere.
package record

import (
	"strconv"
	"time"
)

// TimeLayout is the fixed-width RFC 3339 layout with nanoseconds used for
// first_seen and last_seen. A fixed width keeps the strings sortable.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Time is a UTC timestamp that marshals to JSON in TimeLayout.
type Time struct{ time.Time }

// MarshalJSON writes t in TimeLayout, in UTC.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads any RFC 3339 timestamp.
func (t *Time) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v.UTC()
	return nil
}

// Flow is one bidirectional conversation: the flow record of DESIGN.md.
// "Sent" counts packets from the originator (Src) to the responder (Dst),
// "received" the other way. Bytes are original frame lengths on the wire.
type Flow struct {
	ID          string `json:"id" msgpack:"id"`
	CommunityID string `json:"community_id" msgpack:"community_id"`
	Proto       string `json:"proto" msgpack:"proto"`
	ProtoNum    uint8  `json:"proto_num" msgpack:"proto_num"`
	SrcIP       string `json:"src_ip" msgpack:"src_ip"`
	SrcPort     uint16 `json:"src_port" msgpack:"src_port"`
	DstIP       string `json:"dst_ip" msgpack:"dst_ip"`
	DstPort     uint16 `json:"dst_port" msgpack:"dst_port"`
	VLAN        uint16 `json:"vlan,omitempty" msgpack:"vlan,omitempty"`

	FirstSeen Time `json:"first_seen" msgpack:"first_seen"`
	LastSeen  Time `json:"last_seen" msgpack:"last_seen"`

	PacketsSent     uint64 `json:"packets_sent" msgpack:"packets_sent"`
	BytesSent       uint64 `json:"bytes_sent" msgpack:"bytes_sent"`
	PacketsReceived uint64 `json:"packets_received" msgpack:"packets_received"`
	BytesReceived   uint64 `json:"bytes_received" msgpack:"bytes_received"`

	TCPFlags  string `json:"tcp_flags,omitempty" msgpack:"tcp_flags,omitempty"`
	History   string `json:"history,omitempty" msgpack:"history,omitempty"`
	State     string `json:"state" msgpack:"state"`
	Direction string `json:"direction,omitempty" msgpack:"direction,omitempty"`

	// EndReason says why a flow record is final: "idle", "closed" (idle
	// after FIN or RST), "evicted" (exported early because the table was
	// full), "reused" (a new SYN on a finished connection) or "eof" (end of
	// a capture file or shutdown). Empty while the flow is active.
	EndReason string `json:"end_reason,omitempty" msgpack:"end_reason,omitempty"`
}

// Direction values, relative to the watched namespace's own addresses.
const (
	DirInbound  = "inbound"
	DirOutbound = "outbound"
	DirInternal = "internal"
)

// End reasons of a final flow record.
const (
	EndIdle    = "idle"
	EndClosed  = "closed"
	EndEvicted = "evicted"
	EndReused  = "reused"
	EndEOF     = "eof"
)

// protoNames are the names DESIGN.md uses for IP protocol numbers.
var protoNames = [256]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}

// ProtoName returns the name DESIGN.md uses for an IP protocol number, or
// the number in decimal.
func ProtoName(p uint8) string {
	if n := protoNames[p]; n != "" {
		return n
	}
	return strconv.Itoa(int(p))
}

// AppendProtoName appends ProtoName(p) to b without allocating.
func AppendProtoName(b []byte, p uint8) []byte {
	if n := protoNames[p]; n != "" {
		return append(b, n...)
	}
	return strconv.AppendUint(b, uint64(p), 10)
}

// PacketSample is the metadata of one sampled packet: the original tool's
// /api/history record. Timestamp is Unix milliseconds of the capture time.
type PacketSample struct {
	Timestamp int64  `json:"timestamp" msgpack:"timestamp"`
	SrcIP     string `json:"src_ip" msgpack:"src_ip"`
	DstIP     string `json:"dst_ip" msgpack:"dst_ip"`
	SrcPort   uint16 `json:"src_port" msgpack:"src_port"`
	DstPort   uint16 `json:"dst_port" msgpack:"dst_port"`
	Protocol  string `json:"protocol" msgpack:"protocol"`
	Length    uint32 `json:"length" msgpack:"length"`
	FlowID    string `json:"flow_id,omitempty" msgpack:"flow_id,omitempty"`
}

// CaptureStats are cumulative counters of one capture since it started.
type CaptureStats struct {
	// Packets is every frame read from the source, whatever became of it.
	Packets uint64 `json:"packets" msgpack:"packets"`
	// Bytes is the sum of the original lengths of those frames.
	Bytes uint64 `json:"bytes" msgpack:"bytes"`
	// KernelReceived and KernelDrops come from the socket (PACKET_STATISTICS);
	// zero for files.
	KernelReceived uint64 `json:"kernel_received" msgpack:"kernel_received"`
	KernelDrops    uint64 `json:"kernel_drops" msgpack:"kernel_drops"`
	// FlowPackets are frames that were charged to a flow.
	FlowPackets uint64 `json:"flow_packets" msgpack:"flow_packets"`
	// NonIP are frames that decoded fine but carry no IP (ARP, STP, LLDP…).
	NonIP uint64 `json:"non_ip" msgpack:"non_ip"`
	// DecodeErrors counts frames that could not be decoded, by reason.
	DecodeErrors map[string]uint64 `json:"decode_errors" msgpack:"decode_errors"`
	// Filtered are frames a user-space filter rejected (files only; live
	// filters run in the kernel and never reach user space).
	Filtered uint64 `json:"filtered" msgpack:"filtered"`
	// Flows is the number of flows created; Evictions those exported early
	// because the table was full.
	Flows       uint64 `json:"flows" msgpack:"flows"`
	ActiveFlows uint64 `json:"active_flows" msgpack:"active_flows"`
	Evictions   uint64 `json:"evictions" msgpack:"evictions"`
	// FragmentsPending are fragments held until their first fragment shows
	// which flow they belong to.
	FragmentsPending uint64 `json:"fragments_pending" msgpack:"fragments_pending"`
	// SamplesSkipped are packets the sampler did not keep because its
	// per-batch bound was reached (the packets still count in their flows).
	SamplesSkipped uint64 `json:"samples_skipped" msgpack:"samples_skipped"`
}
