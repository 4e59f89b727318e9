package swap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// fixture is a directory with three files, one of them not there yet.
type fixture struct {
	dir     string
	journal string
	paths   []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, journal: filepath.Join(dir, "change.journal")}
	for _, name := range []string{"a.db", "b.json", "c.yaml"} {
		f.paths = append(f.paths, filepath.Join(dir, name))
	}
	for _, p := range f.paths[:2] {
		if err := os.WriteFile(p, []byte("old "+filepath.Base(p)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// plan replaces every file with "new NAME"; stage i fails when failAt is i.
func (f *fixture) plan(failAt int) Plan {
	p := Plan{Journal: f.journal, Meta: map[string]string{"to": "new"}}
	for i, path := range f.paths {
		p.Files = append(p.Files, File{Path: path, Stage: func(_ context.Context, staged string) error {
			if i == failAt {
				// Fail after writing something, as a KMS dying mid-file would.
				_ = os.WriteFile(staged, []byte("partial"), 0o600)
				return errors.New("target KMS down")
			}
			return WriteStaged(staged, []byte("new "+filepath.Base(path)), 0o600)
		}})
	}
	return p
}

// state returns every file in the directory and its content.
func (f *fixture) state(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(f.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func (f *fixture) wantState(t *testing.T, want map[string]string) {
	t.Helper()
	got := f.state(t)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("directory holds %v, want %v", got, want)
	}
}

var (
	oldState = map[string]string{"a.db": "old a.db", "b.json": "old b.json"}
	newState = map[string]string{"a.db": "new a.db", "b.json": "new b.json", "c.yaml": "new c.yaml"}
)

func TestRun(t *testing.T) {
	f := newFixture(t)
	if err := Run(context.Background(), f.plan(-1)); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, newState)
	if rec, err := Pending(f.journal); rec != nil || err != nil {
		t.Fatalf("pending after Run: %v, %v", rec, err)
	}
}

// A stage that fails, at any file, leaves every file as it was and
// nothing staged.
func TestRunStageFailureChangesNothing(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint("file ", i), func(t *testing.T) {
			f := newFixture(t)
			err := Run(context.Background(), f.plan(i))
			if err == nil || err.Error() != "target KMS down" {
				t.Fatalf("err = %v", err)
			}
			f.wantState(t, oldState)
		})
	}
}

func TestRunCanceledBeforeDecisionChangesNothing(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := f.plan(-1)
	last := p.Files[2].Stage
	p.Files[2].Stage = func(c context.Context, staged string) error {
		cancel()
		return last(c, staged)
	}
	if err := Run(ctx, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	f.wantState(t, oldState)
}

// What a crash before the journal leaves behind is replaced by the next
// Run.
func TestRunReplacesStaleStagedFiles(t *testing.T) {
	f := newFixture(t)
	for _, p := range f.paths {
		if err := os.WriteFile(StagedPath(p), []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Run(context.Background(), f.plan(-1)); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, newState)
}

// A crash at any point of the switch leaves the journal; Finish then
// completes the change, and until then Run refuses to start another.
func TestCrashDuringSwitchIsFinished(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint("before file ", i), func(t *testing.T) {
			f := newFixture(t)
			p := f.plan(-1)
			crash := errors.New("killed")
			p.BeforeSwitch = func(path string) error {
				if path == f.paths[i] {
					return crash
				}
				return nil
			}
			if err := Run(context.Background(), p); !errors.Is(err, crash) {
				t.Fatalf("err = %v", err)
			}
			rec, err := Pending(f.journal)
			if err != nil || rec == nil || rec.Meta["to"] != "new" || len(rec.Files) != 3 {
				t.Fatalf("pending = %+v, %v", rec, err)
			}
			// Some files are new, the rest old: nobody may use them now.
			st := f.state(t)
			for j, path := range f.paths {
				name := filepath.Base(path)
				if j < i && st[name] != "new "+name || j >= i && st[name] == "new "+name {
					t.Fatalf("after a crash before file %d: %v", i, st)
				}
			}
			if err := Run(context.Background(), f.plan(-1)); !errors.Is(err, ErrPending) {
				t.Fatalf("Run with a change pending: %v", err)
			}

			got, err := Finish(f.journal)
			if err != nil || got == nil || got.Meta["to"] != "new" {
				t.Fatalf("Finish = %+v, %v", got, err)
			}
			f.wantState(t, newState)
			if got, err := Finish(f.journal); got != nil || err != nil {
				t.Fatalf("second Finish = %+v, %v", got, err)
			}
		})
	}
}

// Finish renames only what the journal vouches for.
func TestFinishRefusesWhatItCannotVouchFor(t *testing.T) {
	crashed := func(t *testing.T) *fixture {
		f := newFixture(t)
		p := f.plan(-1)
		p.BeforeSwitch = func(string) error { return errors.New("killed") }
		if err := Run(context.Background(), p); err == nil {
			t.Fatal("no crash")
		}
		return f
	}
	t.Run("staged file changed", func(t *testing.T) {
		f := crashed(t)
		if err := os.WriteFile(StagedPath(f.paths[1]), []byte("tampered"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Finish(f.journal); err == nil {
			t.Fatal("Finish renamed a staged file that changed")
		}
		if rec, _ := Pending(f.journal); rec == nil {
			t.Fatal("the journal went away")
		}
		if b, _ := os.ReadFile(f.paths[1]); string(b) != "old b.json" {
			t.Fatalf("b.json = %q", b)
		}
	})
	t.Run("staged file gone", func(t *testing.T) {
		f := crashed(t)
		if err := os.Remove(StagedPath(f.paths[0])); err != nil {
			t.Fatal(err)
		}
		if _, err := Finish(f.journal); err == nil {
			t.Fatal("Finish took a missing staged file for a done rename")
		}
	})
	t.Run("unreadable journal", func(t *testing.T) {
		f := newFixture(t)
		if err := os.WriteFile(f.journal, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Pending(f.journal); err == nil {
			t.Fatal("Pending accepted a torn journal")
		}
		if err := Run(context.Background(), f.plan(-1)); err == nil {
			t.Fatal("Run went ahead past a torn journal")
		}
	})
}

func TestWriteStagedRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteStaged(path, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteStaged(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v", err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "one" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("file = %q, %v", b, fi.Mode())
	}
}

func TestStagedPathIsBeside(t *testing.T) {
	got := []string{StagedPath("/home/s/vault.db"), StagedPath("rel/stack.yaml")}
	want := []string{"/home/s/.vault.db.swap", "rel/.stack.yaml.swap"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("StagedPath = %v, want %v", got, want)
	}
}
