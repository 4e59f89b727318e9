// Package swap replaces several files as one change: every new file is
// staged beside the one it replaces and checked first, then a journal
// records the decision, then the files are renamed into place. A failure
// before the journal is written leaves every file as it was; a crash after
// it leaves the journal, and Finish completes the change.
//
//	err := swap.Run(ctx, swap.Plan{
//		Journal: filepath.Join(home, "rewrap.journal"),
//		Files: []swap.File{
//			{Path: keysPath, Stage: func(ctx context.Context, staged string) error { ... }},
//			{Path: configPath, Stage: ...},
//		},
//	})
//
// Readers of the files check Pending first and refuse to use them while
// a change is pending: some may be new and others old.
package swap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrPending means a change recorded in the journal has not been finished:
// run Finish (through the command that made it) before anything else.
var ErrPending = errors.New("an interrupted change is pending")

// File is one file of a change.
type File struct {
	// Path is the file replaced, or created when it does not exist.
	Path string
	// Stage writes the new content to staged, a path beside Path that does
	// not exist, and checks it. It must not change Path. Run syncs staged
	// afterwards.
	Stage func(ctx context.Context, staged string) error
}

// Plan is a change of several files made as one.
type Plan struct {
	// Journal is the file that records the change while it is switched
	// into place.
	Journal string
	// Meta is recorded in the journal, for whoever finds it pending (what
	// the change is, how to finish it).
	Meta map[string]string
	// Files are staged and switched in this order.
	Files []File
	// BeforeSwitch, when set, runs before each file is renamed into place;
	// an error stops the change there, as a crash would, leaving the
	// journal for Finish. It is a failpoint for crash tests.
	BeforeSwitch func(path string) error
}

// Record is what a journal holds.
type Record struct {
	Meta  map[string]string `json:"meta,omitempty"`
	Files []Entry           `json:"files"`
}

// Entry is one file of a recorded change.
type Entry struct {
	// Staged holds the new content until it is renamed to Path.
	Staged string `json:"staged"`
	Path   string `json:"path"`
	// SHA256 is the new content's hash, hex.
	SHA256 string `json:"sha256"`
}

// StagedPath is where Run stages the new content of path.
func StagedPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swap")
}

// Run stages every file of p, then switches them all into place. Until
// every file is staged and the journal is written, an error leaves every
// Path as it was and removes what was staged (a crash leaves staged
// files, which the next Run replaces). From then on the change is decided:
// an error or a crash leaves the journal, and Finish completes it. Run
// refuses, with ErrPending, while an earlier change is pending.
func Run(ctx context.Context, p Plan) error {
	if rec, err := Pending(p.Journal); err != nil {
		return err
	} else if rec != nil {
		return fmt.Errorf("swap: %s: %w", p.Journal, ErrPending)
	}
	rec := &Record{Meta: p.Meta}
	for _, f := range p.Files {
		e, err := stage(ctx, f)
		if err != nil {
			removeStaged(rec)
			return err
		}
		rec.Files = append(rec.Files, e)
	}
	dirs := []string{filepath.Dir(p.Journal)}
	for _, e := range rec.Files {
		dirs = append(dirs, filepath.Dir(e.Staged))
	}
	if err := syncDirs(dirs); err != nil {
		removeStaged(rec)
		return fmt.Errorf("swap: %w", err)
	}
	if err := ctx.Err(); err != nil {
		removeStaged(rec)
		return fmt.Errorf("swap: %w", err)
	}
	if err := writeJournal(p.Journal, rec); err != nil {
		removeStaged(rec)
		return err
	}
	return finish(p.Journal, rec, p.BeforeSwitch)
}

func stage(ctx context.Context, f File) (Entry, error) {
	staged := StagedPath(f.Path)
	if err := os.Remove(staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Entry{}, fmt.Errorf("swap: stale %s: %w", staged, err)
	}
	if err := f.Stage(ctx, staged); err != nil {
		_ = os.Remove(staged)
		return Entry{}, err
	}
	sum, err := syncAndHash(staged)
	if err != nil {
		_ = os.Remove(staged)
		return Entry{}, fmt.Errorf("swap: staged %s: %w", staged, err)
	}
	return Entry{Staged: staged, Path: f.Path, SHA256: sum}, nil
}

func removeStaged(rec *Record) {
	for _, e := range rec.Files {
		_ = os.Remove(e.Staged)
	}
}

// Pending returns the change recorded in the journal at path, or nil when
// none is pending.
func Pending(path string) (*Record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("swap: journal: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil || len(rec.Files) == 0 {
		return nil, fmt.Errorf("swap: journal %s is unreadable (%v): finish or undo the change by hand", path, err)
	}
	return &rec, nil
}

// Finish completes the change recorded in the journal at path: each
// staged file still there is checked against its hash and renamed into
// place, and the journal is removed. It returns the record, or nil when no
// change was pending.
func Finish(path string) (*Record, error) {
	rec, err := Pending(path)
	if err != nil || rec == nil {
		return nil, err
	}
	if err := finish(path, rec, nil); err != nil {
		return nil, err
	}
	return rec, nil
}

func finish(journal string, rec *Record, before func(string) error) error {
	var dirs []string
	for _, e := range rec.Files {
		if before != nil {
			if err := before(e.Path); err != nil {
				return err
			}
		}
		if err := switchFile(e); err != nil {
			return fmt.Errorf("swap: %s: %w", e.Path, err)
		}
		dirs = append(dirs, filepath.Dir(e.Path))
	}
	if err := syncDirs(dirs); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	if err := os.Remove(journal); err != nil {
		return fmt.Errorf("swap: remove journal: %w", err)
	}
	return syncDirs([]string{filepath.Dir(journal)})
}

// switchFile renames e's staged file into place; when it is gone, the
// rename happened already and Path must hold the staged content.
func switchFile(e Entry) error {
	sum, err := hashFile(e.Staged)
	if errors.Is(err, fs.ErrNotExist) {
		if got, err := hashFile(e.Path); err != nil || got != e.SHA256 {
			return fmt.Errorf("neither %s nor the new content in place (%v)", e.Staged, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if sum != e.SHA256 {
		return fmt.Errorf("%s changed since it was staged", e.Staged)
	}
	return os.Rename(e.Staged, e.Path)
}

// writeJournal writes rec to path atomically: the change is decided when
// the rename returns, and an error means it did not happen.
func writeJournal(path string, rec *Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("swap: journal: %w", err)
	}
	tmp := path + ".tmp"
	if err := WriteStaged(tmp, append(b, '\n'), 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("swap: journal: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("swap: journal: %w", err)
	}
	// The change is decided once the rename returns: even if making it
	// durable fails, the switch goes on (and reports that failure when it
	// syncs the directory again).
	_ = syncDirs([]string{filepath.Dir(path)})
	return nil
}

// WriteStaged writes data to a new file at path with mode perm, durably:
// a Stage function for content held in memory.
func WriteStaged(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

func syncAndHash(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// syncDirs makes renames and new entries in dirs durable.
func syncDirs(dirs []string) error {
	seen := map[string]bool{}
	for _, dir := range dirs {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		if err != nil && !errors.Is(err, os.ErrInvalid) {
			return err
		}
	}
	return nil
}
