package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds the config file read: a configuration is a few
// hundred bytes, and a mistaken -c /dev/zero must not fill memory.
const maxFileSize = 1 << 20

// loadFile applies the YAML mapping in path. Unknown keys, wrong types and
// duplicate keys are errors with the key and its line.
func (c *Config) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("config file %s: larger than %s", path, FormatSize(maxFileSize))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil // empty file: defaults
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: the file must be a mapping of keys to values", path, m.Line)
	}
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		o := Origin{Source: path, Line: k.Line}
		fld := fieldByKey(k.Value)
		if fld == nil {
			errs = append(errs, &Error{Key: k.Value, Origin: o, Msg: "unknown key" + suggest(k.Value)})
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			errs = append(errs, &Error{Key: k.Value, Origin: o, Msg: fmt.Sprintf("given twice (first on line %d)", prev)})
			continue
		}
		seen[k.Value] = k.Line
		if fld.Secret {
			errs = append(errs, &Error{Key: k.Value, Origin: o, Msg: "is a secret: give it in " + fld.Env + " or a file, not here"})
			continue
		}
		if err := fld.setNode(c, v); err != nil {
			errs = append(errs, &Error{Key: k.Value, Origin: Origin{Source: path, Line: v.Line}, Msg: err.Error()})
			continue
		}
		c.origin[fld.Key] = o
	}
	return errors.Join(errs...)
}

// setNode sets the field from a YAML value: scalars of the field's type,
// a sequence for lists. YAML's own typing is checked (port: "80" is
// accepted as text of a number; port: [80] and port: eighty are not).
func (f *Field) setNode(c *Config, v *yaml.Node) error {
	switch f.Kind {
	case List, IntList:
		if v.Kind == yaml.ScalarNode {
			return f.set(c, v.Value, false)
		}
		if v.Kind != yaml.SequenceNode {
			return errors.New("must be a list")
		}
		for i, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("item %d is not a value", i+1)
			}
			if err := f.set(c, item.Value, i > 0); err != nil {
				return err
			}
		}
		if len(v.Content) == 0 {
			return f.set(c, "", false)
		}
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a single value, not a %s", kindName(v.Kind))
	}
	if v.Tag == "!!null" {
		return errors.New("has no value")
	}
	if f.Kind == Bool && v.Tag != "!!bool" {
		return fmt.Errorf("%q is not true or false", v.Value)
	}
	if f.Kind == Int && v.Tag != "!!int" && v.Tag != "!!str" {
		return fmt.Errorf("%q is not a whole number", v.Value)
	}
	return f.set(c, v.Value, false)
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "value"
}

// suggest names the key the user probably meant: a flag name spelled in
// the file, or the original tool's key for a value in seconds.
func suggest(key string) string {
	if f := fieldByKey(strings.ReplaceAll(key, "-", "_")); f != nil {
		return fmt.Sprintf(" (did you mean %s?)", f.Key)
	}
	if f := fieldByKey(key + "_seconds"); f != nil {
		return fmt.Sprintf(" (did you mean %s?)", f.Key)
	}
	if f := fieldByFlag(key); f != nil {
		return fmt.Sprintf(" (did you mean %s?)", f.Key)
	}
	best, bestD := "", 3 // at most two edits away
	for _, f := range fields {
		if d := editDistance(key, f.Key); d < bestD {
			best, bestD = f.Key, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return ""
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Print writes the effective configuration of cmd as YAML that -c reads
// back, each value with where it came from; secrets are redacted.
func (c *Config) Print(w io.Writer, cmd Command) error {
	var b bytes.Buffer
	b.WriteString("# effective configuration (flags > LIGHTSHARK_* environment > config file > defaults)\n")
	for _, f := range Fields(cmd) {
		val := f.yamlValue(c)
		if f.Secret {
			if f.Value(c) == "" {
				continue
			}
			val = `"<redacted>"`
		}
		line := fmt.Sprintf("%s: %s", f.Key, val)
		if f.Secret {
			line = "# " + line // not a key -c accepts
		}
		fmt.Fprintf(&b, "%-44s # %s\n", line, c.Origin(f.Key))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// yamlValue is the field's value as a YAML flow value.
func (f *Field) yamlValue(c *Config) string {
	switch p := f.ptr(c).(type) {
	case *[]string:
		items := make([]string, len(*p))
		for i, s := range *p {
			items[i] = strconv.Quote(s) // plain scalars may not be flow items (::1)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case *[]int:
		return "[" + strings.ReplaceAll(f.Value(c), ",", ", ") + "]"
	case *string, *int64, *time.Duration, *uint32:
		return yamlScalar(f.Value(c))
	}
	return f.Value(c)
}

// yamlScalar quotes s when YAML would not read it back as the same string.
func yamlScalar(s string) string {
	out, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}
