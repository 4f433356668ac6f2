package store

import (
	"errors"
	"fmt"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// memStatusErr is why SQLite keeps no memory statistics (nil when it
// does). It is written once, by init, before any goroutine can read it.
var memStatusErr error

// modernc.org/sqlite is built with SQLITE_DEFAULT_MEMSTATUS=0: unless told
// otherwise before its first connection, SQLite counts none of its
// allocations and sqlite3_memory_used reports 0. The setting is global to
// the process and can only be changed before SQLite initialises
// (https://www.sqlite.org/c3ref/c_config_covering_index_scan.html#sqliteconfigmemstatus),
// so it is made here, at package initialisation, before Open can run.
// The statistics cost SQLite a mutex per allocation and free: about 1-2 %
// in BenchmarkApplyBatch and BenchmarkFlows, within their run-to-run noise.
func init() {
	memStatusErr = enableMemStatus()
}

func enableMemStatus() error {
	tls := libc.NewTLS()
	defer tls.Close()
	// sqlite3_config is variadic: its argument goes in a va_list, 8-byte
	// aligned, as modernc.org/sqlite passes SQLITE_CONFIG_PCACHE2's.
	va := libc.Xmalloc(tls, 8)
	if va == 0 {
		return errors.New("enable SQLite memory statistics: out of memory")
	}
	defer libc.Xfree(tls, va)
	if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_MEMSTATUS, libc.VaList(va, int32(1))); rc != sqlite3.SQLITE_OK {
		// SQLITE_MISUSE: SQLite was initialised before this package.
		return fmt.Errorf("enable SQLite memory statistics: sqlite3_config returned %d", rc)
	}
	return nil
}

// SQLiteMemory returns the bytes SQLite has allocated in this process now
// (page caches, schemas, prepared statements and buffers of every open
// connection of every DB) and the most it has had allocated at once since
// the process started (sqlite3_memory_used and sqlite3_memory_highwater).
// The Go heap does not hold these bytes: SQLite allocates outside it. It
// returns an error when SQLite keeps no memory statistics, which happens
// only if something initialised SQLite before this package. It is safe for
// concurrent use.
func SQLiteMemory() (used, highwater int64, err error) {
	if memStatusErr != nil {
		return 0, 0, memStatusErr
	}
	tls := libc.NewTLS()
	defer tls.Close()
	// Both read the same counter under SQLite's malloc mutex; 0 leaves the
	// high-water mark as it is.
	return sqlite3.Xsqlite3_memory_used(tls), sqlite3.Xsqlite3_memory_highwater(tls, 0), nil
}
