// Package evalset loads the public data the prompt-injection scanner is
// trained and measured on: attacks and benign text from public GitHub
// repositories, each pinned to a commit and read from a local mirror of
// bare git directories (<mirror>/<owner>+<name>/repo), and benign text
// from Go modules pinned by go.sum, read from the module cache.
//
// Sources are either held out (never trained or tuned on: they measure
// how the scanner does on attacks and text it has not seen) or training
// sources; a training source's items are split once more, by a hash of
// their text, into the part the model is fitted on and a development
// part it is measured on (Dev).
//
// It is used by programs run by hand (internal/cmd/injeval and
// internal/cmd/injtrain), not by the sidecar.
package evalset

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// Item is one labelled text.
type Item struct {
	// Source names the Source it came from; Variant, when set, says how
	// the text was made from the source's data ("bare", "in-context").
	Source, Variant string
	// Attack is set for a prompt injection or jailbreak, unset for benign
	// text.
	Attack bool
	Text   string
}

// Dev reports whether a training item belongs to the development part
// (a fifth of each training source, chosen by a hash of the text).
func (it Item) Dev() bool {
	h := fnv.New32a()
	h.Write([]byte(it.Text))
	return h.Sum32()%5 == 0
}

// Source is one body of public data.
type Source struct {
	Name string
	// HeldOut sources are for evaluation only.
	HeldOut bool
	// Repo is where the data comes from; Module is set instead for
	// benign text from the Go module cache.
	Repo   Repo
	Module string
	// What says in a few words what the items are.
	What string
	load func(*tree) ([]Item, error)
	// loadDir reads a directory (the module cache) instead of a repo.
	loadDir func(dir string) ([]Item, error)
}

// Config says where the data is on this machine.
type Config struct {
	// Mirror holds the fetched repositories, <owner>+<name>/repo each.
	Mirror string
	// ModCache is the Go module cache (go env GOMODCACHE).
	ModCache string
	// Repo is this repository's root, for its own test corpus.
	Repo string
}

// Load returns the items of a source.
func (s Source) Load(c Config) ([]Item, error) {
	var items []Item
	var err error
	switch {
	case s.load != nil:
		var t *tree
		if t, err = openRepo(c.Mirror, s.Repo); err != nil {
			return nil, err
		}
		items, err = s.load(t)
	case s.loadDir != nil:
		dir := c.ModCache
		if s.Name == "stack-corpus" || s.Name == "stack-corpus-holdout" {
			dir = c.Repo
		}
		items, err = s.loadDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", s.Name, err)
	}
	out := items[:0]
	seen := make(map[string]bool)
	for _, it := range items {
		it.Text = strings.TrimSpace(it.Text)
		key := fmt.Sprint(it.Attack, it.Variant, it.Text)
		if len(it.Text) < 8 || seen[key] {
			continue
		}
		seen[key] = true
		it.Source = s.Name
		out = append(out, it)
	}
	return out, nil
}

// Sources lists every source, held out first.
func Sources() []Source { return sources }

// Lookup returns the source of that name.
func Lookup(name string) (Source, bool) {
	for _, s := range sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}
