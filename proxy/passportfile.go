package proxy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PassportFile supplies the passport held in a file, re-read whenever the
// file changes (a refreshed passport, a Kubernetes secret's symlink swap),
// so it applies without a restart. A stat per request is the whole cost.
type PassportFile struct {
	path string

	mu    sync.Mutex
	stamp fileStamp
	token string
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// NewPassportFile returns a source reading path; the file need not exist
// yet (requests fail with passport_missing until it does).
func NewPassportFile(path string) *PassportFile { return &PassportFile{path: path} }

// Passport returns the file's passport, trimmed of whitespace.
func (f *PassportFile) Passport() (string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("passport file %s does not exist", f.path)
		}
		return "", err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == f.stamp && f.token != "" {
		return f.token, nil
	}
	if fi.Size() > 64<<10 {
		return "", fmt.Errorf("passport file %s is larger than 64 KiB", f.path)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", err
	}
	f.token = strings.TrimSpace(string(b))
	f.stamp = st
	return f.token, nil
}
