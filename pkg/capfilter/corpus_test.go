package capfilter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapDir holds the shared capture corpus: the repository's parent
// directory holds "shared".
var pcapDir = filepath.Join("..", "..", "..", "shared", "pcaps")

// corpusFrame is one packet of the corpus.
type corpusFrame struct {
	file     string
	index    int // packet number in the file, from 1
	linkType uint16
	data     []byte
}

// corpusSpecs are the filters checked on every packet of the corpus, as
// flag values (port, ip, proto). Each must match some packets and reject
// others.
var corpusSpecs = [][3]string{
	{"53", "", ""},
	{"80", "", ""},
	{"443", "", ""},
	{"", "10.0.0.0/8", ""},
	{"", "192.168.0.0/16", ""},
	{"", "0.0.0.0/0", ""},
	{"", "2001:db8::/32", ""},
	{"", "fe80::/10", ""},
	{"", "::/0", ""},
	{"", "", "tcp"},
	{"", "", "udp"},
	{"", "", "icmp"},
	{"", "", "icmpv6"},
	{"", "", "sctp"},
	{"", "", "47"},
	{"53", "", "udp"},
	{"80", "", "tcp"},
	{"53", "192.168.0.0/16", "udp"},
	{"", "0.0.0.0/0", "tcp"},
	{"443", "::/0", "tcp"},
}

var loadCorpus = sync.OnceValues(func() ([]corpusFrame, error) {
	var frames []corpusFrame
	for _, dir := range []string{"conformance", "robustness"} {
		names, err := filepath.Glob(filepath.Join(pcapDir, dir, "*"))
		if err != nil {
			return nil, err
		}
		sort.Strings(names)
		for _, name := range names {
			frames = append(frames, readCapture(name)...)
		}
	}
	if len(frames) == 0 {
		return nil, errors.New("no packets in the corpus")
	}
	return frames, nil
})

// readCapture returns the packets of a pcap or pcapng file, up to the first
// read error (many robustness files are truncated or malformed). A file
// that does not open yields nothing.
func readCapture(name string) []corpusFrame {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	base := filepath.Join(filepath.Base(filepath.Dir(name)), filepath.Base(name))

	var frames []corpusFrame
	add := func(lt layers.LinkType, data []byte) {
		frames = append(frames, corpusFrame{file: base, index: len(frames) + 1, linkType: uint16(lt), data: data})
	}
	if binary.BigEndian.Uint32(magic[:]) == 0x0a0d0d0a { // pcapng section header block
		r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil
		}
		for {
			data, ci, err := r.ReadPacketData()
			if err != nil {
				return frames
			}
			iface, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				return frames
			}
			add(iface.LinkType, data)
		}
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil
	}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return frames
		}
		add(r.LinkType(), data)
	}
}

func corpus(t *testing.T) []corpusFrame {
	t.Helper()
	if _, err := os.Stat(pcapDir); err != nil {
		t.Skipf("capture corpus not found at %s: %v", pcapDir, err)
	}
	frames, err := loadCorpus()
	if err != nil {
		t.Fatalf("load corpus: %v", err)
	}
	return frames
}

// TestSpec_CorpusAgreement runs each corpus spec's compiled program in
// x/net/bpf's VM and Match on every packet of the corpus and requires the
// same verdict, and that each spec both matches and rejects packets. For a
// link type Compile refuses, Match must reject every packet.
func TestSpec_CorpusAgreement(t *testing.T) {
	frames := corpus(t)
	const snaplen = 262144
	for _, flags := range corpusSpecs {
		s := mustParse(t, flags[0], flags[1], flags[2])
		t.Run(s.String(), func(t *testing.T) {
			vms := map[uint16]func([]byte) int{}
			var matched, rejected, disagree int
			for _, f := range frames {
				got := s.Match(f.linkType, f.data)
				if got {
					matched++
				} else {
					rejected++
				}
				vm, ok := vms[f.linkType]
				if !ok {
					if _, err := s.Compile(f.linkType, snaplen); errors.Is(err, ErrLinkType) {
						vm = nil
					} else {
						vm = vmFilter(t, s, f.linkType, snaplen)
					}
					vms[f.linkType] = vm
				}
				if vm == nil {
					if got {
						t.Errorf("%s #%d: Match accepts a frame of unsupported link type %d", f.file, f.index, f.linkType)
					}
					continue
				}
				n := vm(f.data)
				if n != 0 && n != snaplen {
					t.Fatalf("%s #%d: program returned %d, want 0 or %d", f.file, f.index, n, snaplen)
				}
				if vmGot := n != 0; vmGot != got {
					disagree++
					if disagree <= 10 {
						t.Errorf("%s #%d (link type %d, %d bytes): Match %v, BPF %v\n% x",
							f.file, f.index, f.linkType, len(f.data), got, vmGot, f.data[:min(len(f.data), 96)])
					}
				}
			}
			t.Logf("%d frames: %d matched, %d rejected", len(frames), matched, rejected)
			if disagree > 0 {
				t.Errorf("%d disagreements", disagree)
			}
			if matched == 0 || rejected == 0 {
				t.Errorf("%d matched, %d rejected: the spec must do both", matched, rejected)
			}
		})
	}
}

// TestSpec_Tcpdump compares Match with tcpdump's own filter (libpcap's
// compiler) on the corpus: for every supported link type, the corpus
// packets of that type are written to one capture, tcpdump filters it with
// the equivalent expression, and the packets it keeps must be exactly those
// Match accepts. Packets where this package deliberately differs from
// libpcap are left out: Ethernet frames with a 0x9100 tag (libpcap's "vlan"
// takes it, this package does not) and BSD NULL frames whose address family
// is not IPv4 in this machine's byte order (libpcap compares the family in
// the file's byte order only, and takes the compiling host's AF_INET6, 10
// on Linux, for IPv6).
func TestSpec_Tcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		tcpdump = "/usr/bin/tcpdump"
		if _, err := os.Stat(tcpdump); err != nil {
			t.Skip("tcpdump not found")
		}
	}
	frames := corpus(t)

	groups := map[uint16][]corpusFrame{}
	for _, f := range frames {
		lt := f.linkType
		if lt == linkRaw12 || lt == linkRaw14 {
			lt = linkRaw
		}
		if _, err := (Spec{HasProto: true}).Compile(lt, 1); err != nil || !libpcapAgrees(f) {
			continue
		}
		groups[lt] = append(groups[lt], f)
	}
	linkTypes := make([]uint16, 0, len(groups))
	for lt := range groups {
		linkTypes = append(linkTypes, lt)
	}
	slices.Sort(linkTypes)

	keptBySpec := map[string]int{}
	total := 0
	for _, lt := range linkTypes {
		group := groups[lt]
		total += len(group)
		t.Logf("link type %d: %d packets", lt, len(group))
		capture := writeCapture(t, lt, group)
		for _, flags := range corpusSpecs {
			s := mustParse(t, flags[0], flags[1], flags[2])
			t.Run(fmt.Sprintf("linktype %d/%s", lt, s), func(t *testing.T) {
				expr := tcpdumpExpr(s, lt)
				kept := runTcpdump(t, tcpdump, expr, capture)
				keptBySpec[s.String()] += len(kept)
				var differ int
				for i, f := range group {
					if got, want := s.Match(f.linkType, f.data), kept[i]; got != want {
						differ++
						if differ <= 10 {
							t.Errorf("%s #%d (%d bytes): Match %v, tcpdump %q %v\n% x",
								f.file, f.index, len(f.data), got, expr, want, f.data[:min(len(f.data), 96)])
						}
					}
				}
				if differ > 0 {
					t.Errorf("%d of %d packets differ", differ, len(group))
				}
			})
		}
	}
	// tcpdump must have had something to say about every spec.
	for _, flags := range corpusSpecs {
		s := mustParse(t, flags[0], flags[1], flags[2]).String()
		if n := keptBySpec[s]; n == 0 || n == total {
			t.Errorf("%s: tcpdump kept %d of %d packets, want some but not all", s, n, total)
		}
	}
}

// libpcapAgrees reports whether f is a frame where this package's link-layer
// handling is meant to agree with libpcap's (see TestSpec_Tcpdump).
func libpcapAgrees(f corpusFrame) bool {
	if len(f.data) > 262144 {
		return false // beyond libpcap's largest snapshot length
	}
	switch f.linkType {
	case linkEthernet:
		for off := 12; off+2 <= len(f.data); off += 4 {
			switch binary.BigEndian.Uint16(f.data[off:]) {
			case 0x9100:
				return false
			case etherVLAN, etherQinQ:
				continue
			}
			break
		}
	case linkNull:
		if len(f.data) < 4 {
			return true
		}
		le, be := binary.LittleEndian.Uint32(f.data), binary.BigEndian.Uint32(f.data)
		isFamily := func(v uint32) bool {
			return v == afInet || v == afInet6BSD || v == afInet6FBS || v == afInet6Mac || v == 10
		}
		return le == afInet || (!isFamily(le) && !isFamily(be))
	}
	return true
}

// tcpdumpExpr is the libpcap expression for s. A bare "net" would also
// match ARP, so the address test names its IP version. On Ethernet, the
// expression is repeated behind one and two "vlan" keywords (each shifts
// the following tests by a tag).
func tcpdumpExpr(s Spec, linkType uint16) string {
	var parts []string
	if s.HasPort {
		parts = append(parts, fmt.Sprintf("port %d", s.Port))
	}
	if s.HasIP {
		v := "ip"
		if s.Prefix.Addr().Is6() {
			v = "ip6"
		}
		parts = append(parts, fmt.Sprintf("%s net %s", v, s.Prefix.Masked()))
	}
	if s.HasProto {
		parts = append(parts, fmt.Sprintf("proto %d", s.Proto))
	}
	e := "(" + strings.Join(parts, " and ") + ")"
	if linkType == linkEthernet {
		e = fmt.Sprintf("%s or (vlan and (%s or (vlan and %s)))", e, e, e)
	}
	return e
}

// writeCapture returns a pcap file of the frames, the i-th stamped i+1
// seconds after the epoch so tcpdump's output can be mapped back.
func writeCapture(t *testing.T, linkType uint16, frames []corpusFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(262144, layers.LinkType(linkType)); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(i+1), 0), CaptureLength: len(f.data), Length: len(f.data)}
		if err := w.WritePacket(ci, f.data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// runTcpdump filters capture with tcpdump and returns which packets (by
// position) it kept.
func runTcpdump(t *testing.T, tcpdump, expr string, capture []byte) map[int]bool {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), tcpdump, "-n", "-r", "-", "-w", "-", expr)
	cmd.Stdin = bytes.NewReader(capture)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && strings.Contains(stderr.String(), "expression rejects all packets") {
		// libpcap proved the filter can never match this link type (an
		// IPv6 prefix on raw IPv4, say) and refuses to run it.
		return map[int]bool{}
	}
	if err != nil {
		t.Fatalf("tcpdump %q: %v: %s", expr, err, stderr.Bytes())
	}
	r, err := pcapgo.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("read tcpdump output: %v", err)
	}
	kept := map[int]bool{}
	for {
		_, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return kept
		}
		if err != nil {
			t.Fatalf("read tcpdump output: %v", err)
		}
		kept[int(ci.Timestamp.Unix())-1] = true
	}
}
