package audit

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkJournalWrite compares the ways a 300-byte record (about a
// request record's size) can reach the OS, with a background fdatasync's
// share every 500 records as under SyncInterval: the journal's pwrite, and
// a copy into a shared mapping of a preallocated file, whose pages fault
// again after each sync. It is why the journal is written, not mapped
// (docs/performance.md, "The gap by part").
func BenchmarkJournalWrite(b *testing.B) {
	const size, rec, syncEvery = 4 << 20, 300, 500
	open := func(b *testing.B) *os.File {
		f, err := os.Create(filepath.Join(b.TempDir(), "journal"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			b.Skipf("fallocate: %v", err)
		}
		return f
	}
	buf := make([]byte, rec)
	b.Run("pwrite", func(b *testing.B) {
		f := open(b)
		off, n := 0, 0
		for b.Loop() {
			if _, err := f.WriteAt(buf, int64(off)); err != nil {
				b.Fatal(err)
			}
			if off += rec; off+rec > size {
				off = 0
			}
			if n++; n%syncEvery == 0 {
				fdatasync(f)
			}
		}
	})
	b.Run("mmap", func(b *testing.B) {
		f := open(b)
		m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			b.Fatal(err)
		}
		defer syscall.Munmap(m)
		off, n := 0, 0
		for b.Loop() {
			copy(m[off:], buf)
			if off += rec; off+rec > size {
				off = 0
			}
			if n++; n%syncEvery == 0 {
				fdatasync(f)
			}
		}
	})
}
