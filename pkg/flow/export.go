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
	f.ID = e.id
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
