package passport

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"s3:GetObject", "s3:GetObject", true},
		{"s3:Get*", "s3:GetObject", true},
		{"s3:Get*", "s3:PutObject", false},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b/c", true},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket", false},
		{"arn:aws:s3:::b?cket", "arn:aws:s3:::bucket", true},
		{"*", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*", "a", true},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"?", "", false},
		{"", "", true},
		{"", "a", false},
		// Many stars against a long key the agent chose: answered at once,
		// not after exponential backtracking.
		{"arn:aws:s3:::reports/*/*/*/*/*/*.csv", "arn:aws:s3:::reports/" + strings.Repeat("/", 1000) + "x", false},
		{"arn:aws:s3:::reports/*/*/*/*/*/*.csv", "arn:aws:s3:::reports/" + strings.Repeat("a/", 500) + "x.csv", true},
	} {
		if got := GlobMatch(c.p, c.s); got != c.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

func TestNarrowingValidate(t *testing.T) {
	s := Scope{{Hosts: []string{"s3.amazonaws.com"}, Credentials: []string{"aws"}, Narrow: &Narrowing{
		Actions: []string{"s3GetObject", "s3:Get Object"}, Resources: []string{"bucket"}, Regions: []string{"US-EAST-1"},
		Permissions: map[string]string{"contents": "owner"}, Scopes: []string{"a b"}, Repositories: []string{"o/r"},
	}}}
	err := s.Validate()
	if !errors.Is(err, ErrInvalidScope) {
		t.Fatalf("Validate = %v, want ErrInvalidScope", err)
	}
	for _, want := range []string{"actions[0]", "actions[1]", "resources[0]", "regions[0]", "permissions contents", "scopes[0]", "repositories[0]"} {
		if !strings.Contains(err.Error(), "grant[0].narrow."+want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	noCreds := Scope{{Hosts: []string{"a.example"}, Narrow: &Narrowing{Scopes: []string{"read"}}}}
	if err := noCreds.Validate(); err == nil || !strings.Contains(err.Error(), "names no credentials") {
		t.Errorf("narrow without credentials: %v", err)
	}
	good := Scope{{Hosts: []string{"s3.amazonaws.com"}, Credentials: []string{"aws"}, Narrow: &Narrowing{
		Actions: []string{"s3:GetObject", "s3:List*", "*"}, Resources: []string{"arn:aws:s3:::b/*", "*"}, Regions: []string{"us-east-1"},
		Permissions: map[string]string{"contents": "read"}, Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}, Repositories: []string{"repo.x"},
	}}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid narrowing refused: %v", err)
	}
}

func TestNarrowingCovers(t *testing.T) {
	grant := func(n *Narrowing) Scope {
		return Scope{{Hosts: []string{"api.example"}, Credentials: []string{"c"}, Narrow: n}}
	}
	parent := grant(&Narrowing{Actions: []string{"s3:Get*", "s3:ListBucket"}, Resources: []string{"arn:aws:s3:::b/*"},
		Permissions: map[string]string{"contents": "write"}, Scopes: []string{"read", "write"}})
	for _, c := range []struct {
		name  string
		child *Narrowing
		ok    bool
	}{
		{"same", &Narrowing{Actions: []string{"s3:Get*", "s3:ListBucket"}, Resources: []string{"arn:aws:s3:::b/*"}, Permissions: map[string]string{"contents": "write"}, Scopes: []string{"read"}}, true},
		{"literal under glob", &Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::b/x"}, Permissions: map[string]string{"contents": "read"}, Scopes: []string{"read"}}, true},
		{"nil child", nil, false},
		{"wider action", &Narrowing{Actions: []string{"s3:PutObject"}, Resources: []string{"arn:aws:s3:::b/*"}, Permissions: map[string]string{"contents": "read"}, Scopes: []string{"read"}}, false},
		{"own wildcard", &Narrowing{Actions: []string{"s3:G*"}, Resources: []string{"arn:aws:s3:::b/*"}, Permissions: map[string]string{"contents": "read"}, Scopes: []string{"read"}}, false},
		{"any resource", &Narrowing{Actions: []string{"s3:GetObject"}, Permissions: map[string]string{"contents": "read"}, Scopes: []string{"read"}}, false},
		{"higher permission", &Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::b/x"}, Permissions: map[string]string{"contents": "admin"}, Scopes: []string{"read"}}, false},
		{"other scope", &Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::b/x"}, Permissions: map[string]string{"contents": "read"}, Scopes: []string{"admin"}}, false},
	} {
		err := parent.Covers(grant(c.child))
		if (err == nil) != c.ok {
			t.Errorf("%s: Covers = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if err := grant(nil).Covers(grant(&Narrowing{Scopes: []string{"x"}})); err != nil {
		t.Errorf("an unnarrowed parent covers any narrowing: %v", err)
	}
}

func TestNarrowingKey(t *testing.T) {
	a := &Narrowing{Actions: []string{"s3:B", "s3:A"}, Permissions: map[string]string{"x": "read", "a": "write"}}
	b := &Narrowing{Actions: []string{"s3:A", "s3:B", "s3:A"}, Permissions: map[string]string{"a": "write", "x": "read"}}
	if a.Key() != b.Key() || a.Key() == "" {
		t.Errorf("equal narrowings have keys %q and %q", a.Key(), b.Key())
	}
	if (&Narrowing{Actions: []string{"s3:A"}}).Key() == a.Key() {
		t.Error("different narrowings share a key")
	}
	if (*Narrowing)(nil).Key() != "" {
		t.Error("nil narrowing has a key")
	}
}

// GlobMatch agrees with the regular expression its pattern stands for.
func FuzzGlobMatch(f *testing.F) {
	f.Add("s3:Get*", "s3:GetObject")
	f.Add("a*b?c*", "axxbyczz")
	f.Add("*/*.csv", "x/y/z.csv")
	f.Add("*", "*0") // a star in the text under a star of the pattern
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 64 || len(s) > 256 || !ascii(p) || !ascii(s) {
			return // '?' is one byte here, one rune in a regexp
		}
		var re strings.Builder
		re.WriteString(`(?s)\A`)
		for _, r := range p {
			switch r {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString(`\z`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := GlobMatch(p, s); got != want {
			t.Fatalf("GlobMatch(%q, %q) = %v, the regexp says %v", p, s, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// An empty narrowing (narrow: {}) is no narrowing: the same key, the same
// coverage either side, and no complaint on a grant without credentials.
func TestNarrowingEmptyIsNone(t *testing.T) {
	empties := map[string]*Narrowing{
		"{}":                   {},
		"empty lists and maps": {Scopes: []string{}, Permissions: map[string]string{}, Repositories: []string{}, Actions: []string{}, Resources: []string{}, Regions: []string{}},
	}
	grant := func(n *Narrowing) Scope {
		return Scope{{Hosts: []string{"api.example"}, Credentials: []string{"c"}, Narrow: n}}
	}
	errText := func(err error) string {
		if err == nil {
			return "covered"
		}
		return err.Error()
	}
	others := map[string]*Narrowing{
		"nil":         nil,
		"scopes":      {Scopes: []string{"read"}},
		"permissions": {Permissions: map[string]string{"contents": "read"}},
		"actions":     {Actions: []string{"s3:GetObject"}},
	}
	for name, e := range empties {
		if k := e.Key(); k != "" {
			t.Errorf("%s: key %q, want the nil narrowing's", name, k)
		}
		for oname, o := range others {
			if got, want := errText(grant(e).Covers(grant(o))), errText(grant(nil).Covers(grant(o))); got != want {
				t.Errorf("%s parent over %s: %s; a parent without narrowing: %s", name, oname, got, want)
			}
			if got, want := errText(grant(o).Covers(grant(e))), errText(grant(o).Covers(grant(nil))); got != want {
				t.Errorf("%s parent over %s: %s; over a child without narrowing: %s", oname, name, got, want)
			}
		}
		noCreds := Scope{{Hosts: []string{"a.example"}, Narrow: e}}
		if err := noCreds.Validate(); err != nil {
			t.Errorf("%s on a grant without credentials: %v", name, err)
		}
	}
}
