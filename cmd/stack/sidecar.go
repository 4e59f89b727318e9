package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stackctl/stack/proxy"
)

// adminClient talks to the sidecar running with this data directory.
type adminClient struct {
	base  string
	token string
	http  *http.Client
	// what it talks to, for errors: the sidecar admin API by default.
	what string
}

// runningSidecar returns a client for the sidecar that owns this data
// directory's files, or nil when none runs. The CLI then opens the files
// itself.
func (a *app) runningSidecar(ctx context.Context) (*adminClient, error) {
	b, err := os.ReadFile(filepath.Join(a.home(), runFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var info runInfo
	if err := json.Unmarshal(b, &info); err != nil || info.Admin == "" {
		return nil, nil
	}
	if info.PID > 0 {
		if err := syscall.Kill(info.PID, 0); errors.Is(err, syscall.ESRCH) {
			return nil, nil // a stale file from a sidecar that did not exit cleanly
		}
	}
	tok, err := os.ReadFile(filepath.Join(a.home(), adminTokenFile))
	if err != nil {
		return nil, fmt.Errorf("a sidecar runs (%s) but its admin token cannot be read: %w", info.Admin, err)
	}
	c := &adminClient{
		base:  "http://" + info.Admin,
		token: strings.TrimSpace(string(tok)),
		http:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var st proxy.Status
	if err := c.do(sctx, http.MethodGet, proxy.AdminStatus, nil, &st); err != nil {
		var ae *adminError
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, nil // nothing answers: the run file is stale
	}
	if st.Home != a.home() {
		return nil, fmt.Errorf("the sidecar at %s serves %s, not %s", info.Admin, st.Home, a.home())
	}
	return c, nil
}

// adminError is an answer from the admin API (or the control plane)
// other than 2xx.
type adminError struct {
	Status int
	Msg    string
	What   string
}

func (e *adminError) Error() string {
	what := e.What
	if what == "" {
		what = "sidecar admin API"
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", what, e.Msg, e.Status)
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *adminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *adminClient) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &adminError{Status: resp.StatusCode, Msg: e.Error, What: c.what}
	}
	return resp, nil
}

// snapshot downloads a consistent copy of a file the sidecar owns to a
// temporary file, removed when the command ends.
func (a *app) snapshot(ctx context.Context, c *adminClient, path, name string) (string, error) {
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp("", "stack-"+name+"-*.db")
	if err != nil {
		return "", err
	}
	a.onClose(func() error { return os.Remove(f.Name()) })
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", fmt.Errorf("snapshot of %s: %w", name, err)
	}
	return f.Name(), f.Close()
}
