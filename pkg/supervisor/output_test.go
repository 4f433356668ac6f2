package supervisor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testNow = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

// reemit passes input through an output of the given format as the
// child "cap" (binary lightshark-capturer), and returns the lines written
// and the last error line kept.
func reemit(t *testing.T, asJSON bool, maxLine int, input string, isStderr bool) ([]string, string) {
	t.Helper()
	var buf bytes.Buffer
	o := newOutput(&buf, asJSON, maxLine)
	o.now = func() time.Time { return testNow }
	last := &lastLine{prog: "lightshark-capturer"}
	o.copyLines(strings.NewReader(input), "cap", isStderr, last)
	out := strings.TrimSuffix(buf.String(), "\n")
	if out == "" {
		return nil, last.get()
	}
	return strings.Split(out, "\n"), last.get()
}

func TestOutput_Text(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		isStderr bool
		want     []string
		wantLast string
	}{
		{
			name:     "logfmt gets proc",
			in:       `time=2026-01-02T03:04:05.000Z level=INFO msg="capture started" interface=eth0 uid=65534` + "\n",
			isStderr: true,
			want:     []string{`time=2026-01-02T03:04:05.000Z level=INFO msg="capture started" interface=eth0 uid=65534 proc=cap`},
		},
		{
			name:     "logfmt error is kept",
			in:       `level=ERROR msg="open store" err="disk full"` + "\n" + `level=INFO msg=bye` + "\n",
			isStderr: true,
			want:     []string{`level=ERROR msg="open store" err="disk full" proc=cap`, `level=INFO msg=bye proc=cap`},
			wantLast: "open store: disk full",
		},
		{
			name: "json becomes logfmt",
			in:   `{"time":"2026-01-02T03:04:05Z","level":"WARN","msg":"slow client","lost":12,"ok":false,"peer":{"addr":"1.2.3.4:5"},"note":null}` + "\n",
			want: []string{`time=2026-01-02T03:04:05Z level=WARN msg="slow client" lost=12 ok=false peer="{\"addr\":\"1.2.3.4:5\"}" note=null proc=cap`},
		},
		{
			name:     "plain stderr line is an error record",
			in:       "lightshark-capturer: open eth9: no such device\n",
			isStderr: true,
			want:     []string{`time=2026-05-06T07:08:09.000Z level=ERROR msg="lightshark-capturer: open eth9: no such device" proc=cap`},
			wantLast: "open eth9: no such device",
		},
		{
			name: "plain stdout line is an info record",
			in:   "hello\r\n\n   \n",
			want: []string{`time=2026-05-06T07:08:09.000Z level=INFO msg=hello proc=cap`},
		},
		{
			name:     "assignment without level and msg is plain text",
			in:       "PATH=/bin\n",
			isStderr: true,
			want:     []string{`time=2026-05-06T07:08:09.000Z level=ERROR msg="PATH=/bin" proc=cap`},
			wantLast: "PATH=/bin",
		},
		{
			name:     "unterminated quote is plain text",
			in:       `level=INFO msg="oops` + "\n",
			isStderr: true,
			want:     []string{`time=2026-05-06T07:08:09.000Z level=ERROR msg="level=INFO msg=\"oops" proc=cap`},
			wantLast: `level=INFO msg="oops`,
		},
		{
			name: "last line without newline",
			in:   "level=INFO msg=end",
			want: []string{`level=INFO msg=end proc=cap`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, last := reemit(t, false, 4096, tt.in, tt.isStderr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if last != tt.wantLast {
				t.Errorf("got last error %q, want %q", last, tt.wantLast)
			}
		})
	}
}

func TestOutput_JSON(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		isStderr bool
		want     []string
		wantLast string
	}{
		{
			name: "json gets proc",
			in:   `{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"hello","n":3}` + "\n",
			want: []string{`{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"hello","n":3,"proc":"cap"}`},
		},
		{
			name: "empty object",
			in:   "{ }\n",
			want: []string{`{"proc":"cap"}`},
		},
		{
			name:     "json error is kept",
			in:       `{"level":"ERROR","msg":"listen","err":"address in use"}` + "\n",
			isStderr: true,
			want:     []string{`{"level":"ERROR","msg":"listen","err":"address in use","proc":"cap"}`},
			wantLast: "listen: address in use",
		},
		{
			name:     "logfmt becomes json",
			in:       `time=2026-01-02T03:04:05.000Z level=WARN msg="disk \"slow\"" n=-3.5 ok=true mode=0660 id=12ab empty="" "odd key"=x` + "\n",
			isStderr: true,
			want:     []string{`{"time":"2026-01-02T03:04:05.000Z","level":"WARN","msg":"disk \"slow\"","n":-3.5,"ok":true,"mode":"0660","id":"12ab","empty":"","odd key":"x","proc":"cap"}`},
		},
		{
			name:     "plain line is wrapped",
			in:       "panic: runtime error\n",
			isStderr: true,
			want:     []string{`{"time":"2026-05-06T07:08:09Z","level":"ERROR","msg":"panic: runtime error","proc":"cap"}`},
			wantLast: "panic: runtime error",
		},
		{
			name: "array is not an object",
			in:   "[1,2]\n",
			want: []string{`{"time":"2026-05-06T07:08:09Z","level":"INFO","msg":"[1,2]","proc":"cap"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, last := reemit(t, true, 4096, tt.in, tt.isStderr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			for _, l := range got {
				if !json.Valid([]byte(l)) {
					t.Errorf("not JSON: %s", l)
				}
			}
			if last != tt.wantLast {
				t.Errorf("got last error %q, want %q", last, tt.wantLast)
			}
		})
	}
}

// A line longer than the bound is cut there, the rest skipped, and the
// next line is whole.
func TestOutput_LongLine(t *testing.T) {
	in := strings.Repeat("x", 100_000) + "\n" + "level=INFO msg=next\n"
	for _, asJSON := range []bool{false, true} {
		got, last := reemit(t, asJSON, 256, in, true)
		if len(got) != 2 {
			t.Fatalf("json %v: got %d lines, want 2: %q", asJSON, len(got), got)
		}
		if len(got[0]) > 256+100 || !strings.Contains(got[0], "truncated_bytes") ||
			!strings.Contains(got[0], "99744") {
			t.Errorf("json %v: got first line %q, want it cut to 256 bytes with truncated_bytes 99744", asJSON, got[0])
		}
		if !strings.Contains(got[1], "next") {
			t.Errorf("json %v: got second line %q, want the next line", asJSON, got[1])
		}
		if last != strings.Repeat("x", 256) {
			t.Errorf("json %v: got last error of %d bytes, want the 256 kept", asJSON, len(last))
		}
	}
}

func FuzzOutput(f *testing.F) {
	f.Add(`time=2026-01-02T03:04:05.000Z level=INFO msg="a b" n=1`)
	f.Add(`{"level":"INFO","msg":"x","a":[1,{"b":null}]}`)
	f.Add("lightshark-capturer: \xff\x00 error")
	f.Fuzz(func(t *testing.T, in string) {
		for _, asJSON := range []bool{false, true} {
			got, _ := reemit(t, asJSON, 128, in, true)
			for _, l := range got {
				if asJSON && !json.Valid([]byte(l)) {
					t.Fatalf("not JSON: %q from %q", l, in)
				}
				if !asJSON {
					if _, ok := parseLogfmt([]byte(l)); !ok {
						t.Fatalf("not logfmt: %q from %q", l, in)
					}
				}
			}
		}
	})
}
