//go:build linux

package audit

import (
	"os"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops the pages of db's memory map from the process's
// resident set. bbolt rewrites the tail of the records tree copy-on-write
// in every commit and reads it back through the map, so over time every
// page of a growing log is touched and counted in RSS until bbolt remaps
// the file. The map is shared and read-only: MADV_DONTNEED only unmaps
// the pages, which stay in the page cache, and the next access maps them
// again. The caller holds wmu, so no write transaction can remap the
// file meanwhile; size is the database size of the last commit, which the
// map always covers.
func releaseMapped(db *bolt.DB, size int64) {
	page := int64(os.Getpagesize())
	n := size &^ (page - 1)
	if n <= 0 {
		return
	}
	addr := db.Info().Data
	if addr == 0 {
		return
	}
	// Passing the address as a plain integer keeps unsafe out; the range
	// lies inside the live mapping (see above). A failure costs only RSS.
	syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(n), syscall.MADV_DONTNEED)
}
