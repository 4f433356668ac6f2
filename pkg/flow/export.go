package flow

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/communityid"
	"github.com/lightshark-dev/lightshark-mini/pkg/decode"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

type endReason uint8

const (
	endNone endReason = iota
	endIdle
	endClosed
	endEvicted
	endReused
	endEOF
)

var endReasonNames = [...]string{
	endNone:    "",
	endIdle:    record.EndIdle,
	endClosed:  record.EndClosed,
	endEvicted: record.EndEvicted,
	endReused:  record.EndReused,
	endEOF:     record.EndEOF,
}

// Flow is a snapshot of one flow, oriented from its originator (Src) to
// its responder (Dst). It holds no strings beyond constants, so filling it
// does not allocate; Record converts it to the shared record type.
type Flow struct {
	ID               uint64
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	VLAN             uint16
	HasVLAN          bool
	// First and Last are capture times in Unix nanoseconds.
	First, Last int64
	// Packets and Bytes: [0] originator to responder, [1] the reverse.
	Packets, Bytes [2]uint64
	TCPFlags       uint8
	history        [16]byte
	historyLen     uint8
	State          string
	Direction      string
	EndReason      string
}

// History returns Zeek's history letters.
func (f *Flow) History() string { return string(f.history[:f.historyLen]) }

// TCPFlagString returns the TCP flags seen, as letters in header bit order
// (F S R P A U E C).
func (f *Flow) TCPFlagString() string {
	var b [8]byte
	n := 0
	for i := range 8 {
		if f.TCPFlags&(1<<i) != 0 {
			b[n] = tcpFlagLetters[i]
			n++
		}
	}
	return string(b[:n])
}

// IDString returns the flow id as 16 hex digits.
func (f *Flow) IDString() string {
	var b [16]byte
	s := strconv.AppendUint(b[:0], f.ID, 16)
	out := make([]byte, 16)
	for i := range out {
		out[i] = '0'
	}
	copy(out[16-len(s):], s)
	return string(out)
}

// Record converts the snapshot to the flow record of DESIGN.md.
func (f *Flow) Record() record.Flow {
	r := record.Flow{
		ID:              f.IDString(),
		CommunityID:     communityid.Sum(0, f.Proto, f.Src, f.Dst, f.SrcPort, f.DstPort),
		Proto:           record.ProtoName(f.Proto),
		ProtoNum:        f.Proto,
		SrcIP:           f.Src.String(),
		SrcPort:         f.SrcPort,
		DstIP:           f.Dst.String(),
		DstPort:         f.DstPort,
		FirstSeen:       record.Time{Time: time.Unix(0, f.First).UTC()},
		LastSeen:        record.Time{Time: time.Unix(0, f.Last).UTC()},
		PacketsSent:     f.Packets[0],
		BytesSent:       f.Bytes[0],
		PacketsReceived: f.Packets[1],
		BytesReceived:   f.Bytes[1],
		History:         f.History(),
		State:           f.State,
		Direction:       f.Direction,
		EndReason:       f.EndReason,
	}
	if f.HasVLAN {
		r.VLAN = f.VLAN
	}
	if f.Proto == decode.ProtoTCP {
		r.TCPFlags = f.TCPFlagString()
	}
	return r
}

// fill writes entry e into the snapshot f.
func (t *Table) fill(f *Flow, e *entry, reason endReason) {
	f.ID = flowID(&e.k, e.born)
	f.Proto = e.k.proto
	a, b := e.k.addrA(), e.k.addrB()
	if e.origIsA {
		f.Src, f.Dst, f.SrcPort, f.DstPort = a, b, e.k.portA, e.k.portB
	} else {
		f.Src, f.Dst, f.SrcPort, f.DstPort = b, a, e.k.portB, e.k.portA
	}
	f.HasVLAN = e.vlan != 0
	f.VLAN = 0
	if f.HasVLAN {
		f.VLAN = e.vlan - 1
	}
	f.First, f.Last = e.first, e.last
	f.Packets, f.Bytes = e.pkts, e.bytes
	f.TCPFlags = e.tcpFlags
	f.historyLen = uint8(copy(f.history[:], e.hist[:e.histLen]))
	switch e.k.proto {
	case decode.ProtoTCP:
		f.State = e.tcpConnState()
	case decode.ProtoUDP:
		// Zeek: SF when both sides sent, S0 when only the originator did.
		if e.pkts[1] > 0 {
			f.State = "SF"
		} else {
			f.State = "S0"
		}
	default:
		f.State = "OTH"
	}
	f.Direction = ""
	if t.Local != nil {
		sl, dl := t.Local(f.Src), t.Local(f.Dst)
		switch {
		case sl && dl:
			f.Direction = record.DirInternal
		case sl:
			f.Direction = record.DirOutbound
		case dl:
			f.Direction = record.DirInbound
		}
	}
	f.EndReason = endReasonNames[reason]
}

// AppendJSON appends the flow's record as one JSON object (the same bytes
// encoding/json writes for Record(), without the trailing newline) and
// returns the extended buffer. It allocates nothing beyond buf's growth.
func (f *Flow) AppendJSON(b []byte) []byte {
	var tmp [64]byte
	b = append(b, `{"id":"`...)
	id := strconv.AppendUint(tmp[:0], f.ID, 16)
	for range 16 - len(id) {
		b = append(b, '0')
	}
	b = append(b, id...)
	b = append(b, `","community_id":"`...)
	b = communityid.AppendSum(b, 0, f.Proto, f.Src, f.Dst, f.SrcPort, f.DstPort)
	b = append(b, `","proto":"`...)
	b = record.AppendProtoName(b, f.Proto)
	b = append(b, `","proto_num":`...)
	b = strconv.AppendUint(b, uint64(f.Proto), 10)
	b = append(b, `,"src_ip":"`...)
	b = f.Src.AppendTo(b)
	b = append(b, `","src_port":`...)
	b = strconv.AppendUint(b, uint64(f.SrcPort), 10)
	b = append(b, `,"dst_ip":"`...)
	b = f.Dst.AppendTo(b)
	b = append(b, `","dst_port":`...)
	b = strconv.AppendUint(b, uint64(f.DstPort), 10)
	if f.HasVLAN && f.VLAN != 0 {
		b = append(b, `,"vlan":`...)
		b = strconv.AppendUint(b, uint64(f.VLAN), 10)
	}
	b = append(b, `,"first_seen":"`...)
	b = time.Unix(0, f.First).UTC().AppendFormat(b, record.TimeLayout)
	b = append(b, `","last_seen":"`...)
	b = time.Unix(0, f.Last).UTC().AppendFormat(b, record.TimeLayout)
	b = append(b, `","packets_sent":`...)
	b = strconv.AppendUint(b, f.Packets[0], 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendUint(b, f.Bytes[0], 10)
	b = append(b, `,"packets_received":`...)
	b = strconv.AppendUint(b, f.Packets[1], 10)
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendUint(b, f.Bytes[1], 10)
	if f.Proto == decode.ProtoTCP && f.TCPFlags != 0 {
		b = append(b, `,"tcp_flags":"`...)
		for i := range 8 {
			if f.TCPFlags&(1<<i) != 0 {
				b = append(b, tcpFlagLetters[i])
			}
		}
		b = append(b, '"')
	}
	if f.historyLen > 0 {
		b = append(b, `,"history":"`...)
		b = append(b, f.history[:f.historyLen]...)
		b = append(b, '"')
	}
	b = append(b, `,"state":"`...)
	b = append(b, f.State...)
	b = append(b, '"')
	if f.Direction != "" {
		b = append(b, `,"direction":"`...)
		b = append(b, f.Direction...)
		b = append(b, '"')
	}
	if f.EndReason != "" {
		b = append(b, `,"end_reason":"`...)
		b = append(b, f.EndReason...)
		b = append(b, '"')
	}
	return append(b, '}')
}
