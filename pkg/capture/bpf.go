package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Values of Linux's socket filter ancillary loads (linux/if_packet.h,
// linux/if_ether.h).
const (
	packetOutgoing = 4 // PACKET_OUTGOING: skb->pkt_type of a frame sent by this host
	ethPIPv4       = 0x0800
	ethPIPv6       = 0x86dd
)

// maxInstructions is BPF_MAXINSNS, the kernel's limit for a classic program.
const maxInstructions = 4096

// programGuards are the checks the source puts in front of the caller's
// filter.
type programGuards struct {
	// ipOnly drops every frame that is not IPv4 or IPv6 (skb->protocol),
	// for SOCK_DGRAM sources: LINKTYPE_RAW cannot carry anything else, so
	// ARP or LLDP would otherwise reach the decoder as broken IP.
	ipOnly bool
	// loopbackIndex, when not 0, drops the outgoing copy of frames on that
	// interface (the loopback): each is seen again as incoming, and
	// libpcap drops it for the same reason (pcap-linux.c,
	// linux_check_direction). Here the kernel drops it, so it is not
	// counted either.
	loopbackIndex int
}

// kernelProgram returns the program attached to the socket: the guards,
// then filter (nil accepts everything) with every constant it returns
// capped at snaplen, so that the kernel copies at most snaplen bytes.
// A filter returning the accumulator ("ret a") is left as it is.
func kernelProgram(filter []bpf.RawInstruction, snaplen uint32, g programGuards) ([]bpf.RawInstruction, error) {
	type jumpToDrop struct {
		at     int  // index of a JumpIf in prog
		ifTrue bool // which of its branches goes to the drop
	}
	var prog []bpf.Instruction
	var fixups []jumpToDrop
	if g.ipOnly {
		prog = append(prog,
			bpf.LoadExtension{Num: bpf.ExtProto},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethPIPv4, SkipTrue: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: ethPIPv6},
		)
		fixups = append(fixups, jumpToDrop{len(prog) - 1, false})
	}
	if g.loopbackIndex > 0 {
		prog = append(prog,
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipFalse: 2},
			bpf.LoadExtension{Num: bpf.ExtInterfaceIndex},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(g.loopbackIndex)},
		)
		fixups = append(fixups, jumpToDrop{len(prog) - 1, true})
	}
	if len(prog) > 0 {
		// The filter then starts as if it ran alone: A and X zero.
		prog = append(prog,
			bpf.LoadConstant{Dst: bpf.RegA, Val: 0},
			bpf.LoadConstant{Dst: bpf.RegX, Val: 0},
			bpf.Jump{Skip: 1},
			bpf.RetConstant{Val: 0},
		)
		drop := len(prog) - 1
		for _, f := range fixups {
			j := prog[f.at].(bpf.JumpIf)
			if f.ifTrue {
				j.SkipTrue = uint8(drop - f.at - 1)
			} else {
				j.SkipFalse = uint8(drop - f.at - 1)
			}
			prog[f.at] = j
		}
	}
	if filter == nil {
		prog = append(prog, bpf.RetConstant{Val: snaplen})
	}
	out, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble filter guards: %w", err)
	}
	// The caller's instructions follow unchanged (their jumps are
	// relative), except that constant returns are capped at snaplen.
	for _, ins := range filter {
		if ins.Op == opRetConstant && ins.K > snaplen {
			ins.K = snaplen
		}
		out = append(out, ins)
	}
	if len(out) > maxInstructions {
		return nil, fmt.Errorf("filter has %d instructions, more than the kernel's %d", len(out), maxInstructions)
	}
	return out, nil
}

// opRetConstant is BPF_RET|BPF_K, "ret #k" (linux/filter.h).
const opRetConstant = 0x06

// dropAll is the program that rejects every frame, attached while the ring
// is drained of what arrived before the real filter.
var dropAll = []bpf.RawInstruction{{Op: opRetConstant, K: 0}} // ret #0
