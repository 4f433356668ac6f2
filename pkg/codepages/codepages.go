// Package codepages keeps resident only the parts of the executable that
// run.
//
// When a process touches a page of its executable, Linux maps the
// neighbouring pages that are in the page cache too (fault-around, 64 KiB)
// and reads ahead around a page that is not. A Go binary whose hot code is
// spread thin over megabytes (the API server's pure-Go SQLite is most of
// its 6 MB of code, and the runtime reads the matching parts of its 4 MB
// of pc-value tables to walk and scan stacks) so ends up with nearly all
// of its code and read-only data resident and counted in its RSS, whether
// it runs or not.
//
// Release marks those mappings random-access (no read-around), unmaps them,
// and drops the read-only data's pages from the page cache. Afterwards the
// code the process no longer runs (its start-up, mostly) stays out, and a
// page of read-only data comes back alone when it is read, since its
// neighbours are no longer cached to be mapped with it. Code comes back in
// 64 KiB blocks whatever the advice (the kernel, 6.18 here, reads
// executable mappings around a fault), so its pages stay in the page
// cache: read again from the disk, they would be charged to the process's
// cgroup, where the pages cached when the image was pulled cost it
// nothing. The read-only data read again is charged: what the process
// reads of it, a page at a time. The pages other processes have mapped
// stay cached, and so stay mapped around a fault: Release then saves less,
// and never breaks anything.
package codepages

import "log/slog"

// Result describes what Release did.
type Result struct {
	// Mapped is the size of the executable's read-only mappings: its code
	// and read-only data.
	Mapped int64
	// Before and After are how much of them was resident before Release
	// and right after it.
	Before, After int64
}

// Release makes the executable's code and read-only data pages come back
// one at a time, on use. It is safe to call at any time from any
// goroutine, as often as wanted: a call costs a few system calls and the
// page faults that bring back what runs. It returns an error where the
// platform cannot do it (not Linux, no /proc), having changed nothing.
func Release() (Result, error) { return release() }

// LogRelease calls Release and logs the outcome at debug level: a process
// that cannot release its pages runs on as it would have.
func LogRelease(log *slog.Logger) {
	r, err := Release()
	if err != nil {
		log.Debug("code pages stay resident", "err", err)
		return
	}
	log.Debug("code pages released", "mapped_bytes", r.Mapped, "resident_before_bytes", r.Before, "resident_after_bytes", r.After)
}
