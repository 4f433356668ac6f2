package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Store is what the API needs from the history database. pkg/apiserver
// adapts the concrete store to it.
type Store interface {
	// Flows returns one page of the flows q selects, in q's order, at
	// most q.Limit, and the cursor of the next page ("" after the last).
	// A cursor that is malformed or belongs to other filters is an error
	// wrapping ErrBadCursor.
	Flows(ctx context.Context, q FlowQuery) (flows []record.Flow, next string, err error)
	// Flow returns the flow with this id; ok is false when there is none.
	Flow(ctx context.Context, id string) (f record.Flow, ok bool, err error)
	// EachFlow calls fn with every flow q selects, in q's order, reading
	// in bounded pages (q.Limit bounds the total, 0 for all; q.Cursor
	// starts the walk). fn must not keep f. An error from fn stops the walk
	// and is returned as is.
	EachFlow(ctx context.Context, q FlowQuery, fn func(f *record.Flow) error) error
	// History returns the newest sampled packet records first, at most
	// limit (1 to MaxHistoryLimit).
	History(ctx context.Context, limit int) ([]record.PacketSample, error)
	// Size returns the database's size on disk in bytes.
	Size(ctx context.Context) (int64, error)
	// Series returns the traffic over time of the flows q.Filter selects
	// (GET /api/series). A value it does not know is an error wrapping
	// ErrBadQuery.
	Series(ctx context.Context, q SeriesQuery) (*SeriesResult, error)
	// AggregationWindow is the width of the store's per-flow windows
	// (--aggregation-window), zero when they are off: Series then spreads
	// each flow over its lifetime. A step of a series is a multiple of it.
	AggregationWindow() time.Duration
}

// SeriesQuery asks a Store for Buckets buckets of Step each, bucket i
// covering [Since + i·Step, Since + (i+1)·Step). Its semantics are those of
// pkg/store's SeriesQuery.
type SeriesQuery struct {
	// Filter selects the flows by IP, CIDR, Port, Proto, State and
	// Direction; its other fields are zero.
	Filter FlowQuery
	// Since is the first bucket's start, a multiple of Step.
	Since time.Time
	// Step is a whole number of seconds.
	Step time.Duration
	// Buckets is 1 to MaxSeriesBuckets.
	Buckets int
	// By is "proto", "peer" or "direction"; Metric "bytes" or "packets".
	By, Metric string
}

// SeriesResult is a Store's answer to a SeriesQuery.
type SeriesResult struct {
	// Source is "windows" (flow_windows) or "flows" (each flow spread
	// evenly over its lifetime); Exact is true when each bucket holds
	// exactly the traffic counted in it.
	Source string
	Exact  bool
	// Series are the top keys by total, largest first, and "other".
	Series []SeriesData
}

// SeriesData is one key's traffic per bucket.
type SeriesData struct {
	Key   string `json:"key"`
	Total uint64 `json:"total"`
	// Values has one integer per bucket.
	Values []uint64 `json:"values"`
}

// ErrBadCursor is wrapped by Store errors about a cursor that is malformed
// or was issued for other filters; the API answers 400.
var ErrBadCursor = errors.New("bad cursor")

// ErrBadQuery is wrapped by Store errors about a query the store refuses
// (a value it does not know); the client gets a 400 with the error's text.
var ErrBadQuery = errors.New("bad query")

// Orders of a flow listing (FlowQuery.Order). Each sorts descending (newest
// or largest first) unless FlowQuery.Ascending.
const (
	OrderLastSeen  = "last_seen" // the default
	OrderFirstSeen = "first_seen"
	OrderBytes     = "bytes"   // bytes_sent + bytes_received
	OrderPackets   = "packets" // packets_sent + packets_received
)

// Limits of the listings.
const (
	DefaultFlowLimit    = 100
	MaxFlowLimit        = 1000
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
	DefaultLiveLimit    = 50
	MaxLiveLimit        = 1000
	// maxCursor bounds the length of a cursor parameter.
	maxCursor = 512
	// maxExportLimit bounds limit with format=ndjson (0: every flow).
	maxExportLimit = 1 << 30
)

// FlowQuery selects flows. Zero fields do not filter; every filter given
// must hold. Its semantics are those of pkg/store's FlowQuery, field for
// field; Match is the reference for the filters.
type FlowQuery struct {
	// IP matches flows with this address on either side. IPv4 and
	// IPv4-mapped IPv6 are the same address.
	IP netip.Addr
	// CIDR matches flows with an address in the prefix on either side
	// (IPv4 compared as IPv4-mapped IPv6, so ::/0 matches everything).
	CIDR netip.Prefix
	// Port matches flows with this port on either side, 1-65535.
	Port int
	// Proto matches the protocol's name ("tcp", "udp", "icmp", "icmpv6",
	// "sctp"; lower case) or, when numeric, its number ("6", "47").
	Proto string
	// State matches the Zeek conn_state ("SF", "REJ"; upper case).
	State string
	// Direction matches "inbound", "outbound" or "internal".
	Direction string
	// Since and Until keep flows whose [first_seen, last_seen] overlaps
	// [Since, Until): last_seen >= Since and first_seen < Until.
	Since, Until time.Time
	// Order is one of the Order constants ("" means OrderLastSeen).
	Order string
	// Ascending reverses the order: oldest or smallest first.
	Ascending bool
	// Limit is the page size for Flows (1 to MaxFlowLimit) and the total
	// for EachFlow (0: all).
	Limit int
	// Cursor continues a listing where a previous page ended.
	Cursor string
}

// Match reports whether f passes q's filters (Order, Limit and Cursor
// aside). It is the reference for what a Store selects, and how
// /api/stream filters flow updates.
func (q *FlowQuery) Match(f *record.Flow) bool {
	if q.IP.IsValid() || q.CIDR.IsValid() {
		src, dst := parseAddr16(f.SrcIP), parseAddr16(f.DstIP)
		if q.IP.IsValid() {
			ip := addr16(q.IP)
			if src != ip && dst != ip {
				return false
			}
		}
		if q.CIDR.IsValid() {
			p := prefix16(q.CIDR)
			if !(src.IsValid() && p.Contains(src)) && !(dst.IsValid() && p.Contains(dst)) {
				return false
			}
		}
	}
	if q.Port != 0 && int(f.SrcPort) != q.Port && int(f.DstPort) != q.Port {
		return false
	}
	if q.Proto != "" {
		if n, err := strconv.ParseUint(q.Proto, 10, 8); err == nil {
			if uint64(f.ProtoNum) != n {
				return false
			}
		} else if !strings.EqualFold(f.Proto, q.Proto) {
			return false
		}
	}
	if q.State != "" && !strings.EqualFold(f.State, q.State) {
		return false
	}
	if q.Direction != "" && !strings.EqualFold(f.Direction, q.Direction) {
		return false
	}
	if !q.Since.IsZero() && f.LastSeen.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !f.FirstSeen.Before(q.Until) {
		return false
	}
	return true
}

// addr16 is a in its 16-byte form without zone: IPv4 as IPv4-mapped IPv6.
func addr16(a netip.Addr) netip.Addr {
	return netip.AddrFrom16(a.As16())
}

func parseAddr16(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return addr16(a)
}

// prefix16 is p in the 16-byte form of addr16.
func prefix16(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4() {
		return netip.PrefixFrom(addr16(p.Addr()), p.Bits()+96)
	}
	return p
}

// paramError is a bad query parameter: a 400 naming it.
type paramError struct {
	param string
	msg   string
}

func (e *paramError) Error() string { return e.param + ": " + e.msg }

func badParam(param, format string, args ...any) error {
	return &paramError{param: param, msg: fmt.Sprintf(format, args...)}
}

// quote shows a user's value in an error, bounded and escaped.
func quote(s string) string {
	const maxShown = 64
	if len(s) > maxShown {
		cut := maxShown
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

// params reads a query string strictly: each parameter at most once and,
// when known is not nil, only those named in it.
type params struct {
	v url.Values
}

func parseParams(raw string, known map[string]bool) (params, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return params{}, badParam("query", "malformed query string")
	}
	for k, vs := range v {
		if known != nil && !known[k] {
			return params{}, badParam(k, "unknown parameter")
		}
		if len(vs) > 1 {
			return params{}, badParam(k, "given more than once")
		}
	}
	return params{v: v}, nil
}

// get returns the parameter's value and whether it was given (with a
// non-empty value: "?port=" counts as absent).
func (p params) get(name string) (string, bool) {
	s := p.v.Get(name)
	return s, s != ""
}

// intParam reads an integer parameter in [lo, hi], def when absent.
func (p params) intParam(name string, def, lo, hi int) (int, error) {
	s, ok := p.get(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badParam(name, "%s is not an integer from %d to %d", quote(s), lo, hi)
	}
	return n, nil
}

// boolParam reads 1/true/yes or 0/false/no.
func (p params) boolParam(name string) (bool, error) {
	s, ok := p.get(name)
	if !ok {
		return false, nil
	}
	switch strings.ToLower(s) {
	case "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, badParam(name, "%s is not a boolean (1 or 0)", quote(s))
}

// maxTime is the latest time a store can hold: Unix nanoseconds in an
// int64 (2262-04-11).
var maxTime = time.Unix(0, math.MaxInt64).UTC()

// timeParam reads RFC 3339 (any precision) or Unix milliseconds, from 1970
// to maxTime.
func (p params) timeParam(name string) (time.Time, error) {
	s, ok := p.get(name)
	if !ok {
		return time.Time{}, nil
	}
	var t time.Time
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > maxTime.UnixMilli() {
			return time.Time{}, badParam(name, "%s is out of range (Unix milliseconds from 0 to %d)", quote(s), maxTime.UnixMilli())
		}
		t = time.UnixMilli(n)
	} else if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
		return time.Time{}, badParam(name, "%s is neither an RFC 3339 time nor Unix milliseconds", quote(s))
	}
	if t.Before(time.Unix(0, 0)) || t.After(maxTime) {
		return time.Time{}, badParam(name, "%s is out of range (1970 to 2262)", quote(s))
	}
	return t.UTC(), nil
}

// zeekStates are the conn_state values (Zeek's conn.log).
var zeekStates = map[string]bool{
	"S0": true, "S1": true, "SF": true, "REJ": true, "S2": true, "S3": true, "RSTO": true,
	"RSTR": true, "RSTOS0": true, "RSTRH": true, "SH": true, "SHR": true, "OTH": true,
}

var protoNames = map[string]bool{"tcp": true, "udp": true, "icmp": true, "icmpv6": true, "sctp": true}

// filterParams are the parameters of the flow filters, shared by
// /api/flows and /api/stream.
var filterParams = []string{"ip", "cidr", "port", "proto", "state", "direction", "since", "until"}

// parseFilters reads the filter parameters into q.
func (p params) parseFilters(q *FlowQuery) error {
	if s, ok := p.get("ip"); ok {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return badParam("ip", "%s is not an IP address", quote(s))
		}
		q.IP = a.WithZone("").Unmap()
	}
	if s, ok := p.get("cidr"); ok {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return badParam("cidr", "%s is not a CIDR prefix (like 10.0.0.0/8 or fd00::/8)", quote(s))
		}
		q.CIDR = pfx.Masked()
	}
	var err error
	if q.Port, err = p.intParam("port", 0, 1, 65535); err != nil {
		return err
	}
	if s, ok := p.get("proto"); ok {
		name := strings.ToLower(s)
		if n, err := strconv.ParseUint(name, 10, 8); err == nil {
			q.Proto = strconv.FormatUint(n, 10)
		} else if protoNames[name] {
			q.Proto = name
		} else {
			return badParam("proto", "%s is not a protocol (tcp, udp, icmp, icmpv6, sctp, or a number from 0 to 255)", quote(s))
		}
	}
	if s, ok := p.get("state"); ok {
		st := strings.ToUpper(s)
		if !zeekStates[st] {
			return badParam("state", "%s is not a Zeek conn_state (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH)", quote(s))
		}
		q.State = st
	}
	if s, ok := p.get("direction"); ok {
		d := strings.ToLower(s)
		switch d {
		case record.DirInbound, record.DirOutbound, record.DirInternal:
			q.Direction = d
		default:
			return badParam("direction", "%s is not inbound, outbound or internal", quote(s))
		}
	}
	if q.Since, err = p.timeParam("since"); err != nil {
		return err
	}
	if q.Until, err = p.timeParam("until"); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return badParam("until", "must be later than since")
	}
	return nil
}

// parseOrder reads order: a field, optionally with _asc or _desc.
func (p params) parseOrder(q *FlowQuery) error {
	s, ok := p.get("order")
	if !ok {
		q.Order = OrderLastSeen
		return nil
	}
	field, dir := s, ""
	if i := strings.LastIndexByte(s, '_'); i > 0 && (s[i+1:] == "asc" || s[i+1:] == "desc") {
		field, dir = s[:i], s[i+1:]
	}
	switch field {
	case OrderLastSeen, OrderFirstSeen, OrderBytes, OrderPackets:
	default:
		return badParam("order", "%s is not one of last_seen, first_seen, bytes, packets (optionally with _asc or _desc)", quote(s))
	}
	q.Order, q.Ascending = field, dir == "asc"
	return nil
}

// parseCursor reads cursor: opaque to the API, but bounded and printable.
func (p params) parseCursor(q *FlowQuery) error {
	s, ok := p.get("cursor")
	if !ok {
		return nil
	}
	if len(s) > maxCursor {
		return badParam("cursor", "longer than %d bytes", maxCursor)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return badParam("cursor", "not a cursor this server issued")
		}
	}
	q.Cursor = s
	return nil
}
