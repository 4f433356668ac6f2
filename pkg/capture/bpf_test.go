package capture

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// skb is what a socket filter sees of a frame: its bytes and the
// ancillary values the kernel's extension loads read.
type skb struct {
	data    []byte
	proto   uint32 // ntohs(skb->protocol)
	pkttype uint32
	ifindex uint32
}

// runFilter interprets the subset of classic BPF that kernelProgram emits
// plus absolute loads, as the kernel would, and returns the accepted
// length (0: rejected). golang.org/x/net/bpf's VM does not implement the
// extension loads the guards use.
func runFilter(t *testing.T, raw []bpf.RawInstruction, p skb) uint32 {
	t.Helper()
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble: %v", raw)
	}
	var a, x uint32
	for pc := 0; pc < len(prog); pc++ {
		switch ins := prog[pc].(type) {
		case bpf.LoadExtension:
			switch ins.Num {
			case bpf.ExtProto:
				a = p.proto
			case bpf.ExtType:
				a = p.pkttype
			case bpf.ExtInterfaceIndex:
				a = p.ifindex
			default:
				t.Fatalf("extension %v not modelled", ins.Num)
			}
		case bpf.LoadAbsolute:
			if int(ins.Off)+ins.Size > len(p.data) {
				return 0
			}
			switch ins.Size {
			case 1:
				a = uint32(p.data[ins.Off])
			case 2:
				a = uint32(binary.BigEndian.Uint16(p.data[ins.Off:]))
			case 4:
				a = binary.BigEndian.Uint32(p.data[ins.Off:])
			}
		case bpf.LoadConstant:
			if ins.Dst == bpf.RegA {
				a = ins.Val
			} else {
				x = ins.Val
			}
		case bpf.JumpIf:
			var cond bool
			switch ins.Cond {
			case bpf.JumpEqual:
				cond = a == ins.Val
			case bpf.JumpNotEqual: // Disassemble's form of "jeq" with jt 0
				cond = a != ins.Val
			default:
				t.Fatalf("condition %v not modelled", ins.Cond)
			}
			if cond {
				pc += int(ins.SkipTrue)
			} else {
				pc += int(ins.SkipFalse)
			}
		case bpf.Jump:
			pc += int(ins.Skip)
		case bpf.RetConstant:
			return min(ins.Val, uint32(len(p.data)))
		case bpf.RetA:
			return min(a, uint32(len(p.data)))
		default:
			t.Fatalf("instruction %v not modelled", ins)
		}
	}
	_ = x
	t.Fatal("program ran off its end")
	return 0
}

func TestKernelProgram(t *testing.T) {
	frame := make([]byte, 1000)
	binary.BigEndian.PutUint16(frame[12:], 0x0800) // an Ethernet IPv4 frame
	arp := make([]byte, 60)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)

	// The caller's filter: IPv4 only, accepting 65535 bytes.
	ipv4Only, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 1},
		bpf.RetConstant{Val: 65535},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}

	const lo = 1
	cases := []struct {
		name   string
		filter []bpf.RawInstruction
		guards programGuards
		pkt    skb
		want   uint32
	}{
		{"nil filter keeps snaplen", nil, programGuards{}, skb{data: frame}, 256},
		{"nil filter, short frame", nil, programGuards{}, skb{data: arp}, 60},
		{"filter accepts, capped at snaplen", ipv4Only, programGuards{}, skb{data: frame}, 256},
		{"filter rejects", ipv4Only, programGuards{}, skb{data: arp}, 0},
		{"ip-only passes IPv4", nil, programGuards{ipOnly: true}, skb{data: frame, proto: 0x0800}, 256},
		{"ip-only passes IPv6", nil, programGuards{ipOnly: true}, skb{data: frame, proto: 0x86dd}, 256},
		{"ip-only drops ARP", nil, programGuards{ipOnly: true}, skb{data: frame, proto: 0x0806}, 0},
		{"loopback: incoming kept", nil, programGuards{loopbackIndex: lo}, skb{data: frame, ifindex: lo, pkttype: 0}, 256},
		{"loopback: outgoing copy dropped", nil, programGuards{loopbackIndex: lo}, skb{data: frame, ifindex: lo, pkttype: packetOutgoing}, 0},
		{"loopback: outgoing on another interface kept", nil, programGuards{loopbackIndex: lo}, skb{data: frame, ifindex: 7, pkttype: packetOutgoing}, 256},
		{"both guards then filter accepts", ipv4Only, programGuards{ipOnly: true, loopbackIndex: lo}, skb{data: frame, proto: 0x0800, ifindex: 7, pkttype: packetOutgoing}, 256},
		{"both guards, lo outgoing", ipv4Only, programGuards{ipOnly: true, loopbackIndex: lo}, skb{data: frame, proto: 0x0800, ifindex: lo, pkttype: packetOutgoing}, 0},
		{"both guards, ARP", ipv4Only, programGuards{ipOnly: true, loopbackIndex: lo}, skb{data: frame, proto: 0x0806, ifindex: 7}, 0},
		{"both guards then filter rejects", ipv4Only, programGuards{ipOnly: true, loopbackIndex: lo}, skb{data: arp, proto: 0x0800, ifindex: 7}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prog, err := kernelProgram(c.filter, 256, c.guards)
			if err != nil {
				t.Fatal(err)
			}
			if got := runFilter(t, prog, c.pkt); got != c.want {
				t.Errorf("accepted %d bytes, want %d", got, c.want)
			}
		})
	}
}

func TestKernelProgram_TooLong(t *testing.T) {
	filter := make([]bpf.RawInstruction, maxInstructions)
	for i := range filter {
		filter[i] = bpf.RawInstruction{Op: opRetConstant}
	}
	if _, err := kernelProgram(filter, 256, programGuards{}); err != nil {
		t.Errorf("%d instructions refused: %v", maxInstructions, err)
	}
	if _, err := kernelProgram(filter, 256, programGuards{ipOnly: true}); err == nil {
		t.Errorf("%d instructions plus guards accepted", maxInstructions)
	}
}
