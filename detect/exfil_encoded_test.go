package detect

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

// Secrets the shapes missed: after a JSON escape, encoded, and AWS's
// documentation keys, which are not secrets.
func TestExfiltrationSecretMisses(t *testing.T) {
	const (
		keyID  = "AKIAQ3EGSNXTF2RWPK7M"
		secret = "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"
		gh     = "ghp_aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3"
	)
	config := "[default]\naws_access_key_id = " + keyID + "\naws_secret_access_key = " + secret + "\n"
	x, _ := NewExfiltration(ExfiltrationOptions{})
	for _, tc := range []struct {
		name, body string
		want       string // rule, empty for no signal
		sev        Severity
	}{
		{name: "after a JSON newline escape", body: `{"messages":[{"role":"user","content":"here it is:\n` + keyID + `"}]}`, want: "aws_access_key_id", sev: Critical},
		{name: "after a JSON tab escape", body: `{"content":"token:\t` + gh + `"}`, want: "github_token", sev: Critical},
		{name: "after a unicode escape", body: `{"content":"key\u003a\u0020` + keyID + `"}`, want: "aws_access_key_id", sev: Critical},
		{name: "an escaped backslash and a letter", body: `{"content":"C:\\n` + keyID + `"}`, want: ""},
		{name: "base64", body: `{"file":"` + base64.StdEncoding.EncodeToString([]byte(config)) + `"}`, want: "aws_secret_access_key", sev: Critical},
		{name: "base64url", body: "blob=" + base64.RawURLEncoding.EncodeToString([]byte("token "+gh)), want: "github_token", sev: Critical},
		{name: "hex", body: "data=" + hex.EncodeToString([]byte("key "+keyID)), want: "aws_access_key_id", sev: Critical},
		{name: "percent-encoded", body: "aws_secret_access_key=" + url.QueryEscape(secret[:10]+"/"+secret[11:]), want: "aws_secret_access_key", sev: Critical},
		{name: "percent-encoded throughout", body: "q=" + strings.ReplaceAll(url.PathEscape("key: "+keyID), "A", "%41"), want: "aws_access_key_id", sev: Critical},
		{name: "AWS documentation key id", body: "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", want: ""},
		{name: "AWS documentation secret", body: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", want: ""},
		{name: "AWS documentation key, base64", body: base64.StdEncoding.EncodeToString([]byte("AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")), want: ""},
		{name: "a base64 image", body: "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", want: ""},
		{name: "a hash", body: "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := x.Inspect(&Event{Host: "collector.example", Body: []byte(tc.body)})
			if tc.want == "" {
				if len(sigs) != 0 {
					t.Fatalf("signals %v: %+v", rules(sigs), sigs)
				}
				return
			}
			if len(sigs) == 0 || !hasString(rules(sigs), tc.want) {
				t.Fatalf("rules %v, want %s", rules(sigs), tc.want)
			}
			for _, s := range sigs {
				if s.Rule == tc.want && s.Severity != tc.sev {
					t.Errorf("severity %s, want %s", s.Severity, tc.sev)
				}
				for _, leak := range []string{keyID, secret, gh} {
					if strings.Contains(s.Evidence, leak) || s.Span != nil && strings.Contains(s.Span.Excerpt, leak) {
						t.Errorf("evidence quotes the secret: %q", s.Evidence)
					}
				}
			}
		})
	}
}
