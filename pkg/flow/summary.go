package flow

import "github.com/lightshark-dev/lightshark-mini/pkg/decode"

// Summary is what the table needs of one decoded packet that is not an IP
// fragment: its canonical key, direction, time, length and TCP fields, in
// 64 bytes (one cache line). A pipeline that decodes on one goroutine and
// runs the table on another hands Summaries across, so the table's
// goroutine reads one line the other core wrote per packet instead of the
// three of a decode.Packet, and the key is built on the decoding side. The
// zero value is not a valid summary; fill it with Set.
type Summary struct {
	k      key
	ts     int64 // capture time, Unix nanoseconds
	length uint32
	seq    uint32
	vlan   uint16
	flags  uint8 // TCP flags
	bits   uint8 // sum* bits
}

const (
	sumAToB    uint8 = 1 << iota // the packet travels from the key's A to B
	sumVLAN                      // decode.Packet.HasVLAN
	sumPorts                     // decode.Packet.HasPorts
	sumPayload                   // decode.Packet.Payload > 0
)

// Set fills s from p, captured at ts (Unix nanoseconds), and reports
// whether p has a summary. IP fragments have none (tying them to their
// flow needs the whole packet): pass them to Table.Update instead.
func (s *Summary) Set(p *decode.Packet, ts int64) bool {
	if p.Frag != decode.NotFragment {
		return false
	}
	s.set(p, ts)
	return true
}

func (s *Summary) set(p *decode.Packet, ts int64) {
	sport, dport := flowPorts(p)
	var bits uint8
	if makeKey(&s.k, p, sport, dport) {
		bits |= sumAToB
	}
	if p.HasVLAN {
		bits |= sumVLAN
	}
	if p.HasPorts {
		bits |= sumPorts
	}
	if p.Payload > 0 {
		bits |= sumPayload
	}
	s.ts, s.length, s.seq, s.vlan, s.flags, s.bits = ts, p.Length, p.Seq, p.VLAN, p.TCPFlags, bits
}

// UpdateSummary is Update for a packet summarized by s.
func (t *Table) UpdateSummary(s *Summary) Handle {
	t.advance(s.ts)
	i, _ := t.packet(s)
	return Handle(i + 1)
}
