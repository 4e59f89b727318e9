package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSetFileKey(t *testing.T) {
	const to = "awskms://alias/stack"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			"double-quoted, comments kept",
			"# top\nkms:\n  # the key\n  uri: \"local://kms.key\" # dev only\n  timeout: 10s\n",
			"# top\nkms:\n  # the key\n  uri: \"awskms://alias/stack\" # dev only\n  timeout: 10s\n",
		},
		{
			"plain with a trailing comment",
			"kms:\n    uri: local://kms.key   # dev\nvault:\n    path: v.db\n",
			"kms:\n    uri: \"awskms://alias/stack\"   # dev\nvault:\n    path: v.db\n",
		},
		{
			"single-quoted with an escaped quote",
			"kms:\n  uri: 'local://it''s.key'\n",
			"kms:\n  uri: \"awskms://alias/stack\"\n",
		},
		{
			"flow mapping",
			"kms: {uri: local://kms.key, timeout: 5s}\n",
			"kms: {uri: \"awskms://alias/stack\", timeout: 5s}\n",
		},
		{
			"section without the key",
			"kms:\n  # Bound on each call.\n  timeout: 5s\nlog:\n  level: warn\n",
			"kms:\n  uri: \"awskms://alias/stack\"\n  # Bound on each call.\n  timeout: 5s\nlog:\n  level: warn\n",
		},
		{
			"empty section",
			"kms:\nlog:\n  level: warn\n",
			"kms:\n  uri: \"awskms://alias/stack\"\nlog:\n  level: warn\n",
		},
		{
			"no section",
			"log:\n  level: warn",
			"log:\n  level: warn\nkms:\n  uri: \"awskms://alias/stack\"\n",
		},
		{
			"only comments",
			"# nothing yet\n",
			"# nothing yet\nkms:\n  uri: \"awskms://alias/stack\"\n",
		},
		{"empty file", "", "kms:\n  uri: \"awskms://alias/stack\"\n"},
		{
			"non-ASCII before the value",
			"kms: {é: x, uri: local://k}\n",
			"kms: {é: x, uri: \"awskms://alias/stack\"}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SetFileKey([]byte(tt.in), "kms.uri", to)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestSetFileKeyRefusesWhatItCannotEditInPlace(t *testing.T) {
	for name, in := range map[string]string{
		"block scalar":          "kms:\n  uri: >-\n    local://kms.key\n",
		"flow without the key":  "kms: {timeout: 5s}\n",
		"multi-line quoted":     "kms:\n  uri: \"local://\n    kms.key\"\n",
		"section is a scalar":   "kms: local://kms.key\n",
		"not a mapping":         "- a\n- b\n",
		"explicit null section": "kms: null\n",
		"malformed":             "kms: [\n",
	} {
		t.Run(name, func(t *testing.T) {
			if out, err := SetFileKey([]byte(in), "kms.uri", "awskms://alias/x"); err == nil {
				t.Fatalf("edited it:\n%s", out)
			}
		})
	}
}

// The file stack init writes takes the new value and still loads, with
// every other setting unchanged.
func TestSetFileKeyOnDefaultFile(t *testing.T) {
	home := t.TempDir()
	out, err := SetFileKey(DefaultFile(), "kms.uri", "awskms://alias/stack")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(string(out), "\n"), strings.Count(string(DefaultFile()), "\n"); got != want {
		t.Errorf("edit changed the number of lines: %d, want %d", got, want)
	}
	writeFile(t, home, string(out))
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	want := Default(home)
	want.File = filepath.Join(home, FileName)
	want.KMS.URI = "awskms://alias/stack"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", c, want)
	}
}

func TestEnvVar(t *testing.T) {
	if got := EnvVar("kms.uri"); got != "STACK_KMS_URI" {
		t.Errorf("EnvVar(kms.uri) = %q", got)
	}
	if got := EnvVar("proxy.admin_listen"); got != "STACK_PROXY_ADMIN_LISTEN" {
		t.Errorf("EnvVar(proxy.admin_listen) = %q", got)
	}
}
