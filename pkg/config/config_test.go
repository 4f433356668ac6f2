package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lightshark.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// The original tool's YAML file (every key it had, ../shared/ORIGINAL.md)
// is read with the original meaning.
func TestOriginalYAMLKeys(t *testing.T) {
	path := writeFile(t, `# the original tool's config
interface: eth1
port: 8080
db_path: /data/traffic.db
filter_port: 443
filter_ip: 10.0.0.0/8
filter_protocol: TCP
connection_timeout: 120
data_retention_seconds: 3600
sample_rate: 10
aggregation_window_seconds: 60
quiet: true
resolve_dns: false
`)
	c, err := Load(Mini, Sources{File: path})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Interface, want.Port, want.DBPath = "eth1", 8080, "/data/traffic.db"
	want.FilterPort, want.FilterIP, want.FilterProtocol = "443", "10.0.0.0/8", "TCP"
	want.ConnectionTimeout, want.DataRetention, want.SampleRate, want.AggregationWindow = 120, 3600, 10, 60
	want.Quiet = true
	c.origin = nil
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
	if got := c.ListenAddr(); got != ":8080" {
		t.Errorf("ListenAddr = %q, want :8080", got)
	}
}

// The original defaults (ORIGINAL.md) where the original had the setting.
func TestOriginalDefaults(t *testing.T) {
	c, err := Load(Mini, Sources{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3000 || c.DBPath != "traffic.db" || c.ConnectionTimeout != 60 || c.SampleRate != 1 ||
		c.AggregationWindow != 0 || c.Quiet || c.Interface != "" || c.ListenAddr() != ":3000" {
		t.Errorf("defaults differ from the original tool's: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	path := writeFile(t, "port: 1001\nsample_rate: 7\ndb_path: file.db\n")
	e := env(map[string]string{"LIGHTSHARK_PORT": "1002", "LIGHTSHARK_DB_PATH": "env.db"})
	flags := map[string][]string{"port": {"1003"}}
	tests := []struct {
		name      string
		src       Sources
		port      int
		portFrom  string
		db        string
		rate      int
		rateFrom  string
		listen    string
		listenKey string
	}{
		{"defaults", Sources{}, 3000, "default", "traffic.db", 1, "default", ":3000", ""},
		{"file", Sources{File: path}, 1001, path + ":1", "file.db", 7, path + ":2", ":1001", ""},
		{"env over file", Sources{File: path, LookupEnv: e}, 1002, "LIGHTSHARK_PORT", "env.db", 7, path + ":2", ":1002", ""},
		{"flag over env", Sources{File: path, LookupEnv: e, Flags: flags}, 1003, "--port", "env.db", 7, path + ":2", ":1003", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(Mini, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if c.Port != tt.port || c.Origin("port").String() != tt.portFrom || c.DBPath != tt.db ||
				c.SampleRate != tt.rate || c.Origin("sample_rate").String() != tt.rateFrom || c.ListenAddr() != tt.listen {
				t.Errorf("port %d from %s, db %s, rate %d from %s, listen %s; want %d from %s, %s, %d from %s, %s",
					c.Port, c.Origin("port"), c.DBPath, c.SampleRate, c.Origin("sample_rate"), c.ListenAddr(),
					tt.port, tt.portFrom, tt.db, tt.rate, tt.rateFrom, tt.listen)
			}
		})
	}
	// listen from the file, -p on the command line: the flag wins.
	path2 := writeFile(t, "listen: 127.0.0.1:4000\n")
	c, err := Load(Mini, Sources{File: path2, Flags: map[string][]string{"port": {"5000"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ListenAddr(); got != ":5000" {
		t.Errorf("listen in file, -p 5000 flag: ListenAddr %q, want :5000", got)
	}
	c, err = Load(Mini, Sources{File: path2, LookupEnv: env(map[string]string{"LIGHTSHARK_PORT": "5000"}),
		Flags: map[string][]string{"listen": {"[::1]:6000"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ListenAddr(); got != "[::1]:6000" {
		t.Errorf("--listen flag over env port: ListenAddr %q", got)
	}
}

func TestLists(t *testing.T) {
	path := writeFile(t, "allow_cidr: [10.0.0.0/8, \"fd00::/8\"]\ncapturer_uid: 1000\n")
	c, err := Load(APIServer, Sources{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.AllowCIDR, []string{"10.0.0.0/8", "fd00::/8"}) || !reflect.DeepEqual(c.CapturerUID, []int{1000}) {
		t.Errorf("file lists: %q %v", c.AllowCIDR, c.CapturerUID)
	}
	// A flag replaces the file's list; repeated or with commas, it adds.
	c, err = Load(APIServer, Sources{File: path, Flags: map[string][]string{"allow-cidr": {"127.0.0.1", "::1,192.168.0.0/16"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.AllowCIDR, []string{"127.0.0.1", "::1", "192.168.0.0/16"}) {
		t.Errorf("flag lists: %q", c.AllowCIDR)
	}
}

// Every bad value is an error naming its key, and its line in the file.
func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		cmd   Command
		file  string
		env   map[string]string
		flags map[string][]string
		want  string
	}{
		{"unknown key", Mini, "port: 3000\nintreface: eth0\n", nil, nil, "lightshark.yaml:2: intreface: unknown key (did you mean interface?)"},
		{"flag name in file", Mini, "db-path: x.db\n", nil, nil, ":1: db-path: unknown key (did you mean db_path?)"},
		{"seconds key", Mini, "data_retention: 10\n", nil, nil, "(did you mean data_retention_seconds?)"},
		{"wrong type", Mini, "\n\nport: eighty\n", nil, nil, `:3: port: "eighty" is not a whole number`},
		{"float", Mini, "port: 80.5\n", nil, nil, `:1: port: "80.5" is not a whole number`},
		{"list for scalar", Mini, "interface:\n  - eth0\n", nil, nil, ":2: interface: must be a single value, not a list"},
		{"bool", Mini, "quiet: maybe\n", nil, nil, `:1: quiet: "maybe" is not true or false`},
		{"null", Mini, "port:\n", nil, nil, ":1: port: has no value"},
		{"duplicate", Mini, "port: 1\nport: 2\n", nil, nil, ":2: port: given twice (first on line 1)"},
		{"out of range", Mini, "sample_rate: 0\n", nil, nil, ":1: sample_rate: 0 is not a sampling rate 1 in N (1-1000000)"},
		{"port range", Mini, "port: 70000\n", nil, nil, ":1: port: 70000 is not a port (1-65535)"},
		{"negative retention", Mini, "data_retention_seconds: -1\n", nil, nil, ":1: data_retention_seconds: -1"},
		{"size", Mini, "max_db_size: 10MB\n", nil, nil, `:1: max_db_size: "10MB" is not a size`},
		{"small db", Mini, "max_db_size: 1KiB\n", nil, nil, ":1: max_db_size: 1KiB is below the minimum of 1MiB"},
		{"ring", Mini, "ring_size: 1GiB\nring_size_x: 1\n", nil, nil, "ring_size_x: unknown key"},
		{"log format", Mini, "log_format: xml\n", nil, nil, `:1: log_format: "xml" is not text or json`},
		{"user", Mini, "api_user: nobody\n", nil, nil, `:1: api_user: "nobody" is not a numeric uid[:gid]`},
		{"root user", Mini, "capturer_user: 0:0\n", nil, nil, `:1: capturer_user: "0:0" is root`},
		{"same users", Mini, "api_user: \"1000\"\ncapturer_user: 1000:5\n", nil, nil, ":1: api_user: uid 1000 is also capturer_user"},
		{"listen and port", Mini, "port: 1\nlisten: :2\n", nil, nil, ":2: listen: excludes port"},
		{"listen syntax", Mini, "listen: localhost\n", nil, nil, `:1: listen: "localhost" is not host:port`},
		{"cidr", APIServer, "allow_cidr: [10.0.0.0/33]\n", nil, nil, `:1: allow_cidr: "10.0.0.0/33" is not an address or CIDR`},
		{"secret in file", Mini, "api_token: hunter2\n", nil, nil, ":1: api_token: is a secret: give it in LIGHTSHARK_API_TOKEN"},
		{"not a mapping", Mini, "- port\n", nil, nil, ":1: the file must be a mapping"},
		{"yaml syntax", Mini, "port: [1\n", nil, nil, "lightshark.yaml: "},
		{"env", Mini, "", map[string]string{"LIGHTSHARK_SAMPLE_RATE": "x"}, nil, `LIGHTSHARK_SAMPLE_RATE: "x" is not a whole number`},
		{"env range", Mini, "", map[string]string{"LIGHTSHARK_PORT": "0"}, nil, "LIGHTSHARK_PORT: 0 is not a port"},
		{"flag", Mini, "", nil, map[string][]string{"flush-interval": {"1ms"}}, "--flush-interval: 1ms is not between 10ms and 1m"},
		{"flag duration", Capturer, "", nil, map[string][]string{"flush-interval": {"soon"}}, `--flush-interval: "soon" is not a duration`},
		{"mode", APIServer, "", nil, map[string][]string{"socket-mode": {"0999"}}, `--socket-mode: "0999" is not an octal mode`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Sources{Flags: tt.flags}
			if tt.file != "" {
				src.File = writeFile(t, tt.file)
			}
			if tt.env != nil {
				src.LookupEnv = env(tt.env)
			}
			_, err := Load(tt.cmd, src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(Mini, Sources{File: "/nonexistent/lightshark.yaml"})
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/lightshark.yaml") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("huge file", func(t *testing.T) {
		_, err := Load(Mini, Sources{File: writeFile(t, strings.Repeat("#", 2<<20))})
		if err == nil || !strings.Contains(err.Error(), "larger than 1MiB") {
			t.Errorf("got %v", err)
		}
	})
}

// What --print-config prints, -c reads back into the same configuration.
func TestPrintRoundTrip(t *testing.T) {
	path := writeFile(t, "interface: eth0\nallow_cidr: [10.0.0.0/8, '::1']\nsocket: \"/run/a b/ipc.sock\"\nfilter_ip: \"fd00::1\"\n")
	c, err := Load(Mini, Sources{File: path,
		LookupEnv: env(map[string]string{"LIGHTSHARK_API_TOKEN": "hunter2", "LIGHTSHARK_MAX_DB_SIZE": "64MiB"}),
		Flags:     map[string][]string{"flush-interval": {"250ms"}, "filter-port": {"53"}, "quiet": {"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Print(&out, Mini); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Fatalf("the token is printed:\n%s", out.String())
	}
	back, err := Load(Mini, Sources{File: writeFile(t, out.String())})
	if err != nil {
		t.Fatalf("reading the printed config back: %v\n%s", err, out.String())
	}
	back.APIToken = c.APIToken // the secret is not in the file
	c.origin, back.origin = nil, nil
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip:\n got %+v\nwant %+v\n%s", back, c, out.String())
	}
}

func TestPrintGolden(t *testing.T) {
	path := writeFile(t, "interface: eth0\nport: 8080\ndata_retention_seconds: 3600\n")
	c, err := Load(Mini, Sources{File: path,
		LookupEnv: env(map[string]string{"LIGHTSHARK_API_TOKEN": "hunter2", "LIGHTSHARK_SAMPLE_RATE": "4"}),
		Flags:     map[string][]string{"filter-protocol": {"udp"}, "allow-cidr": {"10.0.0.0/8,fd00::/8"}}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c.Print(&out, Mini)
	got := strings.ReplaceAll(out.String(), path, "lightshark.yaml")
	golden := filepath.Join("testdata", "print-config.golden")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("--print-config differs from %s (go test -update to accept):\n%s", golden, got)
	}
}

func TestSizes(t *testing.T) {
	for _, n := range []int64{1, 1023, 1024, 2 << 20, 3 << 30, 1<<20 + 1} {
		got, err := ParseSize(FormatSize(n))
		if err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d)=%q) = %d, %v", n, FormatSize(n), got, err)
		}
	}
}

func TestDurationsAreSeconds(t *testing.T) {
	c, err := Load(Capturer, Sources{Flags: map[string][]string{"connection-timeout": {"30"}, "flush-interval": {"2s"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ConnectionTimeout != 30 || c.FlushInterval != 2*time.Second {
		t.Errorf("got %d %v", c.ConnectionTimeout, c.FlushInterval)
	}
}

// HOW_TO_USE.md's configuration reference names every setting: its flag,
// environment variable and YAML key.
func TestDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../HOW_TO_USE.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Fields(0) {
		for _, s := range []string{"`" + f.Key + "`", "`" + f.Env + "`", "`--" + f.Flag + "`"} {
			if s != "``" && s != "`--`" && !bytes.Contains(doc, []byte(s)) {
				t.Errorf("HOW_TO_USE.md does not mention %s", s)
			}
		}
	}
}
