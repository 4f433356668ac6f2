package capturer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// oracle is tshark's answer about a capture (testenv.Oracle).
type oracle = testenv.Oracle

func readOracle(t *testing.T, path string) oracle { return testenv.ReadOracle(t, path) }

// runFile aggregates a capture file with the default settings and returns
// its flows and statistics.
func runFile(t *testing.T, path string) ([]flow.Flow, record.CaptureStats, error) {
	return runFileWith(t, path, 0)
}

// runFileWith is runFile with the idle and closed timeouts set to timeout
// (0: the defaults).
func runFileWith(t *testing.T, path string, timeout time.Duration) ([]flow.Flow, record.CaptureStats, error) {
	t.Helper()
	src, err := capture.OpenFile(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer src.Close()
	table := flow.NewTable(flow.DefaultMaxFlows)
	if timeout > 0 {
		table.IdleTimeout, table.ClosedTimeout = timeout, timeout
	}
	var flows []flow.Flow
	table.OnEnd = func(f *flow.Flow) { flows = append(flows, *f) }
	p := NewPipeline(table)
	err = ReadFile(context.Background(), src, p, nil)
	return flows, p.Stats(), err
}

// convKey is an unordered pair of endpoints (ports 0 at the IP level).
type convKey struct {
	table  string // tcp, udp, ipv4, ipv6
	lo, hi string // "addr port", sorted
}

// counts are frames and bytes in each direction, from lo to hi and back.
type counts struct{ fLoHi, bLoHi, fHiLo, bHiLo uint64 }

func (c counts) String() string {
	return fmt.Sprintf("%d frames/%d bytes lo->hi, %d frames/%d bytes hi->lo", c.fLoHi, c.bLoHi, c.fHiLo, c.bHiLo)
}

func endpoint(addr string, port uint16) string {
	a := netip.MustParseAddr(addr)
	return fmt.Sprintf("%s %d", a, port)
}

func addConv(m map[convKey]counts, table, a string, pa uint16, b string, pb uint16, fab, bab, fba, bba uint64) {
	ea, eb := endpoint(a, pa), endpoint(b, pb)
	k := convKey{table: table, lo: ea, hi: eb}
	if ea > eb {
		k.lo, k.hi = eb, ea
		fab, bab, fba, bba = fba, bba, fab, bab
	}
	c := m[k]
	c.fLoHi += fab
	c.bLoHi += bab
	c.fHiLo += fba
	c.bHiLo += bba
	m[k] = c
}

// ours sums the product's flows the way tshark's tables count: TCP and UDP
// flows per 4-tuple (whatever the VLAN, across reused connections), and
// every flow per IP address pair.
func ours(flows []flow.Flow) map[convKey]counts {
	m := map[convKey]counts{}
	for _, f := range flows {
		src, dst := f.Src.String(), f.Dst.String()
		switch f.Proto {
		case 6, 17:
			table := map[uint8]string{6: "tcp", 17: "udp"}[f.Proto]
			addConv(m, table, src, f.SrcPort, dst, f.DstPort, f.Packets[0], f.Bytes[0], f.Packets[1], f.Bytes[1])
		}
		table := "ipv4"
		if f.Src.Is6() {
			table = "ipv6"
		}
		addConv(m, table, src, 0, dst, 0, f.Packets[0], f.Bytes[0], f.Packets[1], f.Bytes[1])
	}
	return m
}

func theirs(o oracle) map[convKey]counts {
	m := map[convKey]counts{}
	for table, rows := range o.Conversations {
		for _, r := range rows {
			addConv(m, table, r.A, r.PortA, r.B, r.PortB, r.FramesAToB, r.BytesAToB, r.FramesBToA, r.BytesBToA)
		}
	}
	return m
}

// TestConformance checks every capture of shared/pcaps/conformance against
// tshark's answers: every frame is accounted for, and every conversation
// tshark reports at the TCP, UDP, IPv4 and IPv6 levels has exactly the
// packets and bytes per direction that the product's flows add up to, but
// for the differences listed in knownDifferences, each a documented
// contract difference (HOW_TO_USE.md, "Differences from tshark").
func TestConformance(t *testing.T) {
	shared := testenv.SharedDir(t)
	files, err := filepath.Glob(filepath.Join(shared, "pcaps", "conformance", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance captures: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			o := readOracle(t, filepath.Join(shared, "pcaps", "oracle", "conformance", name+".json"))
			// tshark's tables have no timeouts: neither does this run.
			// (With the defaults, a 4-tuple silent for longer than the
			// idle timeout, or 5 s after its FIN or RST, starts a new
			// flow: TestConformance_Timeouts.)
			flows, stats, err := runFileWith(t, path, 24*time.Hour)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if stats.Packets != o.Packets || stats.Bytes != o.TotalBytes {
				t.Errorf("read %d packets %d bytes, tshark %d packets %d bytes", stats.Packets, stats.Bytes, o.Packets, o.TotalBytes)
			}
			var errs uint64
			for _, n := range stats.DecodeErrors {
				errs += n
			}
			if got := stats.FlowPackets + stats.NonIP + errs; got != stats.Packets {
				t.Errorf("flows %d + non-IP %d + errors %d = %d, want every packet (%d)", stats.FlowPackets, stats.NonIP, errs, got, stats.Packets)
			}
			if errs != 0 {
				t.Errorf("decode errors in a well-formed capture: %v", stats.DecodeErrors)
			}
			var inFlows uint64
			for _, f := range flows {
				inFlows += f.Packets[0] + f.Packets[1]
			}
			if inFlows != stats.FlowPackets {
				t.Errorf("flows hold %d packets, the table charged %d", inFlows, stats.FlowPackets)
			}

			mine, want := ours(flows), theirs(o)
			var diffs []string
			keys := map[convKey]bool{}
			for k := range mine {
				keys[k] = true
			}
			for k := range want {
				keys[k] = true
			}
			for k := range keys {
				m, w := mine[k], want[k]
				if k.lo == k.hi {
					// Both ends the same (loopback): a direction means
					// nothing, compare the totals.
					m = counts{fLoHi: m.fLoHi + m.fHiLo, bLoHi: m.bLoHi + m.bHiLo}
					w = counts{fLoHi: w.fLoHi + w.fHiLo, bLoHi: w.bLoHi + w.bHiLo}
				}
				if m != w {
					diffs = append(diffs, fmt.Sprintf("%s %s <-> %s", k.table, k.lo, k.hi))
					if !knownDifference(name, k) {
						t.Errorf("%s %s <-> %s: got %v, tshark %v", k.table, k.lo, k.hi, mine[k], want[k])
					}
				}
			}
			// TCP connections: tshark splits a reused 4-tuple into streams
			// (tcp.stream); the product starts a new flow at a new SYN on
			// a finished connection. The counts per 4-tuple must agree.
			streams := map[string][2]int{}
			for _, f := range flows {
				if f.Proto == 6 {
					k := unordered(f.Src.String(), f.SrcPort, f.Dst.String(), f.DstPort)
					c := streams[k]
					c[0]++
					streams[k] = c
				}
			}
			for _, r := range o.Conversations["tcp"] {
				k := unordered(r.A, r.PortA, r.B, r.PortB)
				c := streams[k]
				c[1]++
				streams[k] = c
			}
			for k, c := range streams {
				if c[0] != c[1] {
					d := "tcp-streams " + k
					diffs = append(diffs, d)
					if !contains(knownConvs(name), d) {
						t.Errorf("TCP %s: %d flows, tshark %d streams", k, c[0], c[1])
					}
				}
			}
			sort.Strings(diffs)
			for _, d := range knownDifferences[name] {
				if !contains(diffs, d.conv) {
					t.Errorf("known difference %q (%s) no longer differs: update knownDifferences and HOW_TO_USE.md", d.conv, d.why)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func knownDifference(file string, k convKey) bool {
	return contains(knownConvs(file), fmt.Sprintf("%s %s <-> %s", k.table, k.lo, k.hi))
}

func knownConvs(file string) []string {
	var out []string
	for _, d := range knownDifferences[file] {
		out = append(out, d.conv)
	}
	return out
}

func unordered(a string, pa uint16, b string, pb uint16) string {
	ea, eb := endpoint(a, pa), endpoint(b, pb)
	if ea > eb {
		ea, eb = eb, ea
	}
	return ea + " <-> " + eb
}

type difference struct {
	conv string // "table lo-endpoint <-> hi-endpoint" as the test prints it
	why  string
}

// knownDifferences lists, per capture, the conversations where the product's
// contract differs from tshark's tables on purpose. Each reason is one of
// the rules in HOW_TO_USE.md ("Differences from tshark") and MANIFEST.md's
// tshark quirks; the test fails if one of them stops differing.
var knownDifferences = map[string][]difference{
	"tcpdump-afs.pcap": {
		{"udp 131.151.1.146 7000 <-> 131.151.32.21 7001", whyFragV4},
	},
	"zeek-dns-edns-ecs.pcap": {
		{"udp 173.194.169.104 59464 <-> 193.24.227.238 53", whyFragV4},
		{"udp 193.24.227.238 53 <-> 194.247.5.6 51791", whyFragV4},
		{"udp 193.24.227.238 53 <-> 74.125.47.136 59330", whyFragV4},
		{"udp 172.217.40.76 56680 <-> 193.24.227.238 53", whyFragV4},
	},
	"zeek-ipv4-fragmented-1.pcap": {
		{"udp 164.1.123.163 123 <-> 164.1.123.61 137", whyFragV4},
	},
	"zeek-ipv6-fragmented-dns.pcap": {
		{"udp 2001:470:1f11:81f:d138:5f55:6d4:1fe2 51851 <-> 2607:f740:b::f93 53", whyFragV6},
		{"ipv6 2001:470:1f11:81f:d138:5f55:6d4:1fe2 0 <-> 2607:f740:b::f93 0", whyFragV6},
		{"udp 2001:470:1f11:81f:d138:5f55:6d4:1fe2 0 <-> 2607:f740:b::f93 0", whyFragOrphan},
	},
	"zeek-ipv6-hbh-routing0.pcap": {
		{"ipv6 2001:4f8:4:7:2e0:81ff:fe52:ffff 0 <-> 2001:78:1:32::2 0", whyRouting},
		{"ipv6 2001:4f8:4:7:2e0:81ff:fe52:9a6b 0 <-> 2001:4f8:4:7:2e0:81ff:fe52:ffff 0", whyRouting},
	},
	"zeek-tunnels-gre-sample.pcap": {
		{"ipv4 172.27.1.66 0 <-> 66.59.109.137 0", whyTunnel},
	},
	"zeek-tunnels-ping6-in-ipv4.pcap": {
		{"ipv4 10.0.0.1 0 <-> 10.0.0.2 0", whyTunnel},
	},
	"zeek-tunnels-vxlan-encapsulated-http.pcap": {
		{"ipv4 10.1.1.172 0 <-> 10.1.200.131 0", whyTunnel},
		{"udp 10.1.1.172 4789 <-> 10.1.200.131 50000", whyTunnel},
	},
}

const (
	whyFragV4 = "IPv4 fragments: tshark charges a datagram to its transport conversation only in the frame that " +
		"completes reassembly (MANIFEST quirk 8); the product charges every fragment to the flow of the first. " +
		"The IPv4 rows agree."
	whyFragV6 = "IPv6 fragments: tshark leaves non-final fragments out of every table, IPv6 included (quirk 9); " +
		"the product charges each fragment to the flow of its first fragment."
	whyFragOrphan = "an IPv6 fragment whose first fragment is not in the capture: tshark counts it nowhere; the " +
		"product charges it to a flow of its addresses and protocol without ports."
	whyRouting = "IPv6 Routing header with segments left: the flow's destination is the final one, as in tshark's " +
		"transport rows and Zeek; tshark's IPv6 row keeps the header's destination (quirk 10)."
	whyTunnel = "tunnels: tshark counts every layer (quirk 6); the product's flow is the innermost conversation, " +
		"so the outer layer has no flow of its own."
)

// With the default timeouts, gopacket-cip.pcap's RST'd connection whose
// client retransmits the same SYN 20 s later, and its FIN retransmissions
// spaced more than 5 s apart, start new flows (as in Zeek, whose
// tcp_close_delay is also 5 s), while tshark keeps one stream per 4-tuple
// for the whole file. Packets and bytes per 4-tuple still agree.
func TestConformance_Timeouts(t *testing.T) {
	shared := testenv.SharedDir(t)
	path := filepath.Join(shared, "pcaps", "conformance", "gopacket-cip.pcap")
	o := readOracle(t, filepath.Join(shared, "pcaps", "oracle", "conformance", "gopacket-cip.pcap.json"))
	flows, _, err := runFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	perTuple := map[string]int{}
	for _, f := range flows {
		if f.Proto == 6 {
			perTuple[unordered(f.Src.String(), f.SrcPort, f.Dst.String(), f.DstPort)]++
		}
	}
	k := unordered("10.200.1.18", 1054, "54.175.48.202", 80)
	if perTuple[k] < 2 {
		t.Errorf("%s: %d flows, want the connection split by the closed timeout", k, perTuple[k])
	}
	if len(perTuple) != len(o.Conversations["tcp"]) {
		t.Errorf("%d TCP 4-tuples, tshark %d", len(perTuple), len(o.Conversations["tcp"]))
	}
	mine, want := ours(flows), theirs(o)
	for k, w := range want {
		if (k.table == "tcp" || k.table == "ipv4") && mine[k] != w {
			t.Errorf("%s %s <-> %s: got %v, tshark %v", k.table, k.lo, k.hi, mine[k], w)
		}
	}
}

// TestConformance_Tshark asks the tshark installed here (not the stored
// oracle) for its TCP and UDP conversation tables of every conformance
// capture and checks the frames per direction, and the bytes where tshark
// prints them exactly, against the product's flows. It skips without
// tshark.
func TestConformance_Tshark(t *testing.T) {
	shared := testenv.SharedDir(t)
	tshark := testenv.RequireTool(t, "tshark")
	files, _ := filepath.Glob(filepath.Join(shared, "pcaps", "conformance", "*"))
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, tshark, "-n", "-q", "-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE",
				"-o", "tcp.desegment_tcp_streams:TRUE", "-z", "conv,tcp", "-z", "conv,udp", "-r", path)
			cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+t.TempDir())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			flows, _, err := runFileWith(t, path, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			mine := ours(flows)
			frames := map[convKey]counts{}
			bytes := map[convKey]counts{}
			inexact := map[convKey]bool{}
			var rows int
			table := ""
			for _, line := range strings.Split(string(out), "\n") {
				switch {
				case strings.HasPrefix(line, "TCP Conversations"):
					table = "tcp"
				case strings.HasPrefix(line, "UDP Conversations"):
					table = "udp"
				}
				f := strings.Fields(line)
				if len(f) < 9 || f[1] != "<->" {
					continue
				}
				rows++
				a, pa := splitHostPort(t, f[0])
				b, pb := splitHostPort(t, f[2])
				// "<-" columns are B to A, "->" columns A to B. tshark
				// prints exact byte counts below 10000 only.
				addConv(frames, table, a, pa, b, pb, atoi(t, f[6]), 0, atoi(t, f[3]), 0)
				addConv(bytes, table, a, pa, b, pb, 0, atoi(t, f[7]), 0, atoi(t, f[4]))
				if f[5] != "bytes" || f[8] != "bytes" {
					m := map[convKey]counts{}
					addConv(m, table, a, pa, b, pb, 0, 0, 0, 0)
					for k := range m {
						inexact[k] = true
					}
				}
			}
			for k, w := range frames {
				got := mine[k]
				if knownDifference(name, k) {
					continue
				}
				if got.fLoHi != w.fLoHi || got.fHiLo != w.fHiLo {
					t.Errorf("%s %s <-> %s: got %v, tshark %d frames lo->hi, %d hi->lo", k.table, k.lo, k.hi, got, w.fLoHi, w.fHiLo)
				}
				if b := bytes[k]; !inexact[k] && (got.bLoHi != b.bLoHi || got.bHiLo != b.bHiLo) {
					t.Errorf("%s %s <-> %s: got %v, tshark %d bytes lo->hi, %d hi->lo", k.table, k.lo, k.hi, got, b.bLoHi, b.bHiLo)
				}
			}
			t.Logf("%d tshark rows", rows)
		})
	}
}

func splitHostPort(t *testing.T, s string) (string, uint16) {
	t.Helper()
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		t.Fatalf("bad endpoint %q", s)
	}
	return s[:i], uint16(atoi(t, s[i+1:]))
}

func atoi(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("bad number %q", s)
	}
	return n
}

// The allocation-free JSON writer gives exactly the bytes encoding/json
// gives for the record, for every flow of every conformance capture.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	shared := testenv.SharedDir(t)
	files, _ := filepath.Glob(filepath.Join(shared, "pcaps", "conformance", "*"))
	n := 0
	for _, path := range files {
		flows, _, err := runFile(t, path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range flows {
			f := &flows[i]
			if i%3 == 0 {
				f.Direction = "inbound" // offline flows have none
			}
			want, err := json.Marshal(f.Record())
			if err != nil {
				t.Fatal(err)
			}
			if got := f.AppendJSON(nil); string(got) != string(want) {
				t.Fatalf("%s:\n got  %s\n want %s", filepath.Base(path), got, want)
			}
			n++
		}
	}
	if n < 1000 {
		t.Errorf("compared only %d flows", n)
	}
}
