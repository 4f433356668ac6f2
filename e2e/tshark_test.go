//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// conv is one TCP or UDP conversation as tshark answers it: a TCP stream
// (tcp.stream) or a UDP 4-tuple. A is the source of its first frame, as in
// tshark's conversation tables; bytes are frame.len, the whole frame.
type conv struct {
	Proto             string // "tcp" or "udp"
	A, B              netip.AddrPort
	FramesAB, BytesAB uint64
	FramesBA, BytesBA uint64
	First, Last       time.Time      // times of its first and last frames
	Stream            int            // tcp.stream; -1 for UDP
	State             string         // the Zeek conn_state the frames imply ("" when none is derived: see zeekState)
	Orig              netip.AddrPort // the SYN's sender for TCP with a SYN, else A

	// TCP flags seen from A and from B: a SYN without ACK, a SYN+ACK, a
	// FIN, a RST.
	synA, synB, synAckA, synAckB, finA, finB, rstA, rstB bool
}

// key is the conversation without its orientation: "tcp 10.0.0.1:80 <-> 10.0.0.2:5000".
func (c *conv) key() string { return convKey(c.Proto, c.A, c.B) }

func convKey(proto string, a, b netip.AddrPort) string {
	x, y := a.String(), b.String()
	if x > y {
		x, y = y, x
	}
	return proto + " " + x + " <-> " + y
}

// packets is the conversation's frames, both ways.
func (c *conv) packets() uint64 { return c.FramesAB + c.FramesBA }

// bytes is the conversation's bytes, both ways.
func (c *conv) bytes() uint64 { return c.BytesAB + c.BytesBA }

// from returns the frames and bytes sent by endpoint src and by the other
// side.
func (c *conv) from(src netip.AddrPort) (sentF, sentB, recvF, recvB uint64) {
	if src == c.A {
		return c.FramesAB, c.BytesAB, c.FramesBA, c.BytesBA
	}
	return c.FramesBA, c.BytesBA, c.FramesAB, c.BytesAB
}

// flagsFrom returns the TCP flags tshark saw in frames sent by endpoint p:
// a SYN without ACK, a SYN+ACK, a FIN, a RST.
func (c *conv) flagsFrom(p netip.AddrPort) (syn, synAck, fin, rst bool) {
	if p == c.A {
		return c.synA, c.synAckA, c.finA, c.rstA
	}
	return c.synB, c.synAckB, c.finB, c.rstB
}

// has reports whether p is one of the conversation's endpoints.
func (c *conv) has(p netip.AddrPort) bool { return p == c.A || p == c.B }

func (c *conv) String() string {
	return fmt.Sprintf("%s %s -> %s: %d pkts/%d B, back %d pkts/%d B, state %q", c.Proto, c.A, c.B,
		c.FramesAB, c.BytesAB, c.FramesBA, c.BytesBA, c.State)
}

// zeekState derives Zeek's conn_state (Zeek's conn.log documentation)
// from the TCP flags tshark decoded, for the cases the tests make or
// import; it returns "" for the others, which the tests then do not
// check. UDP: SF with frames both ways, S0 one way.
func (c *conv) zeekState() string {
	if c.Proto == "udp" {
		if c.FramesAB > 0 && c.FramesBA > 0 {
			return "SF"
		}
		return "S0"
	}
	// The originator sent the first SYN; without one, Zeek says OTH
	// (mid-stream traffic).
	var syn, synAck, finO, finR, rstO, rstR bool
	switch {
	case c.synA:
		syn, synAck, finO, finR, rstO, rstR = true, c.synAckB, c.finA, c.finB, c.rstA, c.rstB
	case c.synB:
		syn, synAck, finO, finR, rstO, rstR = true, c.synAckA, c.finB, c.finA, c.rstB, c.rstA
	}
	switch {
	case !syn:
		return "OTH"
	case !synAck && rstR && !finO && !finR && !rstO:
		return "REJ"
	case !synAck && !rstR && !rstO && !finO && !finR && c.onlyOrig():
		return "S0"
	case !synAck:
		return ""
	case rstO:
		return "RSTO"
	case rstR:
		return "RSTR"
	case finO && finR:
		return "SF"
	case finO:
		return "S2"
	case finR:
		return "S3"
	}
	return "S1"
}

// onlyOrig: every frame came from the SYN's sender.
func (c *conv) onlyOrig() bool {
	if c.synA {
		return c.FramesBA == 0
	}
	return c.FramesAB == 0
}

// tsharkConvs runs tshark on pcap and returns its TCP and UDP
// conversations, built from tshark's per-frame fields (frame.len, the
// addresses and ports, tcp.stream, the TCP flags) the way its
// conversation tables count them (MANIFEST.md): TCP by stream, UDP by
// 4-tuple, every frame's whole length, ICMP errors quoting a header in no
// conversation.
func tsharkConvs(t testing.TB, pcap string) []*conv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fields := []string{"frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.stream",
		"tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
		"tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset"}
	args := []string{"-n", "-r", pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
		"-Y", "(tcp or udp) and not icmp and not icmpv6"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.CommandContext(ctx, "tshark", args...)
	// No personal configuration (make-oracle.sh does the same).
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", pcap, err, stderr.String())
	}
	byKey := map[string]*conv{}
	var convs []*conv
	for i, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != len(fields) {
			t.Fatalf("tshark line %d: %d fields, want %d: %q", i+1, len(f), len(fields), line)
		}
		for _, v := range f {
			if strings.Contains(v, ",") {
				t.Fatalf("tshark line %d has a field with several values (a tunnel?): %q", i+1, line)
			}
		}
		ts := parseEpoch(t, f[0])
		flen, _ := strconv.ParseUint(f[1], 10, 64)
		srcIP, dstIP := f[2], f[3]
		if srcIP == "" {
			srcIP, dstIP = f[4], f[5]
		}
		proto, sp, dp := "tcp", f[7], f[8]
		stream := -1
		if f[6] == "" {
			proto, sp, dp = "udp", f[9], f[10]
		} else {
			stream, _ = strconv.Atoi(f[6])
		}
		src := netip.AddrPortFrom(netip.MustParseAddr(srcIP), mustPort(t, sp))
		dst := netip.AddrPortFrom(netip.MustParseAddr(dstIP), mustPort(t, dp))
		k := convKey(proto, src, dst)
		if proto == "tcp" {
			k = "tcp stream " + f[6]
		}
		c := byKey[k]
		if c == nil {
			c = &conv{Proto: proto, A: src, B: dst, First: ts, Stream: stream}
			byKey[k] = c
			convs = append(convs, c)
		}
		c.Last = ts
		fromA := src == c.A
		if fromA {
			c.FramesAB++
			c.BytesAB += flen
		} else {
			c.FramesBA++
			c.BytesBA += flen
		}
		if proto == "tcp" {
			syn, ack, fin, rst := flag(f[11]), flag(f[12]), flag(f[13]), flag(f[14])
			set := func(a, b *bool, v bool) {
				if !v {
					return
				}
				if fromA {
					*a = true
				} else {
					*b = true
				}
			}
			set(&c.synA, &c.synB, syn && !ack)
			set(&c.synAckA, &c.synAckB, syn && ack)
			set(&c.finA, &c.finB, fin)
			set(&c.rstA, &c.rstB, rst)
		}
	}
	for _, c := range convs {
		c.State = c.zeekState()
		c.Orig = c.A
		if c.Proto == "tcp" && !c.synA && c.synB {
			c.Orig = c.B
		}
	}
	return convs
}

// tsharkBytes is tshark's sum of frame.len over the frames of pcap that
// match a display filter.
func tsharkBytes(t testing.TB, pcap, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", "-n", "-r", pcap, "-T", "fields", "-e", "frame.len", "-Y", filter)
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s -Y %q: %v\n%s", pcap, filter, err, stderr.String())
	}
	var n uint64
	for _, l := range strings.Fields(string(out)) {
		v, err := strconv.ParseUint(l, 10, 64)
		if err != nil {
			t.Fatalf("tshark: frame.len %q", l)
		}
		n += v
	}
	return n
}

func flag(v string) bool { return v == "1" || strings.EqualFold(v, "true") }

func mustPort(t testing.TB, s string) uint16 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		t.Fatalf("tshark: port %q: %v", s, err)
	}
	return uint16(n)
}

// parseEpoch parses tshark's frame.time_epoch ("1300475167.096535000").
func parseEpoch(t testing.TB, s string) time.Time {
	t.Helper()
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		t.Fatalf("tshark: time %q", s)
	}
	frac = (frac + "000000000")[:9]
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		t.Fatalf("tshark: time %q", s)
	}
	return time.Unix(n, ns).UTC()
}

// importOracle returns what tshark answered about a conformance capture:
// the oracle file's totals and its TCP and UDP conversations (numbers from
// the oracle file), with the times and TCP flags of each read from tshark's
// per-frame fields (tsharkConvs), which must agree with the file's numbers.
func importOracle(t testing.TB, shared, name string) (testenv.Oracle, []*conv) {
	t.Helper()
	o := testenv.ReadOracle(t, filepath.Join(shared, "pcaps", "oracle", "conformance", name+".json"))
	frames := tsharkConvs(t, filepath.Join(shared, "pcaps", "conformance", name))
	byKey := map[string]*conv{}
	for _, c := range frames {
		k := c.key()
		if c.Proto == "tcp" {
			k = fmt.Sprintf("tcp stream %d", c.Stream)
		}
		byKey[k] = c
	}
	var convs []*conv
	for _, proto := range []string{"tcp", "udp"} {
		for _, r := range o.Conversations[proto] {
			if !r.Verified {
				t.Fatalf("oracle of %s: %s row %s:%d <-> %s:%d is not verified", name, proto, r.A, r.PortA, r.B, r.PortB)
			}
			a := netip.AddrPortFrom(netip.MustParseAddr(r.A), r.PortA)
			bb := netip.AddrPortFrom(netip.MustParseAddr(r.B), r.PortB)
			k := convKey(proto, a, bb)
			if proto == "tcp" {
				k = fmt.Sprintf("tcp stream %d", *r.TCPStream)
			}
			c := byKey[k]
			if c == nil || c.A != a || c.B != bb || c.FramesAB != r.FramesAToB || c.BytesAB != r.BytesAToB ||
				c.FramesBA != r.FramesBToA || c.BytesBA != r.BytesBToA ||
				math.Abs(c.Last.Sub(c.First).Seconds()-r.Duration) > 0.0001 {
				t.Fatalf("oracle of %s: %s row %s:%d <-> %s:%d disagrees with tshark's frames: %v", name, proto, r.A, r.PortA, r.B, r.PortB, c)
			}
			convs = append(convs, c)
		}
	}
	if len(convs) != len(frames) {
		t.Fatalf("oracle of %s: %d TCP/UDP rows, tshark's frames make %d conversations", name, len(convs), len(frames))
	}
	// Every frame is in a conversation but the non-IP ones (ARP, STP):
	// the flows hold tshark's total_bytes less those.
	var inConvs uint64
	for _, c := range convs {
		inConvs += c.bytes()
	}
	if nonIP := tsharkBytes(t, filepath.Join(shared, "pcaps", "conformance", name), "not ip and not ipv6"); o.TotalBytes-nonIP != inConvs {
		t.Fatalf("oracle of %s: total_bytes %d - %d bytes of non-IP frames != %d bytes in TCP and UDP conversations", name, o.TotalBytes, nonIP, inConvs)
	}
	slices.SortFunc(convs, func(x, y *conv) int { return strings.Compare(x.key(), y.key()) })
	return o, convs
}
