package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// The per-flow windows are kept by two triggers on flows, so that a flow
// record costs one statement whether windows are on or off: the delta from
// the counters stored (OLD; none for a new flow) to the record's (NEW) is
// added to the window that holds NEW.last_seen, each counter floored at
// zero. start = floor(last_seen in seconds / width) * width.
//
// The triggers exist only while windows are on, because any trigger makes
// SQLite keep a statement journal for every flow write (about 12 % of
// ingest), and they hold the width as a constant. They are derived from
// Options.AggregationWindow, not schema: Open drops and recreates them, in
// one transaction, to match the option.
var windowTriggers = [...]string{`CREATE TRIGGER flows_window_insert AFTER INSERT ON flows
WHEN NEW.last_seen != 0 AND NEW.packets_sent + NEW.packets_received > 0
BEGIN
    INSERT INTO flow_windows (flow_rid, start, width, packets_sent, bytes_sent, packets_received, bytes_received)
    SELECT NEW.rid, s - ((s % $W) + $W) % $W, $W,
           NEW.packets_sent, NEW.bytes_sent, NEW.packets_received, NEW.bytes_received
    FROM (SELECT NEW.last_seen / 1000000000 AS s)
    WHERE true
    ON CONFLICT (flow_rid, start) DO UPDATE SET
        packets_sent = packets_sent + excluded.packets_sent, bytes_sent = bytes_sent + excluded.bytes_sent,
        packets_received = packets_received + excluded.packets_received,
        bytes_received = bytes_received + excluded.bytes_received;
END`,
	`CREATE TRIGGER flows_window_update
AFTER UPDATE OF last_seen, packets_sent, bytes_sent, packets_received, bytes_received ON flows
WHEN NEW.last_seen != 0
BEGIN
    INSERT INTO flow_windows (flow_rid, start, width, packets_sent, bytes_sent, packets_received, bytes_received)
    SELECT NEW.rid, s - ((s % $W) + $W) % $W, $W, ps, bs, pr, br
    FROM (SELECT NEW.last_seen / 1000000000 AS s,
                 MAX(NEW.packets_sent - OLD.packets_sent, 0) AS ps,
                 MAX(NEW.bytes_sent - OLD.bytes_sent, 0) AS bs,
                 MAX(NEW.packets_received - OLD.packets_received, 0) AS pr,
                 MAX(NEW.bytes_received - OLD.bytes_received, 0) AS br)
    WHERE ps + bs + pr + br > 0
    ON CONFLICT (flow_rid, start) DO UPDATE SET
        packets_sent = packets_sent + excluded.packets_sent, bytes_sent = bytes_sent + excluded.bytes_sent,
        packets_received = packets_received + excluded.packets_received,
        bytes_received = bytes_received + excluded.bytes_received;
END`,
}

// setWindowTriggers makes the window triggers match width (seconds; 0: no
// triggers). It writes nothing when they already match, so that a
// read-only database still opens.
func setWindowTriggers(ctx context.Context, w *sql.DB, width int64) error {
	var have, want []string
	rows, err := w.QueryContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'flows_window_%' ORDER BY name")
	if err != nil {
		return fmt.Errorf("read window triggers: %w", err)
	}
	for rows.Next() {
		var q string
		if err := rows.Scan(&q); err != nil {
			rows.Close()
			return fmt.Errorf("read window triggers: %w", err)
		}
		have = append(have, q)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("read window triggers: %w", err)
	}
	if width > 0 {
		for _, t := range windowTriggers { // in name order, as read
			want = append(want, strings.ReplaceAll(t, "$W", fmt.Sprint(width)))
		}
	}
	if slices.Equal(have, want) {
		return nil // as wanted: write nothing (the file may be read-only)
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set window triggers: %w", err)
	}
	defer tx.Rollback()
	for _, q := range append([]string{"DROP TRIGGER IF EXISTS flows_window_insert", "DROP TRIGGER IF EXISTS flows_window_update"}, want...) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set window triggers: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set window triggers: %w", err)
	}
	return nil
}
