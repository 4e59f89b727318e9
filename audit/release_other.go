//go:build !linux

package audit

import bolt "go.etcd.io/bbolt"

// releaseMapped is a no-op where MADV_DONTNEED on a shared file mapping is
// not known to keep the contents.
func releaseMapped(*bolt.DB, int64) {}
