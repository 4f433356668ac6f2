// Package logging builds the commands' *slog.Logger and holds the
// attribute keys they share, so that a log collector sees one vocabulary
// from all three processes.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// Attribute keys used by more than one process.
const (
	// KeyProc names the process a line came from; the supervisor adds it
	// to its children's lines.
	KeyProc = "proc"
	KeyErr  = "err"
)

// New returns a logger writing format ("text" or "json") to w, at level
// info, or error when quiet.
func New(w io.Writer, format string, quiet bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}
