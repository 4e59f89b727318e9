package evalset

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Repo is a public GitHub repository pinned to a commit.
type Repo struct {
	// Name is owner/name as GitHub spells it.
	Name string
	// Commit is the 40-hex commit every file is read at.
	Commit string
	// Licence is the repository's licence, as its LICENSE file says.
	Licence string
}

// tree reads files of one repository at its pinned commit from a bare
// git directory (as fetch leaves it: <mirror>/<owner>+<name>/repo).
type tree struct {
	dir    string
	commit string
}

func openRepo(mirror string, r Repo) (*tree, error) {
	dir := filepath.Join(mirror, strings.Replace(r.Name, "/", "+", 1), "repo")
	t := &tree{dir: dir, commit: r.Commit}
	if _, err := t.git("cat-file", "-e", r.Commit+"^{commit}"); err != nil {
		return nil, fmt.Errorf("open %s at %s in %s: %w", r.Name, r.Commit, dir, err)
	}
	return t, nil
}

func (t *tree) git(args ...string) ([]byte, error) {
	cmd := exec.Command("git", append([]string{"--git-dir", t.dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// read returns the file at path.
func (t *tree) read(path string) ([]byte, error) {
	return t.git("show", t.commit+":"+path)
}

// list returns the files under dir whose names end in one of exts, sorted.
func (t *tree) list(dir string, exts ...string) ([]string, error) {
	out, err := t.git("ls-tree", "-r", "--name-only", t.commit, "--", dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		for _, e := range exts {
			if strings.HasSuffix(f, e) {
				files = append(files, f)
				break
			}
		}
	}
	return files, nil
}
