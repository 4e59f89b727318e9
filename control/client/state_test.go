package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateKeptWhileURLsOverlap(t *testing.T) {
	a, b, c := "https://control-0.example.com:9443", "https://control-1.example.com:9443", "https://other.example.com:9443"
	tests := []struct {
		name  string
		saved string // the state file
		urls  []string
		kept  bool
	}{
		{"same URL", `{"urls":["` + a + `"]}`, []string{a}, true},
		{"a replica added", `{"urls":["` + a + `"]}`, []string{b, a + "/"}, true},
		{"a replica removed", `{"urls":["` + a + `","` + b + `"]}`, []string{b}, true},
		{"no URL in common", `{"urls":["` + a + `","` + b + `"]}`, []string{c}, false},
		{"one URL saved before lists", `{"url":"` + a + `"}`, []string{b, a}, true},
		{"one other URL saved before lists", `{"url":"` + c + `"}`, []string{a, b}, false},
		{"no file", "", []string{a}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "control-state.json")
			if tt.saved != "" {
				body := tt.saved[:len(tt.saved)-1] + `,"sidecar_id":"sc1","token":"t","rev":7}`
				if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			urls, err := checkURLs(tt.urls)
			if err != nil {
				t.Fatal(err)
			}
			cl := &Client{opts: Options{StatePath: path}, urls: urls}
			st, err := cl.loadState()
			if err != nil {
				t.Fatal(err)
			}
			if kept := st.SidecarID == "sc1" && st.Rev == 7; kept != tt.kept {
				t.Fatalf("state kept: %v, want %v (%+v)", kept, tt.kept, st)
			}
			if tt.kept && (st.URL != "" || len(st.URLs) != len(urls)) {
				t.Fatalf("kept state names %q %q, want the URLs in use %q", st.URL, st.URLs, urls)
			}
		})
	}
}

func TestCheckURLs(t *testing.T) {
	tests := []struct {
		name string
		urls []string
		want string // in the error; "" for none
	}{
		{"one", []string{"https://control:9443"}, ""},
		{"several", []string{"https://control-0:9443", "https://control-1:9443/"}, ""},
		{"none", nil, "control.url: give"},
		{"http", []string{"https://control-0:9443", "http://control-1:9443"}, `control.url[1] "http://control-1:9443": the control plane is reached over HTTPS only`},
		{"no host", []string{"https://"}, `control.url[0] "https://": want https://HOST:PORT`},
		{"a path", []string{"https://control:9443/api"}, `control.url[0] "https://control:9443/api": want https://HOST:PORT, with no path`},
		{"twice", []string{"https://control:9443", "https://control:9443/"}, `control.url[1] "https://control:9443/": listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkURLs(tt.urls)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}
