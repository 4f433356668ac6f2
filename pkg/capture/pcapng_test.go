package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestPcapngReader_MatchesPcapgo reads every pcapng capture of the corpus
// with this package's reader and with pcapgo.NgReader (WantMixedLinkType,
// as this package used it before), and compares them record by record:
// timestamp, lengths, link type and bytes, and where reading ends. The one
// difference on the corpus is checked for what it is: a Simple Packet
// Block has no time stamp, and pcapgo reports the zero time.Time (year 1,
// whose UnixNano is undefined), this reader the Unix epoch, as Wireshark
// shows it.
func TestPcapngReader_MatchesPcapgo(t *testing.T) {
	files := 0
	for _, path := range corpus(t, "conformance", "robustness") {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
			continue
		}
		files++
		t.Run(filepath.Base(path), func(t *testing.T) {
			blocks := ngPacketBlocks(raw)
			ref, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
			if err != nil {
				t.Fatalf("pcapgo: %v", err)
			}
			src, err := OpenReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("OpenReader: %v", err)
			}
			defer src.Close()
			for i := 1; ; i++ {
				wantData, ci, refErr := ref.ZeroCopyReadPacketData()
				gotData, info, err := src.ReadPacket()
				if refErr == io.EOF || err == io.EOF {
					if refErr != err {
						t.Fatalf("record %d: pcapgo ended with %v, this reader with %v", i, refErr, err)
					}
					return
				}
				if refErr != nil || err != nil {
					// Both stop at the same bad block: in the corpus,
					// a section of version 2.0 (test901).
					if refErr == nil || err == nil {
						t.Fatalf("record %d: pcapgo %v, this reader %v", i, refErr, err)
					}
					return
				}
				lt := uint16(ci.AncillaryData[0].(layers.LinkType))
				if info.Length != ci.Length || info.CaptureLength != ci.CaptureLength || info.LinkType != lt || !bytes.Equal(gotData, wantData) {
					t.Fatalf("record %d: got %+v, pcapgo %+v (link %d)", i, info, ci, lt)
				}
				if !info.Timestamp.Equal(ci.Timestamp) {
					if i > len(blocks) || blocks[i-1] != blockSPB || !ci.Timestamp.IsZero() || !info.Timestamp.Equal(time.Unix(0, 0)) {
						t.Fatalf("record %d: timestamp %s, pcapgo %s", i, info.Timestamp, ci.Timestamp)
					}
				}
			}
		})
	}
	if files < 80 {
		t.Errorf("only %d pcapng files in the corpus", files)
	}
}

// ngPacketBlocks lists the types of the packet blocks of a pcapng file, in
// order, as far as its block lengths are sane.
func ngPacketBlocks(raw []byte) []uint32 {
	var types []uint32
	var order binary.ByteOrder = binary.LittleEndian
	for off := 0; off+12 <= len(raw); {
		if binary.LittleEndian.Uint32(raw[off:]) == blockSHB {
			order = binary.LittleEndian
			if binary.BigEndian.Uint32(raw[off+8:]) == byteOrderMagic {
				order = binary.BigEndian
			}
		}
		typ, n := order.Uint32(raw[off:]), int(order.Uint32(raw[off+4:]))
		if n < 12 {
			break
		}
		if typ == blockEPB || typ == blockSPB || typ == blockPB {
			types = append(types, typ)
		}
		off += n
	}
	return types
}

// ngPacket is what a test expects of one packet.
type ngPacket struct {
	ts          time.Time
	length, cap int
	linkType    uint16
}

// outcome is how a reader read a file: its packets, and whether it ended
// with an error rather than a clean end of file.
type outcome struct {
	packets int
	fails   bool
}

func (o outcome) String() string {
	if o.fails {
		return fmt.Sprintf("%d packets, then an error", o.packets)
	}
	return fmt.Sprintf("%d packets to a clean end", o.packets)
}

// TestPcapngReader_EdgeCases reads pcapng files built for the cases the
// corpus lacks, in both byte orders, and checks every packet and how
// reading ends. The same bytes go to pcapgo and, when installed, to tshark
// (whose timestamps and lengths are compared too); where they read a file
// differently, the case says which and why.
func TestPcapngReader_EdgeCases(t *testing.T) {
	t1 := time.Unix(1500000000, 123456000).UTC()
	ts1 := uint64(1500000000123456) // t1 in microseconds
	ts2 := ts1 + 1
	t2 := t1.Add(time.Microsecond)
	f60, f40 := testFrame(60, 1), testFrame(42, 7)
	epoch := time.Unix(0, 0).UTC()
	huge := testFrame(maxSnaplen+1, 3)

	cases := []struct {
		name  string
		build func(f *ngFile) // after the first SHB, in the byte order under test
		want  []ngPacket
		end   error // io.EOF, or what the error wraps
		// How tshark 4.0.17 and pcapgo v1.7.7 read the little-endian
		// file, when not as this reader does; and why.
		tshark, pcapgo *outcome
		tsharkTimes    bool       // tshark's timestamps differ (see why)
		pcapgoPackets  []ngPacket // pcapgo's packets, where they differ
		why            string
	}{
		{
			name: "two-interfaces",
			build: func(f *ngFile) {
				f.idb(1, 0).idb(0, 0, tsresol(9)).epb(0, ts1, f60, 60).epb(1, 1500000000123456789, f40, 100)
			},
			want: []ngPacket{{t1, 60, 60, 1}, {time.Unix(1500000000, 123456789).UTC(), 100, 42, 0}},
			end:  io.EOF,
		},
		{
			name: "simple-packet-blocks",
			// SPBs use interface 0; the captured length is the original
			// length cut at its snaplen.
			build: func(f *ngFile) { f.idb(1, 50).idb(0, 0).spb(testFrame(50, 1), 1000).spb(f40, 42) },
			want:  []ngPacket{{epoch, 1000, 50, 1}, {epoch, 42, 42, 1}},
			end:   io.EOF,
			// tshark shows no time; pcapgo the zero time.Time.
			pcapgoPackets: []ngPacket{{time.Time{}, 1000, 50, 1}, {time.Time{}, 42, 42, 1}},
		},
		{
			name:  "obsolete-packet-block",
			build: func(f *ngFile) { f.idb(1, 0).idb(113, 0).pb(1, ts1, f60, 60) },
			want:  []ngPacket{{t1, 60, 60, 113}},
			end:   io.EOF,
		},
		{
			name: "skipped-blocks",
			// Name resolution, interface statistics, decryption secrets,
			// an unknown and a local-use block type; and packet options.
			build: func(f *ngFile) {
				f.idb(1, 0).
					block(4, f.nrb(), 0).
					epb(0, ts1, f60, 60, ngOpt{2, f.order.AppendUint32(nil, 1)}, ngOpt{1, []byte("a comment")}).
					block(5, f.isb(0), 0).
					block(0xa, f.dsb(), 0).
					block(0x12345, make([]byte, 12), 0).
					block(0x80000001, make([]byte, 1000), 0).
					epb(0, ts2, f40, 42)
			},
			want: []ngPacket{{t1, 60, 60, 1}, {t2, 42, 42, 1}},
			end:  io.EOF,
		},
		{
			name: "new-section",
			// A section starts with no interface; the next one here is
			// in the other byte order.
			build: func(f *ngFile) {
				f.idb(1, 0).epb(0, ts1, f60, 60).shb(otherOrder(f.order), 1, 0).idb(113, 0).epb(0, ts2, f40, 42)
			},
			want: []ngPacket{{t1, 60, 60, 1}, {t2, 42, 42, 113}},
			end:  io.EOF,
		},
		{
			name: "new-section-forgets-interfaces",
			build: func(f *ngFile) {
				f.idb(1, 0).idb(0, 0).epb(1, ts1, f60, 60).shb(f.order, 1, 0).idb(113, 0).epb(0, ts2, f40, 42).epb(1, ts2, f40, 42)
			},
			want: []ngPacket{{t1, 60, 60, 0}, {t2, 42, 42, 113}},
			end:  errDamaged,
		},
		{
			name:   "version-1.2",
			build:  func(f *ngFile) { f.shb(f.order, 1, 2).idb(1, 0).epb(0, ts1, f60, 60) },
			want:   []ngPacket{{t1, 60, 60, 1}},
			end:    io.EOF,
			pcapgo: &outcome{0, true},
			why:    "libpcap and Wireshark read version 1.2 as 1.0 (some writers set it); pcapgo only knows 1.0",
		},
		{
			name:  "version-2.0",
			build: func(f *ngFile) { f.idb(1, 0).epb(0, ts1, f60, 60).shb(f.order, 2, 0).idb(1, 0).epb(0, ts2, f40, 42) },
			want:  []ngPacket{{t1, 60, 60, 1}},
			end:   errors.New("unsupported pcapng version 2.0"),
		},
		{
			name: "time-options",
			// if_tsoffset is signed; binary if_tsresol 2^-20 does not
			// divide a second into whole nanoseconds; an if_tsresol of
			// the wrong length is ignored, as in Wireshark.
			build: func(f *ngFile) {
				f.idb(1, 0, f.tsoffset(-100)).idb(1, 0, tsresol(0x80|20)).idb(1, 0, ngOpt{optTsresol, []byte{9, 0}}).
					epb(0, ts1, f60, 60).epb(1, 1500000000<<20|(1<<20-1), f60, 60).epb(2, ts1, f60, 60)
			},
			want: []ngPacket{
				{t1.Add(-100 * time.Second), 60, 60, 1},
				{time.Unix(1500000000, 999999046).UTC(), 60, 60, 1}, // (2^20-1)/2^20 s, rounded down
				{t1, 60, 60, 1},
			},
			end: io.EOF,
			pcapgoPackets: []ngPacket{
				{t1.Add(-100 * time.Second), 60, 60, 1},
				{time.Unix(1500000000, (1<<20-1)*953).UTC(), 60, 60, 1},
				{time.Unix(0, int64(ts1)).UTC(), 60, 60, 1},
			},
			why: "pcapgo's second timestamp is 706 µs early: it scales by 1e9/2^20 rounded down to 953 ns; " +
				"and it takes the first byte of a 2-byte if_tsresol (9: nanoseconds)",
		},
		{
			name:  "captured-longer-than-original",
			build: func(f *ngFile) { f.idb(1, 0).epb(0, ts1, f60, 40) },
			want:  []ngPacket{{t1, 40, 60, 1}},
			end:   io.EOF,
		},
		{
			name:  "interface-not-described",
			build: func(f *ngFile) { f.idb(1, 0).epb(0, ts1, f60, 60).epb(3, ts2, f40, 42) },
			want:  []ngPacket{{t1, 60, 60, 1}},
			end:   errDamaged,
		},
		{
			name:  "packet-before-interface",
			build: func(f *ngFile) { f.spb(f60, 60) },
			end:   errDamaged,
		},
		{
			name: "trailer-mismatch",
			build: func(f *ngFile) {
				f.idb(1, 0).epb(0, ts1, f60, 60).epb(0, ts2, f40, 42)
				f.b = f.order.AppendUint32(f.b[:len(f.b)-4], 999)
			},
			want:   []ngPacket{{t1, 60, 60, 1}},
			end:    errDamaged,
			pcapgo: &outcome{2, false},
			why:    "pcapgo never reads the trailing block length; libpcap and Wireshark check it",
		},
		{
			name: "packet-overruns-block",
			build: func(f *ngFile) {
				f.idb(1, 0).epb(0, ts1, f60, 60)
				at := len(f.b)
				f.epb(0, ts2, f40, 42)
				f.order.PutUint32(f.b[at+20:], 200) // captured length, beyond the block
			},
			want:   []ngPacket{{t1, 60, 60, 1}},
			end:    errDamaged,
			pcapgo: &outcome{1, true},
			why:    "pcapgo reads the captured length past the block, into the file's end",
		},
		{
			name:   "captured-length-over-maximum",
			build:  func(f *ngFile) { f.idb(1, 0).epb(0, ts1, f60, 60).epb(0, ts2, huge, uint32(len(huge))) },
			want:   []ngPacket{{t1, 60, 60, 1}},
			end:    errDamaged,
			pcapgo: &outcome{2, false},
			why:    "a record over 262144 bytes is damage for libpcap and Wireshark (as in classic pcap); pcapgo has no limit",
		},
		{
			name: "block-length-not-multiple-of-4",
			build: func(f *ngFile) {
				f.idb(1, 0).epb(0, ts1, f60, 60).block(0x80000001, []byte{1, 2}, 0).epb(0, ts2, f40, 42)
			},
			want:   []ngPacket{{t1, 60, 60, 1}},
			end:    errDamaged,
			pcapgo: &outcome{2, false},
			why: "the draft requires a multiple of 4: libpcap rejects the block; Wireshark rounds its length up " +
				"to 16 and finds no trailing length there; pcapgo reads the 14 bytes and goes on",
		},
		{
			name:   "block-length-below-minimum",
			build:  func(f *ngFile) { f.idb(1, 0).epb(0, ts1, f60, 60).block(0x80000001, nil, 8) },
			want:   []ngPacket{{t1, 60, 60, 1}},
			end:    errDamaged,
			pcapgo: &outcome{1, true},
		},
		{
			name: "option-overruns-block",
			build: func(f *ngFile) {
				body := f.order.AppendUint16(nil, 1)
				body = f.order.AppendUint32(append(body, 0, 0), 0)
				body = f.order.AppendUint16(body, 2) // if_name
				body = f.order.AppendUint16(body, 40)
				f.block(blockIDB, append(body, 'e', 't', 'h', '0'), 0).epb(0, ts1, f60, 60)
			},
			end:    errDamaged,
			pcapgo: &outcome{0, true},
		},
		{
			name:   "tsresol-10^-20",
			build:  func(f *ngFile) { f.idb(1, 0, tsresol(20)).epb(0, ts1, f60, 60) },
			end:    errDamaged,
			tshark: &outcome{1, false},
			pcapgo: &outcome{1, false},
			why: "10^20 units per second overflow 64 bits: libpcap rejects the IDB, as this reader does; " +
				"Wireshark 4.0 reads the packet with time 0 and pcapgo with an overflowed scale",
		},
		{
			name:   "tsresol-2^-64",
			build:  func(f *ngFile) { f.idb(1, 0, tsresol(0x80|64)).epb(0, ts1, f60, 60) },
			end:    errDamaged,
			tshark: &outcome{1, false},
			why:    "2^64 units per second overflow 64 bits: libpcap and pcapgo reject the IDB; Wireshark 4.0 reads time 0",
		},
		{
			name: "tsresol-extremes",
			build: func(f *ngFile) {
				f.idb(1, 0, tsresol(19)).idb(1, 0, tsresol(0x80|63)).
					epb(0, 15000000001234567891, f60, 60).epb(1, 1<<63|(1<<63-1), f60, 60)
			},
			want: []ngPacket{
				{time.Unix(1, 500000000).UTC(), 60, 60, 1}, // 1.5000000001234567891 s
				{time.Unix(1, 999999999).UTC(), 60, 60, 1}, // 1 + (2^63-1)/2^63 s
			},
			end:         io.EOF,
			tsharkTimes: true,
			pcapgoPackets: []ngPacket{
				{time.Unix(1, 500000000).UTC(), 60, 60, 1},
				{time.Unix(2, 0).UTC(), 60, 60, 1}, // (2^63-1) / floor(2^63/1e9) ns: a second late
			},
			why: "Wireshark 4.0 shows 1.000000000 and 1.000000001 s; pcapgo divides by 2^63/1e9 rounded down",
		},
	}
	tshark, _ := exec.LookPath("tshark")
	if tshark == "" {
		t.Log("tshark not found: not compared with tshark")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, order := range []ngOrder{binary.LittleEndian, binary.BigEndian} {
				f := newNgFile(order)
				c.build(f)
				got, err := readNg(f.b)
				if !slices.Equal(got, c.want) {
					t.Errorf("%v: got %v, want %v", order, got, c.want)
				}
				switch {
				case c.end == io.EOF:
					if err != io.EOF {
						t.Errorf("%v: reading ended with %v, want io.EOF", order, err)
					}
				case c.end == errDamaged:
					if !errors.Is(err, errDamaged) {
						t.Errorf("%v: reading ended with %v, want a damaged-file error", order, err)
					}
				case err == nil || err == io.EOF || !strings.Contains(err.Error(), c.end.Error()):
					t.Errorf("%v: reading ended with %v, want %q", order, err, c.end)
				}

				ours := outcome{len(got), err != io.EOF}
				refPackets, ref := pcapgoRead(f.b)
				if want := ours; c.pcapgo != nil && ref != *c.pcapgo || c.pcapgo == nil && ref != want {
					t.Errorf("%v: pcapgo read %v, this reader %v (%s)", order, ref, want, c.why)
				}
				if want := got; c.pcapgo == nil && c.pcapgoPackets == nil && !slices.Equal(refPackets, want) {
					t.Errorf("%v: pcapgo read %v, this reader %v", order, refPackets, want)
				}
				if c.pcapgoPackets != nil && !slices.Equal(refPackets, c.pcapgoPackets) {
					t.Errorf("%v: pcapgo read %v, want %v (%s)", order, refPackets, c.pcapgoPackets, c.why)
				}

				if tshark == "" || order != binary.LittleEndian {
					continue
				}
				times, o := tsharkRead(t, tshark, f.b)
				want := ours
				if c.tshark != nil {
					want = *c.tshark
				}
				if o != want {
					t.Errorf("tshark read %v, want %v (%s)", o, want, c.why)
				}
				if c.tshark == nil && !c.tsharkTimes {
					for i, p := range got {
						if i < len(times) && times[i] != p {
							t.Errorf("packet %d: tshark %v, this reader %v", i+1, times[i], p)
						}
					}
				}
			}
		})
	}
}

func otherOrder(o ngOrder) ngOrder {
	if o == ngOrder(binary.BigEndian) {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// readNg reads a whole pcapng file with this package's reader.
func readNg(raw []byte) ([]ngPacket, error) {
	src, err := OpenReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var got []ngPacket
	for {
		data, info, err := src.ReadPacket()
		if err != nil {
			return got, err
		}
		if len(data) != info.CaptureLength || info.VLAN != -1 {
			return got, fmt.Errorf("packet %d: %d bytes, info %+v", len(got)+1, len(data), info)
		}
		got = append(got, ngPacket{info.Timestamp, info.Length, info.CaptureLength, info.LinkType})
	}
}

// pcapgoRead reads a pcapng file with pcapgo.NgReader.
func pcapgoRead(raw []byte) ([]ngPacket, outcome) {
	r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, outcome{0, true}
	}
	var pkts []ngPacket
	for {
		_, ci, err := r.ZeroCopyReadPacketData()
		if err != nil {
			return pkts, outcome{len(pkts), err != io.EOF}
		}
		lt := uint16(ci.AncillaryData[0].(layers.LinkType))
		pkts = append(pkts, ngPacket{ci.Timestamp, ci.Length, ci.CaptureLength, lt})
	}
}

// tsharkRead has tshark read a pcapng file: each packet's time, lengths and
// link type (as far as the test files use them), and how reading ended.
func tsharkRead(t *testing.T, tshark string, raw []byte) ([]ngPacket, outcome) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "test.pcapng")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.encap_type")
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var o outcome
	o.fails = err != nil || strings.Contains(stderr.String(), "damaged or corrupt")
	var pkts []ngPacket
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			continue
		}
		var p ngPacket
		p.ts = time.Unix(0, 0).UTC() // a Simple Packet Block has no time
		if f[0] != "" {
			sec, frac, _ := strings.Cut(f[0], ".")
			s, _ := strconv.ParseInt(sec, 10, 64)
			ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			p.ts = time.Unix(s, ns).UTC()
		}
		p.length, _ = strconv.Atoi(f[1])
		p.cap, _ = strconv.Atoi(f[2])
		// Wireshark's encapsulation numbers (wtap.h) of the link types
		// used here.
		p.linkType = map[string]uint16{"1": 1, "15": 0, "25": 113}[f[3]]
		pkts = append(pkts, p)
	}
	o.packets = len(pkts)
	return pkts, o
}

// nrb, isb and dsb are the bodies of a Name Resolution Block (one IPv4
// record), an Interface Statistics Block for iface and a Decryption Secrets
// Block (an empty TLS key log).
func (f *ngFile) nrb() []byte {
	rec := append([]byte{192, 0, 2, 1}, "host.example\x00"...)
	b := f.order.AppendUint16(nil, 1)
	b = f.order.AppendUint16(b, uint16(len(rec)))
	b = append(b, rec...)
	b = append(b, make([]byte, pad4(len(rec)))...)
	return append(b, 0, 0, 0, 0) // end of records
}

func (f *ngFile) isb(iface uint32) []byte {
	b := f.order.AppendUint32(nil, iface)
	return append(b, make([]byte, 8)...)
}

func (f *ngFile) dsb() []byte {
	b := f.order.AppendUint32(nil, 0x544c534b)
	return f.order.AppendUint32(b, 0)
}

// TestPcapngReader_Timestamps converts time stamps at every if_tsresol,
// power of 10 and of 2, and checks them to the nanosecond against exact
// arithmetic: seconds = ts / units + if_tsoffset, nanoseconds =
// floor(ts % units × 10^9 / units).
func TestPcapngReader_Timestamps(t *testing.T) {
	var resols []uint8
	for e := range uint8(20) {
		resols = append(resols, e)
	}
	for e := range uint8(64) {
		resols = append(resols, 0x80|e)
	}
	stamps := []uint64{0, 1, 1500000000, 1<<32 - 1, 1 << 32, 1500000000123456789, 1<<63 - 1, 1 << 63, 1<<64 - 1}
	for _, order := range []ngOrder{binary.LittleEndian, binary.BigEndian} {
		for _, r := range resols {
			f := newNgFile(order)
			f.idb(1, 0, tsresol(r), f.tsoffset(-7))
			for _, ts := range stamps {
				f.epb(0, ts, testFrame(14, 0), 14)
			}
			got, err := readNg(f.b)
			if err != io.EOF || len(got) != len(stamps) {
				t.Fatalf("if_tsresol 0x%02x: %d packets, %v", r, len(got), err)
			}
			units := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(r)), nil)
			if r&0x80 != 0 {
				units = new(big.Int).Lsh(big.NewInt(1), uint(r&0x7f))
			}
			for i, ts := range stamps {
				sec, frac := new(big.Int).QuoRem(new(big.Int).SetUint64(ts), units, new(big.Int))
				nsec := frac.Quo(frac.Mul(frac, big.NewInt(1e9)), units)
				want := time.Unix(int64(sec.Uint64())-7, nsec.Int64()).UTC()
				if !got[i].ts.Equal(want) {
					t.Errorf("%v, if_tsresol 0x%02x, ts %d: got %s, want %s", order, r, ts, got[i].ts.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
				}
			}
		}
	}
}

// TestPcapngReader_EveryCut cuts a file holding every kind of block at each
// byte: reading returns the packets of the blocks that are whole, then a
// clean io.EOF if the cut falls between blocks, or else an error wrapping
// io.ErrUnexpectedEOF; and the error sticks.
func TestPcapngReader_EveryCut(t *testing.T) {
	f := newNgFile(binary.BigEndian)
	f.idb(1, 0, tsresol(9), f.tsoffset(1)).block(4, f.nrb(), 0).epb(0, 1, testFrame(61, 1), 61).
		spb(testFrame(30, 2), 30).block(5, f.isb(0), 0).pb(0, 2, testFrame(20, 3), 20).
		shb(binary.LittleEndian, 1, 0).idb(113, 0).epb(0, 3, testFrame(17, 4), 17, ngOpt{1, []byte("c")})
	raw := f.b
	// Block boundaries, and how many packets end at or before each.
	ends := map[int]int{}
	packets := 0
	var order binary.ByteOrder = binary.BigEndian
	for off := 0; off < len(raw); {
		if binary.BigEndian.Uint32(raw[off:]) == blockSHB {
			order = binary.BigEndian
			if binary.LittleEndian.Uint32(raw[off+8:]) == byteOrderMagic {
				order = binary.LittleEndian
			}
		}
		typ := order.Uint32(raw[off:])
		off += int(order.Uint32(raw[off+4:]))
		if typ == blockEPB || typ == blockSPB || typ == blockPB {
			packets++
		}
		ends[off] = packets
	}
	if packets != 4 {
		t.Fatalf("test file has %d packets", packets)
	}
	complete := 0
	for n := 0; n <= len(raw); n++ {
		if k, ok := ends[n]; ok {
			complete = k
		}
		src, err := OpenReader(bytes.NewReader(raw[:n]))
		if err != nil {
			if n >= 28 || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrNotCapture) {
				t.Fatalf("cut at %d: OpenReader: %v", n, err)
			}
			continue
		}
		got := 0
		for {
			_, _, err = src.ReadPacket()
			if err != nil {
				break
			}
			got++
		}
		_, isEnd := ends[n]
		if got != complete || isEnd && err != io.EOF || !isEnd && (err == io.EOF || !errors.Is(err, io.ErrUnexpectedEOF)) {
			t.Fatalf("cut at %d of %d: %d packets, %v; want %d packets and a clean end %v", n, len(raw), got, err, complete, isEnd)
		}
		if _, _, err2 := src.ReadPacket(); err2 != err {
			t.Fatalf("cut at %d: next read %v, want %v again", n, err2, err)
		}
	}
}

// TestPcapngReader_Limits checks the bounds on what a file can make the
// reader hold: a block over 16 MiB is damage and is not read; blocks the
// reader skips, however large, go through the buffer without growing it; a
// packet block's options are bounded; a section's interfaces too.
func TestPcapngReader_Limits(t *testing.T) {
	le := binary.LittleEndian
	t.Run("block-over-16MiB", func(t *testing.T) {
		// The file ends after the header: an attempt to read the block
		// would end in io.ErrUnexpectedEOF instead.
		f := newNgFile(le).idb(1, 0)
		f.b = le.AppendUint32(f.b, 0x80000001)
		f.b = le.AppendUint32(f.b, maxBlockLen+4)
		_, err := readNg(f.b)
		if !errors.Is(err, errDamaged) || !strings.Contains(err.Error(), "more than the maximum of 16777216") {
			t.Errorf("got %v, want a damaged-file error", err)
		}
	})
	t.Run("large-skipped-block", func(t *testing.T) {
		f := newNgFile(le).idb(1, 0).block(0x80000001, make([]byte, 4<<20), 0).epb(0, 1, testFrame(60, 0), 60)
		src, err := OpenReader(bytes.NewReader(f.b))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := src.ReadPacket(); err != nil {
			t.Fatal(err)
		}
		if n := len(src.(*pcapngReader).buf); n != fileBufferSize {
			t.Errorf("buffer grew to %d bytes reading a 4 MiB block it skips", n)
		}
	})
	t.Run("packet-options-over-128KiB", func(t *testing.T) {
		f := newNgFile(le).idb(1, 0).epb(0, 1, testFrame(60, 0), 60, ngOpt{1, make([]byte, 60000)}, ngOpt{1, make([]byte, 60000)}, ngOpt{1, make([]byte, 20000)})
		if got, err := readNg(f.b); len(got) != 0 || !errors.Is(err, errDamaged) {
			t.Errorf("got %d packets, %v; want a damaged-file error", len(got), err)
		}
	})
	t.Run("too-many-interfaces", func(t *testing.T) {
		f := newNgFile(le)
		for range maxInterfaces {
			f.idb(1, 0)
		}
		f.epb(maxInterfaces-1, 1, testFrame(60, 0), 60)
		if got, err := readNg(f.b); len(got) != 1 || err != io.EOF {
			t.Fatalf("%d interfaces: %d packets, %v", maxInterfaces, len(got), err)
		}
		f.idb(1, 0)
		if _, err := readNg(f.b); !errors.Is(err, errDamaged) {
			t.Errorf("%d interfaces: %v, want a damaged-file error", maxInterfaces+1, err)
		}
	})
}

// TestPcapngReader_NoAllocs guards the zero-allocation steady state of the
// pcapng reader.
func TestPcapngReader_NoAllocs(t *testing.T) {
	ng := filepath.Join(t.TempDir(), "cip.pcapng")
	writePcapng(t, filepath.Join(pcapsDir(t), "conformance", "gopacket-cip.pcap"), ng)
	raw, err := os.ReadFile(ng)
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20000, func() {
		if _, _, err := src.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet, want 0", allocs)
	}
}
