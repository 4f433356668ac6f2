package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// output re-emits the children's lines on one writer, attributed to the
// child, in one format. It is safe for concurrent use: each line is one
// Write, under a lock.
type output struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	maxLine int
	h       slog.Handler     // writes records (through lockedWriter) in the format
	now     func() time.Time // the time of records wrapping a line
}

func newOutput(w io.Writer, asJSON bool, maxLine int) *output {
	o := &output{w: w, json: asJSON, maxLine: maxLine, now: time.Now}
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if asJSON {
		o.h = slog.NewJSONHandler(lockedWriter{o}, opts)
	} else {
		o.h = slog.NewTextHandler(lockedWriter{o}, opts)
	}
	return o
}

// handler returns a handler writing INFO records in the output's format,
// serialized with the children's lines.
func (o *output) handler() slog.Handler {
	if o.json {
		return slog.NewJSONHandler(lockedWriter{o}, nil)
	}
	return slog.NewTextHandler(lockedWriter{o}, nil)
}

// lockedWriter writes to the output's writer under its lock.
type lockedWriter struct{ o *output }

func (l lockedWriter) Write(p []byte) (int, error) {
	l.o.mu.Lock()
	defer l.o.mu.Unlock()
	return l.o.w.Write(p)
}

// copyLines reads r line by line until EOF or an error (such as a read
// deadline) and re-emits each line attributed to the child name. Lines
// longer than maxLine are cut, and the rest of them discarded as it is
// read, so a child cannot make the supervisor hold more than maxLine
// bytes. Error lines are recorded in last.
func (o *output) copyLines(r io.Reader, name string, isStderr bool, last *lastLine) {
	br := bufio.NewReaderSize(r, o.maxLine)
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		dropped := 0
		if errors.Is(err, bufio.ErrBufferFull) {
			// Keep the first maxLine bytes; skip to the end of the line.
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				dropped += len(bytes.TrimSuffix(line, []byte("\n")))
			}
			line = long
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) > 0 {
			o.emit(line, name, isStderr, dropped, last)
		}
		if err != nil {
			return
		}
	}
}

// emit writes one child line. See Supervisor.LogFormat.
func (o *output) emit(line []byte, name string, isStderr bool, dropped int, last *lastLine) {
	if dropped > 0 {
		if isStderr {
			last.set(string(line))
		}
		o.record(line, name, isStderr, slog.Int("truncated_bytes", dropped))
		return
	}
	if fields, ok := parseJSON(line); ok {
		noteError(fields, last)
		if o.json {
			o.write(appendJSONProc(nil, line, name))
		} else {
			o.write(appendLogfmt(nil, fields, name))
		}
		return
	}
	if fields, ok := parseLogfmt(line); ok && isRecord(fields) {
		noteError(fields, last)
		if o.json {
			o.write(appendJSON(nil, fields, name))
		} else {
			b := append(bytes.Clone(line), " proc="...)
			o.write(appendLogfmtValue(b, name))
		}
		return
	}
	if isStderr {
		last.set(string(line))
	}
	o.record(line, name, isStderr)
}

// record writes line as the msg of a record of the output's format, level
// ERROR from standard error and INFO from standard output.
func (o *output) record(line []byte, name string, isStderr bool, attrs ...slog.Attr) {
	level := slog.LevelInfo
	if isStderr {
		level = slog.LevelError
	}
	r := slog.NewRecord(o.now(), level, string(line), 0)
	r.AddAttrs(attrs...)
	r.AddAttrs(slog.String("proc", name))
	_ = o.h.Handle(context.Background(), r)
}

// write writes b plus a newline as one Write.
func (o *output) write(b []byte) {
	b = append(b, '\n')
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.w.Write(b)
}

// field is one key and value of a structured line. str tells a string
// value from a literal one (a number, true, false, null, or an object or
// array as compact JSON).
type field struct {
	key, val string
	str      bool
}

// noteError records the line in last when it is an error record: its msg,
// and its err when it has one.
func noteError(fields []field, last *lastLine) {
	var level, msg, errText string
	for _, f := range fields {
		switch f.key {
		case "level":
			level = strings.ToUpper(f.val)
		case "msg":
			msg = f.val
		case "err", "error":
			errText = f.val
		}
	}
	if !strings.HasPrefix(level, "ERR") && !strings.HasPrefix(level, "FATAL") &&
		!strings.HasPrefix(level, "PANIC") && !strings.HasPrefix(level, "CRIT") {
		return
	}
	switch {
	case msg == "":
		last.set(errText)
	case errText == "":
		last.set(msg)
	default:
		last.set(msg + ": " + errText)
	}
}

// isRecord reports whether fields parsed from a logfmt line hold a level
// and a msg: a log record rather than text that happens to hold an "=".
func isRecord(fields []field) bool {
	hasLevel, hasMsg := false, false
	for _, f := range fields {
		hasLevel = hasLevel || f.key == "level"
		hasMsg = hasMsg || f.key == "msg"
	}
	return hasLevel && hasMsg
}

// parseLogfmt parses a line written by slog's TextHandler (or another
// logfmt writer): space-separated key=value pairs, values quoted as Go
// strings when needed. It reports false for anything else.
func parseLogfmt(line []byte) ([]field, bool) {
	s := string(line)
	var fields []field
	for len(s) > 0 {
		var key string
		var ok bool
		quotedKey := strings.HasPrefix(s, `"`)
		key, s, ok = logfmtToken(s, true)
		if !ok || (key == "" && !quotedKey) || !strings.HasPrefix(s, "=") {
			return nil, false
		}
		s = s[1:]
		quoted := strings.HasPrefix(s, `"`)
		var val string
		val, s, ok = logfmtToken(s, false)
		if !ok {
			return nil, false
		}
		if len(s) > 0 {
			if s[0] != ' ' {
				return nil, false
			}
			s = strings.TrimLeft(s, " ")
		}
		fields = append(fields, field{key: key, val: val, str: quoted || !isJSONLiteral(val)})
	}
	return fields, true
}

// logfmtToken reads a quoted or bare token from the start of s and returns
// it (unquoted) and the rest of s. A bare key ends at "=", a bare value at
// a space; neither may hold a quote.
func logfmtToken(s string, isKey bool) (tok, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", false
		}
		tok, err = strconv.Unquote(q)
		return tok, s[len(q):], err == nil
	}
	end := strings.IndexAny(s, " =")
	if !isKey {
		end = strings.IndexByte(s, ' ')
	}
	if end < 0 {
		end = len(s)
	}
	tok = s[:end]
	if strings.ContainsRune(tok, '"') {
		return "", "", false
	}
	return tok, s[end:], true
}

// isJSONLiteral reports whether a bare logfmt value reads as a JSON number
// or boolean, so that it stays one when converted to JSON.
func isJSONLiteral(v string) bool {
	if v == "true" || v == "false" {
		return true
	}
	if v == "" || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return false
	}
	return json.Valid([]byte(v))
}

// parseJSON parses a line holding one JSON object into its top-level
// fields, in order.
func parseJSON(line []byte) ([]field, bool) {
	line = bytes.TrimSpace(line)
	if len(line) < 2 || line[0] != '{' || !json.Valid(line) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		return nil, false
	}
	var fields []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		if raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, false
			}
			fields = append(fields, field{key: key, val: s, str: true})
			continue
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, false
		}
		fields = append(fields, field{key: key, val: b.String()})
	}
	return fields, true
}

// appendJSONProc appends the JSON object line with "proc":name added as
// its last member.
func appendJSONProc(b, line []byte, name string) []byte {
	line = bytes.TrimSpace(line)
	body := bytes.TrimRight(line[:len(line)-1], " \t") // without the closing brace
	b = append(b, body...)
	if body[len(body)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, `"proc":`...)
	b = appendJSONString(b, name)
	return append(b, '}')
}

// appendJSON appends fields, then "proc":name, as a JSON object.
func appendJSON(b []byte, fields []field, name string) []byte {
	b = append(b, '{')
	for _, f := range fields {
		b = appendJSONString(b, f.key)
		b = append(b, ':')
		if f.str {
			b = appendJSONString(b, f.val)
		} else {
			b = append(b, f.val...)
		}
		b = append(b, ',')
	}
	b = append(b, `"proc":`...)
	b = appendJSONString(b, name)
	return append(b, '}')
}

// appendLogfmt appends fields, then proc=name, as a logfmt line.
func appendLogfmt(b []byte, fields []field, name string) []byte {
	for _, f := range fields {
		b = appendLogfmtValue(b, f.key)
		b = append(b, '=')
		b = appendLogfmtValue(b, f.val)
		b = append(b, ' ')
	}
	b = append(b, "proc="...)
	return appendLogfmtValue(b, name)
}

// appendLogfmtValue appends s, quoted when slog's TextHandler would quote
// it.
func appendLogfmtValue(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == ' ' || r == '=' || r == '"' || r == utf8.RuneError || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
