package capfilter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// FuzzMatch checks that Match and the compiled program, run in x/net/bpf's
// VM, agree on arbitrary frames and specs. The spec is built from the fuzz
// input: which filters are set (have&7), the port, the protocol, and an
// address of 4 or 16 bytes with a prefix length (bits, modulo the address
// length + 1); link selects one of the supported link types.
func FuzzMatch(f *testing.F) {
	dns4 := ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2"}, ports(5353, 53))
	frag4 := ipv4(v4opts{proto: 17, src: "10.0.0.1", dst: "10.0.0.2", fragOff: 185}, ports(53, 53))
	web6 := ipv6(6, "2001:db8::1", "2606:2800:220:1::1", ports(40000, 443))
	frag6 := ipv6(44, "2001:db8::1", "2001:db8::2", ext6(17, ports(53, 53)))
	v4 := netip.MustParseAddr("10.0.0.0").AsSlice()
	v6 := netip.MustParseAddr("2001:db8::").AsSlice()

	linkIndex := func(lt uint16) uint8 {
		for i, v := range supportedLinkTypes {
			if v == lt {
				return uint8(i)
			}
		}
		panic("unsupported link type in seed")
	}
	f.Add(linkIndex(1), uint8(7), uint16(53), uint8(17), v4, uint8(8), ether(0x0800, nil, dns4))
	f.Add(linkIndex(1), uint8(1), uint16(53), uint8(0), v4, uint8(0), ether(0x0800, []uint16{0x8100}, frag4))
	f.Add(linkIndex(1), uint8(6), uint16(0), uint8(6), v6, uint8(32), ether(0x86dd, []uint16{0x88a8, 0x8100}, web6))
	f.Add(linkIndex(101), uint8(4), uint16(0), uint8(17), v6, uint8(0), frag6)
	f.Add(linkIndex(101), uint8(3), uint16(443), uint8(0), v6, uint8(127), web6[:43])
	f.Add(linkIndex(113), uint8(5), uint16(53), uint8(17), v4, uint8(32), sll(0x0800, dns4))
	f.Add(linkIndex(276), uint8(2), uint16(0), uint8(0), v6, uint8(64), sll2(0x86dd, web6))
	f.Add(linkIndex(0), uint8(7), uint16(443), uint8(6), v6, uint8(16), null(30, binary.LittleEndian, web6))
	f.Add(linkIndex(228), uint8(1), uint16(53), uint8(0), v4, uint8(0), append([]byte{0x4f}, dns4[1:]...))
	f.Add(linkIndex(229), uint8(4), uint16(0), uint8(44), v6, uint8(0), frag6)

	f.Fuzz(func(t *testing.T, link, have uint8, port uint16, proto uint8, addr []byte, bits uint8, frame []byte) {
		lt := supportedLinkTypes[int(link)%len(supportedLinkTypes)]
		s := Spec{Port: port, HasPort: have&1 != 0, Proto: proto, HasProto: have&4 != 0}
		if have&2 != 0 {
			a, ok := netip.AddrFromSlice(addr)
			if !ok {
				return
			}
			s.Prefix, s.HasIP = netip.PrefixFrom(a, int(bits)%(a.BitLen()+1)), true
		}
		raw, err := s.Compile(lt, 65535)
		if err != nil {
			t.Fatalf("Compile(%+v, %d): %v", s, lt, err)
		}
		insts, ok := bpf.Disassemble(raw)
		if !ok {
			t.Fatalf("Compile(%+v, %d): program does not disassemble", s, lt)
		}
		vm, err := bpf.NewVM(insts)
		if err != nil {
			t.Fatalf("Compile(%+v, %d): %v", s, lt, err)
		}
		n, err := vm.Run(frame)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if got, want := s.Match(lt, frame), n != 0; got != want {
			t.Errorf("spec %+v (%s), link type %d: Match %v, BPF %v\n% x", s, s, lt, got, want, frame)
		}
	})
}
