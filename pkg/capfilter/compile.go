package capfilter

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// EtherTypes and address families the link-layer dispatch recognises.
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100 // IEEE 802.1Q
	etherQinQ  = 0x88a8 // IEEE 802.1ad
	afInet     = 2      // AF_INET on every BSD
	afInet6BSD = 24     // AF_INET6 on NetBSD, OpenBSD, BSD/OS
	afInet6FBS = 28     // AF_INET6 on FreeBSD, DragonFly BSD
	afInet6Mac = 30     // AF_INET6 on macOS
	ipv6Frag   = 44     // IPv6 fragment header
)

// Compile returns the classic BPF program for s, for frames of the given
// link type, ready for SO_ATTACH_FILTER. A frame the filter accepts makes
// the program return snaplen, so the kernel also truncates it to snaplen
// bytes; a rejected frame returns 0. An empty Spec compiles to the single
// instruction "ret snaplen" for any link type.
//
// Compile returns an error wrapping ErrLinkType for a link type it does not
// support (see the package documentation), and an error when snaplen is 0
// or s.HasIP is set with an invalid Prefix. The returned slice is new and
// owned by the caller.
func (s Spec) Compile(linkType uint16, snaplen uint32) ([]bpf.RawInstruction, error) {
	prog, err := s.program(linkType, snaplen)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble filter %q: %w", s, err)
	}
	return raw, nil
}

// program builds the filter as bpf.Instructions.
func (s Spec) program(linkType uint16, snaplen uint32) ([]bpf.Instruction, error) {
	if snaplen == 0 {
		return nil, errors.New("compile filter: snaplen must be at least 1")
	}
	if s.IsEmpty() {
		return []bpf.Instruction{bpf.RetConstant{Val: snaplen}}, nil
	}
	if s.HasIP && !s.Prefix.IsValid() {
		return nil, fmt.Errorf("compile filter: invalid IP prefix %v", s.Prefix)
	}

	g := &gen{spec: s, snaplen: snaplen, a: &asm{}}
	a := g.a
	// Each dispatch on the link-layer header is followed by its own "ret
	// #0" and by the IP blocks it jumps to, so that no conditional jump
	// (whose offsets are 8 bits) has to cross more than two blocks.
	switch linkType {
	case linkEthernet:
		// EtherType at 12, after up to two 802.1Q/802.1ad tags of 4 bytes.
		for tags := 0; tags <= 2; tags++ {
			off := uint32(12 + 4*tags)
			v4, v6, more, drop := a.newLabel(), a.newLabel(), a.newLabel(), a.newLabel()
			a.load(off, 2)
			a.jeq(etherIPv4, v4, next)
			if tags < 2 {
				a.jeq(etherIPv6, v6, next)
				a.jeq(etherVLAN, more, next)
				a.jeq(etherQinQ, more, drop)
			} else {
				a.jeq(etherIPv6, v6, drop)
			}
			g.drop(drop)
			g.blocks(v4, v6, drop, off+2)
			a.place(more)
		}
	case linkRaw, linkRaw12, linkRaw14:
		v4, v6, drop := a.newLabel(), a.newLabel(), a.newLabel()
		a.load(0, 1)
		a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
		a.jeq(0x40, v4, next)
		a.jeq(0x60, v6, drop)
		g.drop(drop)
		g.blocks(v4, v6, drop, 0)
	case linkIPv4:
		if !s.wantIPv4() {
			g.drop(a.newLabel())
			break
		}
		g.ipv4(0)
	case linkIPv6:
		if !s.wantIPv6() {
			g.drop(a.newLabel())
			break
		}
		g.ipv6(0)
	case linkSLL, linkSLL2:
		// packet(7): the protocol is in network byte order.
		off, nh := uint32(14), uint32(16)
		if linkType == linkSLL2 {
			off, nh = 0, 20
		}
		v4, v6, drop := a.newLabel(), a.newLabel(), a.newLabel()
		a.load(off, 2)
		a.jeq(etherIPv4, v4, next)
		a.jeq(etherIPv6, v6, drop)
		g.drop(drop)
		g.blocks(v4, v6, drop, nh)
	case linkNull, linkLoop:
		// The family is a 32-bit word in the capturing host's byte order
		// (NULL) or network order (LOOP): accept both.
		v4, v6, drop := a.newLabel(), a.newLabel(), a.newLabel()
		a.load(0, 4)
		a.jeq(afInet, v4, next)
		a.jeq(swap32(afInet), v4, next)
		fams := []uint32{afInet6BSD, afInet6FBS, afInet6Mac}
		for i, af := range fams {
			a.jeq(af, v6, next)
			f := next
			if i == len(fams)-1 {
				f = drop
			}
			a.jeq(swap32(af), v6, f)
		}
		g.drop(drop)
		g.blocks(v4, v6, drop, 4)
	default:
		return nil, fmt.Errorf("compile filter for link type %d: %w", linkType, ErrLinkType)
	}
	return a.finish()
}

func swap32(v uint32) uint32 {
	return v>>24 | (v>>8)&0xff00 | (v<<8)&0xff0000 | v<<24
}

// gen emits the IP-level tests of a Spec.
type gen struct {
	spec    Spec
	snaplen uint32
	a       *asm
}

// blocks places the IPv4 and IPv6 blocks for a network header at off under
// the labels v4 and v6; a family the Spec rules out goes to drop instead.
func (g *gen) blocks(v4, v6, drop label, off uint32) {
	if g.spec.wantIPv4() {
		g.a.place(v4)
		g.ipv4(off)
	} else {
		g.a.alias(v4, drop)
	}
	if g.spec.wantIPv6() {
		g.a.place(v6)
		g.ipv6(off)
	} else {
		g.a.alias(v6, drop)
	}
}

// drop places a "ret #0" under the label l.
func (g *gen) drop(l label) {
	g.a.place(l)
	g.a.emit(bpf.RetConstant{Val: 0})
}

// ipv4 emits the tests for an IPv4 header at off, ending in the block's own
// accept and reject returns.
func (g *gen) ipv4(off uint32) {
	s, a := g.spec, g.a
	acc, rej := a.newLabel(), a.newLabel()
	if s.HasProto {
		a.load(off+9, 1)
		a.jeq(uint32(s.Proto), next, rej)
	}
	if s.HasIP {
		g.prefix(off+12, off+16, 1, rej)
	}
	if s.HasPort {
		a.load(off+9, 1)
		g.portProto(rej)
		// Only a first fragment (offset 0) holds the transport header.
		a.load(off+6, 2)
		a.jset(0x1fff, rej, next)
		a.emit(bpf.LoadMemShift{Off: off}) // X = 4 * IHL
		a.emit(bpf.LoadIndirect{Off: off, Size: 2})
		a.jeq(uint32(s.Port), acc, next)
		a.emit(bpf.LoadIndirect{Off: off + 2, Size: 2})
		a.jeq(uint32(s.Port), acc, rej)
	}
	g.rets(acc, rej)
}

// portProto emits "the protocol in A is TCP, UDP or SCTP": it falls through
// when it is and jumps to rej otherwise.
func (g *gen) portProto(rej label) {
	a := g.a
	ok := a.newLabel()
	a.jeq(protoTCP, ok, next)
	a.jeq(protoUDP, ok, next)
	a.jeq(protoSCTP, ok, rej)
	a.place(ok)
}

// ipv6 emits the tests for an IPv6 header at off.
func (g *gen) ipv6(off uint32) {
	s, a := g.spec, g.a
	acc, rej := a.newLabel(), a.newLabel()
	if s.HasProto {
		// libpcap's "ip6 proto N": the fixed header's next header, or that
		// of a fragment header right after it.
		a.load(off+6, 1)
		if s.Proto == ipv6Frag {
			a.jeq(uint32(s.Proto), next, rej)
		} else {
			frag := a.newLabel()
			ok := a.newLabel()
			a.jeq(uint32(s.Proto), ok, next)
			a.jeq(ipv6Frag, frag, rej)
			a.place(frag)
			a.load(off+40, 1)
			a.jeq(uint32(s.Proto), ok, rej)
			a.place(ok)
		}
	}
	if s.HasIP {
		g.prefix(off+8, off+24, 4, rej)
	}
	if s.HasPort {
		// The ports follow the 40-byte fixed header only when its next
		// header is the transport; extension headers are not walked.
		a.load(off+6, 1)
		g.portProto(rej)
		a.load(off+40, 2)
		a.jeq(uint32(s.Port), acc, next)
		a.load(off+42, 2)
		a.jeq(uint32(s.Port), acc, rej)
	}
	g.rets(acc, rej)
}

// prefix emits "source or destination in the prefix" for addresses of
// words 32-bit words at src and dst; it falls through when one matches and
// jumps to rej otherwise. Like libpcap, it loads only the words the prefix
// covers: a /0 prefix tests nothing.
func (g *gen) prefix(src, dst uint32, words int, rej label) {
	a := g.a
	p := g.spec.Prefix.Masked()
	addr := p.Addr().AsSlice()
	type word struct {
		off        uint32
		mask, want uint32
	}
	var ws []word
	for i := range words {
		bits := min(max(p.Bits()-32*i, 0), 32)
		if bits == 0 {
			break
		}
		mask := ^uint32(0) << (32 - bits)
		v := uint32(addr[4*i])<<24 | uint32(addr[4*i+1])<<16 | uint32(addr[4*i+2])<<8 | uint32(addr[4*i+3])
		ws = append(ws, word{off: uint32(4 * i), mask: mask, want: v & mask})
	}
	if len(ws) == 0 {
		return
	}
	ok, tryDst := a.newLabel(), a.newLabel()
	for i, w := range ws {
		a.load(src+w.off, 4)
		if w.mask != ^uint32(0) {
			a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: w.mask})
		}
		t := next
		if i == len(ws)-1 {
			t = ok
		}
		a.jeq(w.want, t, tryDst)
	}
	a.place(tryDst)
	for _, w := range ws {
		a.load(dst+w.off, 4)
		if w.mask != ^uint32(0) {
			a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: w.mask})
		}
		a.jeq(w.want, next, rej)
	}
	a.place(ok)
}

// rets places a block's accept and reject returns.
func (g *gen) rets(acc, rej label) {
	g.a.place(acc)
	g.a.emit(bpf.RetConstant{Val: g.snaplen})
	g.a.place(rej)
	g.a.emit(bpf.RetConstant{Val: 0})
}

// label names a position in the program being assembled. The zero label,
// next, is the following instruction; others come from asm.newLabel.
type label int

const next label = 0

// asm assembles a program whose conditional jumps go forward to labels.
type asm struct {
	prog    []bpf.Instruction
	places  []int           // label -> instruction index, -1 until placed
	aliases map[label]label // label -> label it stands for
	jumps   []jump
}

// jump is a conditional jump waiting for its targets to be placed.
type jump struct {
	at            int
	cond          bpf.JumpTest
	val           uint32
	ifTrue, ifNot label
}

func (a *asm) newLabel() label {
	if len(a.places) == 0 {
		a.places = append(a.places, 0) // next
	}
	a.places = append(a.places, -1)
	return label(len(a.places) - 1)
}

func (a *asm) place(l label) { a.places[l] = len(a.prog) }

func (a *asm) alias(l, to label) {
	if a.aliases == nil {
		a.aliases = map[label]label{}
	}
	a.aliases[l] = to
}

func (a *asm) emit(ins bpf.Instruction) { a.prog = append(a.prog, ins) }

func (a *asm) load(off uint32, size int) {
	a.emit(bpf.LoadAbsolute{Off: off, Size: size})
}

func (a *asm) jeq(val uint32, t, f label) { a.jump(bpf.JumpEqual, val, t, f) }

func (a *asm) jset(val uint32, t, f label) { a.jump(bpf.JumpBitsSet, val, t, f) }

func (a *asm) jump(cond bpf.JumpTest, val uint32, t, f label) {
	a.jumps = append(a.jumps, jump{at: len(a.prog), cond: cond, val: val, ifTrue: t, ifNot: f})
	a.emit(nil) // filled in by finish
}

// finish resolves the jumps and returns the program.
func (a *asm) finish() ([]bpf.Instruction, error) {
	skip := func(at int, l label) (uint8, error) {
		for {
			to, ok := a.aliases[l]
			if !ok {
				break
			}
			l = to
		}
		if l == next {
			return 0, nil
		}
		idx := a.places[l]
		if idx < 0 {
			return 0, fmt.Errorf("compile filter: internal error: label %d not placed", l)
		}
		n := idx - at - 1
		if n < 0 || n > 255 {
			return 0, fmt.Errorf("compile filter: internal error: jump of %d instructions", n)
		}
		return uint8(n), nil
	}
	for _, j := range a.jumps {
		t, err := skip(j.at, j.ifTrue)
		if err != nil {
			return nil, err
		}
		f, err := skip(j.at, j.ifNot)
		if err != nil {
			return nil, err
		}
		a.prog[j.at] = bpf.JumpIf{Cond: j.cond, Val: j.val, SkipTrue: t, SkipFalse: f}
	}
	return a.prog, nil
}
