// Command injeval measures the prompt-injection scanner on public data:
// recall on attacks and the false-alarm rate on benign text, per source,
// for the patterns alone (the default) and with the learned layer on. It reads the
// sources listed in package evalset from local copies (see
// docs/detectors.md, "Data card", for the fetch sources and commits).
//
//	go run ./detect/injection/internal/cmd/injeval -mirror /work/.mirror
//
// Held-out sources are measured whole; training sources on their
// development fifth only (evalset.Item.Dev).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/stackctl/stack/detect/injection"
	"github.com/stackctl/stack/detect/injection/internal/evalset"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "injeval:", err)
		os.Exit(1)
	}
}

// config is one way of scanning that the table compares.
type config struct {
	name string
	opts injection.Options
}

var configs = []config{
	{"patterns", injection.Options{}},
	{"learned", injection.Options{LearnedThreshold: injection.RecommendedLearnedThreshold}},
}

// counts are one source's (and variant's) results under every config.
type counts struct {
	attacks, benign int
	caught, alarms  []int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("injeval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mirror := fs.String("mirror", "/work/.mirror", "directory of fetched repositories, <owner>+<name>/repo each")
	modcache := fs.String("modcache", "", "Go module cache (default: go env GOMODCACHE)")
	repo := fs.String("repo", ".", "this repository's root")
	only := fs.String("sources", "", "comma-separated source names (default: all)")
	misses := fs.String("show", "", "print the items of this source that patterns + learned layer get wrong")
	asJSON := fs.Bool("json", false, "print the table as JSON")
	chatRole := fs.String("chat", "", "scan each item as the content of a chat request's message with this role (system, user or tool), as an agent sends it to an LLM API, instead of as a document")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *modcache == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
		if err != nil {
			return fmt.Errorf("go env GOMODCACHE: %w", err)
		}
		*modcache = strings.TrimSpace(string(out))
	}
	switch *chatRole {
	case "", "system", "user", "tool":
	default:
		return fmt.Errorf("-chat: %q is not system, user or tool", *chatRole)
	}
	cfg := evalset.Config{Mirror: *mirror, ModCache: *modcache, Repo: *repo}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s != "" {
			want[s] = true
		}
	}
	type row struct {
		Source, Variant string
		HeldOut         bool
		c               *counts
	}
	var rows []row
	var errs []error
	for _, src := range evalset.Sources() {
		if len(want) > 0 && !want[src.Name] {
			continue
		}
		items, err := src.Load(cfg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		by := map[string]*counts{}
		var order []string
		for _, it := range items {
			if !src.HeldOut && !it.Dev() {
				continue
			}
			keys := []string{"all"}
			if it.Attack && it.Variant != "" && src.Name != "go-modules" && !strings.HasPrefix(src.Name, "stack-corpus") {
				keys = append(keys, it.Variant)
			}
			for _, key := range keys {
				if by[key] == nil {
					by[key] = &counts{caught: make([]int, len(configs)), alarms: make([]int, len(configs))}
					order = append(order, key)
				}
				if it.Attack {
					by[key].attacks++
				} else {
					by[key].benign++
				}
			}
			body := []byte(it.Text)
			if *chatRole != "" {
				body = chatRequest(*chatRole, it.Text)
			}
			for i, conf := range configs {
				r := injection.Scan(body, conf.opts)
				for _, key := range keys {
					switch {
					case it.Attack && r.Flagged:
						by[key].caught[i]++
					case !it.Attack && r.Flagged:
						by[key].alarms[i]++
					}
				}
				if src.Name == *misses && i == len(configs)-1 && r.Flagged != it.Attack {
					fmt.Fprintf(stdout, "--- %s attack=%v score=%.3f %v\n%s\n", it.Variant, it.Attack, r.Score, patternNames(r), clip(it.Text, 600))
				}
			}
		}
		sort.SliceStable(order, func(a, b int) bool { return order[a] == "all" && order[b] != "all" })
		for _, k := range order {
			v := ""
			if k != "all" {
				v = k
			}
			rows = append(rows, row{src.Name, v, src.HeldOut, by[k]})
		}
	}
	if *asJSON {
		type out struct {
			Source, Variant  string
			HeldOut          bool
			Attacks, Benign  int
			Recall, FalseAlm map[string]float64
		}
		var o []out
		for _, r := range rows {
			x := out{r.Source, r.Variant, r.HeldOut, r.c.attacks, r.c.benign, map[string]float64{}, map[string]float64{}}
			for i, conf := range configs {
				x.Recall[conf.name] = ratio(r.c.caught[i], r.c.attacks)
				x.FalseAlm[conf.name] = ratio(r.c.alarms[i], r.c.benign)
			}
			o = append(o, x)
		}
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		if err := e.Encode(o); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "source\tvariant\tsplit\tattacks\t")
	for _, conf := range configs {
		fmt.Fprintf(tw, "recall %s\t", conf.name)
	}
	fmt.Fprint(tw, "benign\t")
	for _, conf := range configs {
		fmt.Fprintf(tw, "false alarms %s\t", conf.name)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		split := "dev"
		if r.HeldOut {
			split = "held out"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t", r.Source, r.Variant, split, r.c.attacks)
		for i := range configs {
			fmt.Fprintf(tw, "%s\t", pct(r.c.caught[i], r.c.attacks))
		}
		if r.Variant != "" {
			fmt.Fprint(tw, "\t")
			for range configs {
				fmt.Fprint(tw, "\t")
			}
		} else {
			fmt.Fprintf(tw, "%d\t", r.c.benign)
			for i := range configs {
				fmt.Fprintf(tw, "%s\t", pct(r.c.alarms[i], r.c.benign))
			}
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

func patternNames(r injection.Result) []string {
	var s []string
	for _, m := range r.Matches {
		s = append(s, m.Pattern)
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// chatRequest is text as the content of a message with role in a chat
// completions request, among the turns an agent sends, each message's
// role first as the SDKs write them.
func chatRequest(role, text string) []byte {
	type message struct {
		Role       string `json:"role"`
		Content    string `json:"content"`
		ToolCallID string `json:"tool_call_id,omitempty"`
	}
	msgs := []message{{Role: "system", Content: "You are a helpful assistant."}}
	switch role {
	case "system":
		msgs = []message{{Role: "system", Content: text}, {Role: "user", Content: "What can you help me with?"}}
	case "user":
		msgs = append(msgs, message{Role: "user", Content: text})
	case "tool":
		msgs = append(msgs, message{Role: "user", Content: "Summarise what the tool returned."},
			message{Role: "tool", ToolCallID: "call_1", Content: text})
	}
	b, _ := json.Marshal(struct {
		Model    string    `json:"model"`
		Messages []message `json:"messages"`
	}{"gpt-4o", msgs})
	return b
}
