package ipctest

import (
	"fmt"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// base is the first_seen of generated records.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Flow returns a realistic record of flow i: a TCP connection with a
// 16-hex-digit id, a Community ID, IPv4 addresses and a Zeek history.
func Flow(i int) record.Flow {
	return record.Flow{
		ID:              fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15),
		CommunityID:     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
		Proto:           "tcp",
		ProtoNum:        6,
		SrcIP:           fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		SrcPort:         uint16(32768 + i%28000),
		DstIP:           "192.168.100.200",
		DstPort:         443,
		FirstSeen:       record.Time{Time: base.Add(time.Duration(i) * time.Millisecond)},
		LastSeen:        record.Time{Time: base.Add(time.Duration(i)*time.Millisecond + 1500*time.Millisecond)},
		PacketsSent:     uint64(10 + i%1000),
		BytesSent:       uint64(1500 * (10 + i%1000)),
		PacketsReceived: uint64(8 + i%700),
		BytesReceived:   uint64(60 * (8 + i%700)),
		TCPFlags:        "FSPA",
		History:         "ShADadFf",
		State:           "SF",
		Direction:       record.DirOutbound,
	}
}

// Sample returns a packet sample of flow i.
func Sample(i int) record.PacketSample {
	f := Flow(i)
	return record.PacketSample{
		Timestamp: f.LastSeen.UnixMilli(),
		SrcIP:     f.SrcIP,
		DstIP:     f.DstIP,
		SrcPort:   f.SrcPort,
		DstPort:   f.DstPort,
		Protocol:  f.Proto,
		Length:    uint32(60 + i%1400),
		FlowID:    f.ID,
	}
}

// Batch returns a batch of flows updated, ended flows and samples.
func Batch(seq uint64, flows, ended, samples int) *ipc.Batch {
	b := &ipc.Batch{Seq: seq}
	for i := range flows {
		b.Flows = append(b.Flows, Flow(i))
	}
	for i := range ended {
		f := Flow(flows + i)
		f.EndReason = record.EndClosed
		b.Ended = append(b.Ended, f)
	}
	for i := range samples {
		b.Samples = append(b.Samples, Sample(i))
	}
	b.Stats = record.CaptureStats{
		Packets: 1000 * seq, Bytes: 900000 * seq, KernelReceived: 1000 * seq,
		FlowPackets: 990 * seq, NonIP: 10 * seq, Flows: uint64(flows + ended),
		ActiveFlows:  uint64(flows),
		DecodeErrors: map[string]uint64{"truncated": 3, "bad_ip_header": 1},
	}
	return b
}
