// Package config is the one configuration of the three commands: its
// typed settings, their defaults, and reading them from a YAML file,
// LIGHTSHARK_* environment variables and command-line flags, in that
// rising order of precedence (flags > environment > file > defaults).
//
// The original tool's YAML keys (interface, port, db_path, filter_port,
// filter_ip, filter_protocol, connection_timeout, data_retention_seconds,
// sample_rate, aggregation_window_seconds, quiet, resolve_dns) keep their
// meaning beside this product's own. Every setting is a Field: its YAML
// key, flag, environment variable, default and the commands that take it.
//
// The package is a leaf (it imports a YAML decoder and the standard
// library only): it does not know cobra. A command gives Load the flag
// values the user typed; pkg/cli does that for the three commands.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Command is a bit set of the three commands; each Field names the ones
// that take it as a flag.
type Command uint8

const (
	Capturer  Command = 1 << iota // lightshark-capturer
	APIServer                     // lightshark-apiserver
	Mini                          // lightshark-mini, which takes every flag
)

// Config is the effective configuration. Durations of the original tool
// stay whole seconds, as its flags and YAML keys give them.
type Config struct {
	// Capture (lightshark-capturer).
	Interface         string
	FilterPort        string
	FilterIP          string
	FilterProtocol    string
	ConnectionTimeout int // seconds
	ClosedTimeout     int // seconds
	SampleRate        int
	MaxFlows          int
	Snaplen           int
	RingSize          int64
	Promiscuous       bool
	FlushInterval     time.Duration

	// Storage and API (lightshark-apiserver).
	Port              int
	Listen            string
	DBPath            string
	DataRetention     int // seconds; 0 keeps rows until max_db_size needs the room
	AggregationWindow int // seconds; 0 stores no windows
	MaxDBSize         int64
	APITokenFile      string
	APIToken          string // LIGHTSHARK_API_TOKEN only: a secret never read from flags or files
	AllowCIDR         []string
	AllowOrigin       []string
	MaxStreamClients  int

	// The process split.
	Socket       string
	SocketMode   uint32
	CapturerUser string // uid[:gid]
	APIUser      string // uid[:gid]
	CapturerUID  []int  // peers the API server accepts besides itself

	// Logging.
	Quiet     bool
	LogFormat string

	// ResolveDNS is the original tool's resolve_dns: accepted, never used.
	ResolveDNS bool

	// origin records where each key's value came from, for errors and
	// --print-config.
	origin map[string]Origin
}

// Origin is where a setting's value came from.
type Origin struct {
	// Source is "default", the config file's path, the environment
	// variable's name, or the flag ("--port").
	Source string
	// Line is the line in the config file (0 otherwise).
	Line int
}

func (o Origin) String() string {
	if o.Line > 0 {
		return fmt.Sprintf("%s:%d", o.Source, o.Line)
	}
	return o.Source
}

// Origin says where the value of the setting with this YAML key came from.
func (c *Config) Origin(key string) Origin {
	if o, ok := c.origin[key]; ok {
		return o
	}
	return Origin{Source: "default"}
}

// Error is a bad setting: which key, where it was given, and why.
type Error struct {
	Key    string // the YAML key, e.g. "port"
	Origin Origin
	Msg    string // e.g. `70000 is not a port (1-65535)`
}

func (e *Error) Error() string {
	f := fieldByKey(e.Key)
	switch {
	case e.Origin.Line > 0:
		return fmt.Sprintf("%s: %s: %s", e.Origin, e.Key, e.Msg)
	case e.Origin.Source == "" || e.Origin.Source == "default":
		if f != nil && f.Flag != "" {
			return fmt.Sprintf("--%s: %s", f.Flag, e.Msg)
		}
		return fmt.Sprintf("%s: %s", e.Key, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.Origin.Source, e.Msg)
	}
}

// Errorf returns an *Error for key, located where its value came from.
// Commands use it for checks made outside this package (e.g. the capture
// filter's syntax) so that those name the key and line too.
func (c *Config) Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Origin: c.Origin(key), Msg: fmt.Sprintf(format, args...)}
}

// Default returns the defaults: those of the original tool where it had
// the setting, else bounded ones (history does not grow without limit
// unless asked to).
func Default() Config {
	return Config{
		ConnectionTimeout: 60,
		ClosedTimeout:     5,
		SampleRate:        1,
		MaxFlows:          16384,
		Snaplen:           256,
		RingSize:          2 << 20,
		FlushInterval:     time.Second,
		Port:              3000,
		DBPath:            "traffic.db",
		DataRetention:     86400,
		MaxDBSize:         256 << 20,
		MaxStreamClients:  256,
		Socket:            "/run/lightshark/ipc.sock",
		SocketMode:        0o660,
		CapturerUser:      "65534",
		APIUser:           "65532",
		LogFormat:         "text",
	}
}

// Sources are where Load reads settings besides the defaults.
type Sources struct {
	// File is the YAML file (-c); empty for none.
	File string
	// LookupEnv reads the environment (os.LookupEnv); nil reads none.
	LookupEnv func(string) (string, bool)
	// Flags are the flags given on the command line, by long name, each
	// with its values in order (a list flag may be repeated).
	Flags map[string][]string
}

// Load builds the configuration of cmd: defaults, then the file, then the
// environment, then the flags, then Validate. Every error names the key
// and where its value came from; all are reported, joined.
func Load(cmd Command, src Sources) (*Config, error) {
	c := Default()
	c.origin = map[string]Origin{}
	if src.File != "" {
		if err := c.loadFile(src.File); err != nil {
			return nil, err
		}
	}
	var errs []error
	if src.LookupEnv != nil {
		for _, f := range fields {
			if f.Env == "" {
				continue
			}
			v, ok := src.LookupEnv(f.Env)
			if !ok {
				continue
			}
			o := Origin{Source: f.Env}
			if err := f.set(&c, v, false); err != nil {
				errs = append(errs, &Error{Key: f.Key, Origin: o, Msg: err.Error()})
				continue
			}
			c.origin[f.Key] = o
		}
	}
	for name, vals := range src.Flags {
		f := fieldByFlag(name)
		if f == nil {
			return nil, fmt.Errorf("--%s: not a configuration flag", name)
		}
		o := Origin{Source: "--" + f.Flag}
		for i, v := range vals {
			if err := f.set(&c, v, i > 0); err != nil {
				errs = append(errs, &Error{Key: f.Key, Origin: o, Msg: err.Error()})
			}
		}
		c.origin[f.Key] = o
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := c.Validate(cmd); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks ranges and combinations of the settings cmd uses.
func (c *Config) Validate(cmd Command) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, c.Errorf(key, format, args...))
	}
	uses := func(key string) bool {
		f := fieldByKey(key)
		return f != nil && f.Commands&cmd != 0
	}
	between := func(key string, v, lo, hi int, what string) {
		if uses(key) && (v < lo || v > hi) {
			bad(key, "%d is not %s (%d-%d)", v, what, lo, hi)
		}
	}
	between("port", c.Port, 1, 65535, "a port")
	between("connection_timeout", c.ConnectionTimeout, 1, 7*86400, "a number of seconds")
	between("closed_timeout", c.ClosedTimeout, 0, 86400, "a number of seconds")
	between("sample_rate", c.SampleRate, 1, 1_000_000, "a sampling rate 1 in N")
	between("max_flows", c.MaxFlows, 1, 10_000_000, "a number of flows")
	between("snaplen", c.Snaplen, 64, 262144, "a snapshot length in bytes")
	between("data_retention_seconds", c.DataRetention, 0, 10*365*86400, "a number of seconds")
	between("max_stream_clients", c.MaxStreamClients, 1, 10000, "a number of clients")
	between("aggregation_window_seconds", c.AggregationWindow, 0, 86400, "a number of seconds")
	if uses("ring_size") && (c.RingSize < 64<<10 || c.RingSize > 1<<30) {
		bad("ring_size", "%s is not between 64KiB and 1GiB", FormatSize(c.RingSize))
	}
	if uses("max_db_size") && c.MaxDBSize < 1<<20 {
		bad("max_db_size", "%s is below the minimum of 1MiB", FormatSize(c.MaxDBSize))
	}
	if uses("flush_interval") && (c.FlushInterval < 10*time.Millisecond || c.FlushInterval > time.Minute) {
		bad("flush_interval", "%v is not between 10ms and 1m", c.FlushInterval)
	}
	if uses("socket_mode") && c.SocketMode > 0o777 {
		bad("socket_mode", "%o is not a file mode (0-0777)", c.SocketMode)
	}
	if uses("socket") && c.Socket == "" {
		bad("socket", "is empty")
	}
	if uses("db_path") && c.DBPath == "" {
		bad("db_path", "is empty")
	}
	if uses("log_format") && c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "%q is not text or json", c.LogFormat)
	}
	if uses("listen") && c.Listen != "" {
		if _, p, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen", "%q is not host:port (e.g. 127.0.0.1:3000 or :3000)", c.Listen)
		} else if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
			bad("listen", "%q has no valid port", c.Listen)
		}
		if po, lo := c.Origin("port"), c.Origin("listen"); po.Source != "default" && rank(po) == rank(lo) {
			bad("listen", "excludes port (%s): give one of them", po)
		}
	}
	for _, s := range c.AllowCIDR {
		if _, err := ParsePrefix(s); err != nil && uses("allow_cidr") {
			bad("allow_cidr", "%q is not an address or CIDR", s)
		}
	}
	for _, key := range []string{"capturer_user", "api_user"} {
		if !uses(key) {
			continue
		}
		v := c.CapturerUser
		if key == "api_user" {
			v = c.APIUser
		}
		if uid, _, err := ParseUser(v); err != nil {
			bad(key, "%v", err)
		} else if uid == 0 {
			bad(key, "%q is root: give an unprivileged uid", v)
		}
	}
	if cmd&Mini != 0 {
		cu, _, err1 := ParseUser(c.CapturerUser)
		au, _, err2 := ParseUser(c.APIUser)
		if err1 == nil && err2 == nil && cu == au {
			bad("api_user", "uid %d is also capturer_user: the two processes must run as different users", au)
		}
	}
	for _, uid := range c.CapturerUID {
		if uses("capturer_uid") && (uid < 0 || uid > 1<<31-2) {
			bad("capturer_uid", "%d is not a uid", uid)
		}
	}
	return errors.Join(errs...)
}

// ListenAddr is the HTTP address: listen when it is set at the same or a
// higher precedence than port (a -p flag beats listen from the file), else
// all addresses on port.
func (c *Config) ListenAddr() string {
	if c.Listen != "" && rank(c.Origin("listen")) >= rank(c.Origin("port")) {
		return c.Listen
	}
	return fmt.Sprintf(":%d", c.Port)
}

// rank orders origins by precedence: flags, environment, file, default.
func rank(o Origin) int {
	switch {
	case strings.HasPrefix(o.Source, "--"):
		return 3
	case o.Line > 0:
		return 1
	case o.Source == "default" || o.Source == "":
		return 0
	default:
		return 2
	}
}

// ParseUser reads "uid[:gid]" (numbers; gid defaults to uid). Names are
// not looked up: the images this runs in have no user database.
func ParseUser(s string) (uid, gid int, err error) {
	u, g, hasGID := strings.Cut(s, ":")
	uid, err = strconv.Atoi(u)
	if err != nil || uid < 0 || uid > 1<<31-2 {
		return 0, 0, fmt.Errorf("%q is not a numeric uid[:gid]", s)
	}
	gid = uid
	if hasGID {
		gid, err = strconv.Atoi(g)
		if err != nil || gid < 0 || gid > 1<<31-2 {
			return 0, 0, fmt.Errorf("%q is not a numeric uid[:gid]", s)
		}
	}
	return uid, gid, nil
}

// ParsePrefix reads an address (a one-address prefix) or a CIDR prefix,
// with host bits dropped.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return p.Masked(), nil
}

// ReadToken returns the API token: the file's content when api_token_file
// is set, else LIGHTSHARK_API_TOKEN, else "" (no token).
func (c *Config) ReadToken() (string, error) {
	if c.APITokenFile == "" {
		return c.APIToken, nil
	}
	b, err := os.ReadFile(c.APITokenFile)
	if err != nil {
		return "", c.Errorf("api_token_file", "%v", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", c.Errorf("api_token_file", "%s is empty", c.APITokenFile)
	}
	return t, nil
}
