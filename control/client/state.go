package client

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// state is what a sidecar remembers across restarts: its credential (a
// join token is spent once) and the feed revision it applied, with the
// control plane URLs they came from.
type state struct {
	// URLs is control.url when the state was saved.
	URLs []string `json:"urls"`
	// URL is the one URL of a state saved before lists were accepted.
	URL       string    `json:"url,omitempty"`
	SidecarID string    `json:"sidecar_id"`
	Agent     string    `json:"agent"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Rev       int64     `json:"rev"`
}

// overlaps says whether the state was earned with the control plane at
// urls: whether they name one of the URLs it was saved with. Replicas
// share one store, so a credential and a revision from one are good at
// every other; a list that names none of them is another control plane.
func (st state) overlaps(urls []string) bool {
	saved := st.URLs
	if st.URL != "" {
		saved = append(saved[:len(saved):len(saved)], st.URL)
	}
	for _, s := range saved {
		for _, u := range urls {
			if strings.TrimRight(s, "/") == u {
				return true
			}
		}
	}
	return false
}

func loadState(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// saveState writes the state atomically, mode 0600: it holds a
// credential.
func saveState(path string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".control-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
