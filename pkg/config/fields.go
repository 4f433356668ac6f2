package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is a setting's type, which decides how its text is parsed.
type Kind uint8

const (
	String   Kind = iota
	Int           // decimal
	Bool          // true/false (also 1/0, yes/no in the environment)
	Size          // bytes: 4194304, 512KiB, 2MiB, 1GiB
	Duration      // Go duration: 500ms, 2s
	Mode          // octal file mode: 0660
	List          // strings; a flag repeats or takes commas, the file takes a sequence
	IntList       // numbers, as List
)

// Field is one setting.
type Field struct {
	Key      string  // YAML key (the original tool's where it had one)
	Flag     string  // long flag, without dashes
	Short    string  // one-letter flag, if any
	Env      string  // environment variable ("" for none)
	Kind     Kind    // type
	Group    string  // heading in --help
	Usage    string  // one line for --help
	Commands Command // the commands that take the flag
	// Secret values are redacted by --print-config.
	Secret bool
	// Original marks the original tool's flags and keys.
	Original bool

	ptr func(*Config) any
}

// Groups of --help, in order.
const (
	GroupCapture = "Capture"
	GroupFilter  = "Capture filter (in the kernel)"
	GroupStore   = "History (SQLite)"
	GroupAPI     = "HTTP API"
	GroupSplit   = "Privilege split"
	GroupLog     = "Output"
)

var fields = []*Field{
	{Key: "interface", Flag: "interface", Short: "i", Kind: String, Group: GroupCapture, Original: true,
		Usage:    `interface to capture on, or "any" (default: the default route's interface)`,
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.Interface }},
	{Key: "promiscuous", Flag: "promiscuous", Kind: Bool, Group: GroupCapture,
		Usage:    "put the interface in promiscuous mode (a sidecar does not need it)",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.Promiscuous }},
	{Key: "snaplen", Flag: "snaplen", Kind: Int, Group: GroupCapture,
		Usage:    "bytes captured per packet (byte counts always use the original length)",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.Snaplen }},
	{Key: "ring_size", Flag: "ring-size", Kind: Size, Group: GroupCapture,
		Usage:    "kernel capture ring (its pages count against the memory budget)",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.RingSize }},
	{Key: "max_flows", Flag: "max-flows", Kind: Int, Group: GroupCapture,
		Usage:    "flows held at once; beyond it the longest-idle flow is exported early",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.MaxFlows }},
	{Key: "connection_timeout", Flag: "connection-timeout", Kind: Int, Group: GroupCapture, Original: true,
		Usage:    "seconds without a packet after which a flow ends",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.ConnectionTimeout }},
	{Key: "closed_timeout", Flag: "closed-timeout", Kind: Int, Group: GroupCapture,
		Usage:    "seconds a TCP flow lingers after FIN or RST",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.ClosedTimeout }},
	{Key: "sample_rate", Flag: "sample-rate", Kind: Int, Group: GroupCapture, Original: true,
		Usage:    "keep 1 in N packets for the packet history (flows always count all)",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.SampleRate }},
	{Key: "flush_interval", Flag: "flush-interval", Kind: Duration, Group: GroupCapture,
		Usage:    "how often updated flows are sent to the API server (with --output jsonl, live or streamed, how often ended flows are written out)",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.FlushInterval }},

	{Key: "filter_port", Flag: "filter-port", Kind: String, Group: GroupFilter, Original: true,
		Usage:    "only traffic with this TCP/UDP/SCTP port on either side",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.FilterPort }},
	{Key: "filter_ip", Flag: "filter-ip", Kind: String, Group: GroupFilter, Original: true,
		Usage:    "only traffic to or from this address or CIDR (IPv4 or IPv6)",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.FilterIP }},
	{Key: "filter_protocol", Flag: "filter-protocol", Kind: String, Group: GroupFilter, Original: true,
		Usage:    "only this protocol: tcp, udp, icmp, icmpv6, sctp or a number",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.FilterProtocol }},

	{Key: "db_path", Flag: "db-path", Kind: String, Group: GroupStore, Original: true,
		Usage:    "SQLite database file",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.DBPath }},
	{Key: "data_retention_seconds", Flag: "data-retention", Kind: Int, Group: GroupStore, Original: true,
		Usage:    "seconds of history to keep (0: until max-db-size needs the room)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.DataRetention }},
	{Key: "max_db_size", Flag: "max-db-size", Kind: Size, Group: GroupStore,
		Usage:    "bound of the database file and its WAL together",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.MaxDBSize }},
	{Key: "aggregation_window_seconds", Flag: "aggregation-window", Kind: Int, Group: GroupStore, Original: true,
		Usage:    "seconds per stored counter window of each flow, for charts (0: none)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.AggregationWindow }},

	{Key: "port", Flag: "port", Short: "p", Kind: Int, Group: GroupAPI, Original: true,
		Usage:    "HTTP port on all addresses (--listen chooses the address)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.Port }},
	{Key: "listen", Flag: "listen", Kind: String, Group: GroupAPI,
		Usage:    "HTTP address instead of --port, e.g. 127.0.0.1:3000",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.Listen }},
	{Key: "api_token_file", Flag: "api-token-file", Kind: String, Group: GroupAPI,
		Usage:    "file holding the bearer token every endpoint but /api/health requires",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.APITokenFile }},
	{Key: "api_token", Env: "LIGHTSHARK_API_TOKEN", Kind: String, Group: GroupAPI, Secret: true,
		Usage:    "the bearer token itself (environment only)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.APIToken }},
	{Key: "allow_cidr", Flag: "allow-cidr", Kind: List, Group: GroupAPI,
		Usage:    "client networks allowed to use the API (default: all)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.AllowCIDR }},
	{Key: "allow_origin", Flag: "allow-origin", Kind: List, Group: GroupAPI,
		Usage:    "browser origins allowed (CORS and the WebSocket)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.AllowOrigin }},

	{Key: "max_stream_clients", Flag: "max-stream-clients", Kind: Int, Group: GroupAPI,
		Usage:    "WebSocket clients of /api/stream served at once (more get 503)",
		Commands: APIServer | Mini, ptr: func(c *Config) any { return &c.MaxStreamClients }},

	{Key: "socket", Flag: "socket", Kind: String, Group: GroupSplit,
		Usage:    "Unix socket between the capturer and the API server",
		Commands: Capturer | APIServer | Mini, ptr: func(c *Config) any { return &c.Socket }},
	{Key: "socket_mode", Flag: "socket-mode", Kind: Mode, Group: GroupSplit,
		Usage:    "permissions of the socket",
		Commands: APIServer, ptr: func(c *Config) any { return &c.SocketMode }},
	{Key: "capturer_uid", Flag: "capturer-uid", Kind: IntList, Group: GroupSplit,
		Usage:    "uid allowed to connect to the socket besides the server's own",
		Commands: APIServer, ptr: func(c *Config) any { return &c.CapturerUID }},
	{Key: "capturer_user", Flag: "capturer-user", Kind: String, Group: GroupSplit,
		Usage:    "uid[:gid] the capturer runs as once its socket is open",
		Commands: Capturer | Mini, ptr: func(c *Config) any { return &c.CapturerUser }},
	{Key: "api_user", Flag: "api-user", Kind: String, Group: GroupSplit,
		Usage:    "uid[:gid] the API server runs as (no capabilities)",
		Commands: Mini, ptr: func(c *Config) any { return &c.APIUser }},

	{Key: "quiet", Flag: "quiet", Short: "q", Kind: Bool, Group: GroupLog, Original: true,
		Usage:    "print errors only",
		Commands: Capturer | APIServer | Mini, ptr: func(c *Config) any { return &c.Quiet }},
	{Key: "log_format", Flag: "log-format", Kind: String, Group: GroupLog,
		Usage:    "log format: text or json",
		Commands: Capturer | APIServer | Mini, ptr: func(c *Config) any { return &c.LogFormat }},
	{Key: "resolve_dns", Kind: Bool, Group: GroupLog, Original: true,
		Usage:    "the original tool's key: accepted and ignored",
		Commands: Mini, ptr: func(c *Config) any { return &c.ResolveDNS }},
}

func init() {
	for _, f := range fields {
		if f.Env == "" && f.Flag != "" {
			f.Env = "LIGHTSHARK_" + strings.ToUpper(strings.ReplaceAll(f.Flag, "-", "_"))
		}
	}
}

// Fields returns the settings cmd uses, in --help order (those with an
// empty Flag are read from the file or the environment only); with cmd 0,
// every setting.
func Fields(cmd Command) []*Field {
	var out []*Field
	for _, f := range fields {
		if cmd == 0 || f.Commands&cmd != 0 {
			out = append(out, f)
		}
	}
	return out
}

func fieldByKey(key string) *Field {
	for _, f := range fields {
		if f.Key == key {
			return f
		}
	}
	return nil
}

func fieldByFlag(name string) *Field {
	for _, f := range fields {
		if f.Flag != "" && f.Flag == name {
			return f
		}
	}
	return nil
}

// Default is the field's default value as text, as --help shows it
// ("" when there is none).
func (f *Field) Default() string {
	d := Default()
	return f.format(&d)
}

// Value is the field's value in c as text.
func (f *Field) Value(c *Config) string { return f.format(c) }

func (f *Field) format(c *Config) string {
	switch p := f.ptr(c).(type) {
	case *string:
		return *p
	case *int:
		return strconv.Itoa(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *int64:
		return FormatSize(*p)
	case *time.Duration:
		return p.String()
	case *uint32:
		return fmt.Sprintf("%04o", *p)
	case *[]string:
		return strings.Join(*p, ",")
	case *[]int:
		s := make([]string, len(*p))
		for i, v := range *p {
			s[i] = strconv.Itoa(v)
		}
		return strings.Join(s, ",")
	}
	panic("config: field " + f.Key + " has no format")
}

// set parses v into the field of c. A list flag given again appends; the
// first value replaces the default (and commas separate items).
func (f *Field) set(c *Config, v string, appendList bool) error {
	switch p := f.ptr(c).(type) {
	case *string:
		*p = v
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*p = n
	case *bool:
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		*p = b
	case *int64:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 500ms, 2s)", v)
		}
		*p = d
	case *uint32:
		m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
		if err != nil {
			return fmt.Errorf("%q is not an octal mode (e.g. 0660)", v)
		}
		*p = uint32(m)
	case *[]string:
		if !appendList {
			*p = nil
		}
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*p = append(*p, s)
			}
		}
	case *[]int:
		if !appendList {
			*p = nil
		}
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", s)
			}
			*p = append(*p, n)
		}
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", v)
}
