package store

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors callers branch on. Errors returned by DB methods wrap them where
// they apply; match with errors.Is.
var (
	// ErrFull reports a write refused because the disk or the database's
	// size cap (Options.MaxSize) is full (SQLITE_FULL).
	ErrFull = errors.New("database or disk is full")
	// ErrReadOnly reports a write refused because the file, its directory
	// or the file system is read-only (SQLITE_READONLY, SQLITE_PERM).
	ErrReadOnly = errors.New("database is read-only")
	// ErrIO reports a disk I/O error (SQLITE_IOERR).
	ErrIO = errors.New("disk I/O error")
	// ErrNotFound reports that the flow asked for is not stored.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor reports a cursor that is malformed or was issued for
	// another query (filters or order).
	ErrBadCursor = errors.New("bad cursor")
	// ErrInvalid reports an argument out of range: a batch without
	// instance id or with seq 0, a flow without id, a port over 65535, an
	// unknown order.
	ErrInvalid = errors.New("invalid argument")
	// ErrSchemaTooNew reports a database migrated by a newer binary.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
)

// opError is an error of one store operation: "store: <op>: <cause>". It
// unwraps to the cause and, when the cause is a full disk, a read-only file
// or an I/O error, to ErrFull, ErrReadOnly or ErrIO.
type opError struct {
	op   string
	kind error // nil, ErrFull, ErrReadOnly, ErrIO
	err  error
}

func (e *opError) Error() string { return "store: " + e.op + ": " + e.err.Error() }

func (e *opError) Unwrap() []error {
	if e.kind != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.err}
}

// wrap returns err as an opError for op, classified; nil stays nil.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) {
		// Already ours: keep the innermost op, which is the most precise.
		return err
	}
	return &opError{op: op, kind: classify(err), err: err}
}

// classify maps a SQLite result code to one of the sentinels, or nil.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() & 0xff { // primary result code of an extended one
	case sqlite3.SQLITE_FULL:
		return ErrFull
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM:
		return ErrReadOnly
	case sqlite3.SQLITE_IOERR:
		return ErrIO
	}
	return nil
}
