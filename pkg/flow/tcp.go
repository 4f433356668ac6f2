package flow

import "github.com/lightshark-dev/lightshark-mini/pkg/decode"

// TCP endpoint states, after Zeek's TCP_Endpoint (src/analyzer/protocol/tcp):
// conn_state is derived from the pair of them exactly as Zeek's
// base/protocols/conn/main.zeek does.
const (
	tcpInactive uint8 = iota
	tcpSynSent
	tcpSynAckSent
	tcpPartial
	tcpEstablished
	tcpClosed
	tcpReset
)

// Bits of entry.seen (per direction, shifted by 8 for the responder) for the
// history letters Zeek records at most once per direction, and for facts
// conn_state needs.
const (
	seenA    uint16 = 1 << iota // pure ACK
	seenD                       // data
	seenI                       // FIN+RST
	seenQ                       // SYN with FIN or RST
	seenS                       // SYN (or SYN-ACK) recorded
	seenF                       // FIN recorded
	seenR                       // RST recorded
	seenData                    // any payload (conn_state's "size > 0")
)

func (e *entry) setState(dir int, s uint8) {
	e.prevState[dir] = e.tcpState[dir]
	e.tcpState[dir] = s
}

// tcpUpdate runs Zeek's per-endpoint state machine (UpdateStateMachine in
// TCPSessionAdapter.cc, without the sequence-number checks) and records the
// history letters, for a segment from direction dir (0: originator).
func (e *entry) tcpUpdate(dir int, p *Summary) {
	fl := p.flags
	syn, ack, fin, rst := fl&decode.TCPSyn != 0, fl&decode.TCPAck != 0, fl&decode.TCPFin != 0, fl&decode.TCPRst != 0
	isOrig := dir == 0
	peer := 1 - dir
	e.tcpFlags |= fl

	e.tcpHistory(dir, p, syn, ack, fin, rst)

	switch e.tcpState[dir] {
	case tcpInactive:
		if syn {
			if isOrig {
				if ack {
					e.setState(dir, tcpSynAckSent)
				} else {
					e.setState(dir, tcpSynSent)
				}
			} else {
				if e.tcpState[peer] == tcpSynSent {
					e.setState(peer, tcpEstablished)
				}
				e.setState(dir, tcpEstablished)
			}
		}
		if fin {
			e.setState(dir, tcpClosed)
		}
		if rst {
			e.setState(dir, tcpReset)
		}
		if e.tcpState[dir] == tcpInactive {
			switch {
			case !isOrig && p.bits&sumPayload == 0 && e.tcpState[0] == tcpSynSent:
				// An ACK of the SYN before the SYN-ACK: not a partial connection.
			case ack && e.tcpState[peer] == tcpEstablished:
				e.setState(dir, tcpEstablished)
			default:
				e.setState(dir, tcpPartial)
			}
		}
	case tcpSynSent, tcpSynAckSent:
		if fin {
			e.setState(dir, tcpClosed)
		}
		if rst {
			e.setState(dir, tcpReset)
		}
	case tcpEstablished, tcpPartial:
		if syn && e.tcpState[dir] == tcpPartial && e.tcpState[peer] == tcpInactive && !ack {
			e.setState(dir, tcpSynSent)
		}
		if fin && !rst {
			e.setState(dir, tcpClosed)
			if e.tcpState[peer] == tcpReset && e.prevState[peer] == tcpClosed {
				// FIN then RST from the peer: a normal termination.
				e.setState(peer, tcpClosed)
			}
		}
		if rst {
			e.setState(dir, tcpReset)
		}
	case tcpClosed:
		if rst && e.tcpState[peer] != tcpClosed {
			e.setState(dir, tcpReset)
		}
	case tcpReset:
	}
}

// tcpHistory appends Zeek's history letters for one segment
// (update_history in TCPSessionAdapter.cc): upper case from the originator.
func (e *entry) tcpHistory(dir int, p *Summary, syn, ack, fin, rst bool) {
	bits := 0
	for _, b := range [3]bool{syn, fin, rst} {
		if b {
			bits++
		}
	}
	switch {
	case bits > 1:
		if fin && rst {
			e.once(dir, seenI, 'I')
		} else {
			e.once(dir, seenQ, 'Q')
		}
	case syn:
		c := byte('S')
		if ack {
			c = 'H'
		}
		// A SYN is recorded again when its sequence number changes.
		if e.seen>>(8*dir)&seenS == 0 || e.synSeq[dir] != p.seq {
			e.seen |= seenS << (8 * dir)
			e.addHistory(dir, c)
		}
		e.synSeq[dir] = p.seq
	case fin:
		e.once(dir, seenF, 'F')
	case rst:
		e.once(dir, seenR, 'R')
	default:
		if p.bits&sumPayload != 0 {
			e.once(dir, seenD, 'D')
		} else if ack {
			e.once(dir, seenA, 'A')
		}
	}
	if p.bits&sumPayload != 0 {
		e.seen |= seenData << (8 * dir)
	}
}

func (e *entry) once(dir int, bit uint16, c byte) {
	b := bit << (8 * dir)
	if e.seen&b != 0 {
		return
	}
	e.seen |= b
	e.addHistory(dir, c)
}

func (e *entry) addHistory(dir int, c byte) {
	if dir == 1 {
		c += 'a' - 'A'
	}
	if c == '^'+('a'-'A') {
		c = '^'
	}
	if int(e.histLen) < len(e.hist) {
		e.hist[e.histLen] = c
		e.histLen++
	}
}

// tcpConnState is Zeek's conn_state for a TCP connection
// (base/protocols/conn/main.zeek).
func (e *entry) tcpConnState() string {
	os, rs := e.tcpState[0], e.tcpState[1]
	oInactive := os == tcpInactive || os == tcpPartial
	rInactive := rs == tcpInactive || rs == tcpPartial
	noData := e.seen&(seenData|seenData<<8) == 0
	switch {
	case rs == tcpReset:
		if os == tcpSynSent || os == tcpSynAckSent || (os == tcpReset && noData) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == tcpReset:
		if rInactive {
			if e.historyIsRSTOS0() {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == tcpClosed && os == tcpClosed:
		return "SF"
	case os == tcpClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == tcpClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == tcpSynSent && rs == tcpInactive:
		return "S0"
	case os == tcpEstablished && rs == tcpEstablished:
		return "S1"
	}
	return "OTH"
}

// historyIsRSTOS0 matches Zeek's /\^?S[^HAFGIQ]*R.*/ against the history.
func (e *entry) historyIsRSTOS0() bool {
	h := e.hist[:e.histLen]
	if len(h) > 0 && h[0] == '^' {
		h = h[1:]
	}
	if len(h) == 0 || h[0] != 'S' {
		return false
	}
	for _, c := range h[1:] {
		switch c {
		case 'R':
			return true
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		}
	}
	return false
}

// closing reports whether the connection has seen a FIN or RST, which
// shortens its idle timeout.
func (e *entry) closing() bool {
	for _, s := range e.tcpState {
		if s == tcpClosed || s == tcpReset {
			return true
		}
	}
	return false
}

// tcpFlagLetters are the letters of tcp_flags, in the bit order of the TCP
// header's flags byte (FIN first).
const tcpFlagLetters = "FSRPAUEC"
