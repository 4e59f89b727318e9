// Command injtrain trains the prompt-injection scanner's learned layer
// (package learned) on the training sources of package evalset and
// writes its weights, to be embedded in the binary.
//
//	go run ./detect/injection/internal/cmd/injtrain -mirror /work/.mirror \
//	    -out detect/injection/internal/learned/model.bin
//
// It fits a logistic regression on windows of learned.Window words (a
// text shorter than that is one window) with AdaGrad and the classes
// weighted equally, on the training part of each training source (never
// on its development fifth nor on a held-out source). The first epoch
// labels every window of an attack as an attack; from the second (-mil)
// each attack is trained on its highest-scoring window only, as the
// layer judges a text by its best window: the rest of a long jailbreak,
// or of the text an instruction hides in, need not look like an attack.
// On the development fifth at 0.98 (-mil 0 against the default) this cut
// the false alarms on OWASP WSTG from 2.9% to 0.7%, on garak's docs from
// 5.7% to 1.9% and on BIPIA's contexts from 2.0% to 0.7%, at the same
// recall but garak's (0.92 to 0.90). It then reports, on the development fifth,
// the false-alarm rate and recall at a few thresholds. Training is
// deterministic: the same data gives the same weights.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/stackctl/stack/detect/injection/internal/evalset"
	"github.com/stackctl/stack/detect/injection/internal/learned"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "injtrain:", err)
		os.Exit(1)
	}
}

type sample struct {
	feats  []uint32
	attack bool
	// bag numbers the text the window comes from.
	bag int
	// weight is the sample's share of its text: every text weighs the
	// same however many windows it has.
	weight float64
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("injtrain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mirror := fs.String("mirror", "/work/.mirror", "directory of fetched repositories, <owner>+<name>/repo each")
	modcache := fs.String("modcache", "", "Go module cache (default: go env GOMODCACHE)")
	repo := fs.String("repo", ".", "this repository's root")
	out := fs.String("out", "", "where to write the weights (default: do not write)")
	epochs := fs.Int("epochs", 6, "passes over the training windows")
	rate := fs.Float64("rate", 0.1, "AdaGrad learning rate")
	l2 := fs.Float64("l2", 1e-4, "L2 penalty per update")
	exclude := fs.String("exclude", "", "comma-separated source/variant pairs not to train on")
	mil := fs.Int("mil", 1, "after this many epochs, train each attack on its highest-scoring window only (0: every window, always)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	skip := map[string]bool{}
	for _, s := range strings.Split(*exclude, ",") {
		skip[s] = true
	}
	if *modcache == "" {
		o, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
		if err != nil {
			return fmt.Errorf("go env GOMODCACHE: %w", err)
		}
		*modcache = strings.TrimSpace(string(o))
	}
	cfg := evalset.Config{Mirror: *mirror, ModCache: *modcache, Repo: *repo}
	var train []sample
	var dev []evalset.Item
	bags := 0
	for _, src := range evalset.Sources() {
		if src.HeldOut {
			continue
		}
		items, err := src.Load(cfg)
		if err != nil {
			return err
		}
		var na, nb, wa, wb int
		for _, it := range items {
			if skip[it.Source+"/"+it.Variant] {
				continue
			}
			if it.Dev() {
				dev = append(dev, it)
				continue
			}
			ws := windows([]byte(it.Text), it.Attack)
			for i := range ws {
				ws[i].bag = bags
			}
			bags++
			train = append(train, ws...)
			if it.Attack {
				na++
				wa += len(ws)
			} else {
				nb++
				wb += len(ws)
			}
		}
		fmt.Fprintf(stdout, "%-14s train: %5d attacks (%6d windows) %5d benign (%6d windows); dev: rest\n", src.Name, na, wa, nb, wb)
	}
	m := fit(train, *epochs, *rate, *l2, *mil)
	report(stdout, m, dev)
	if *out != "" {
		if err := os.WriteFile(*out, m.Marshal(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", *out)
	}
	return nil
}

// windows cuts text into samples of learned.Window words, half
// overlapping; a shorter text is one sample.
func windows(text []byte, attack bool) []sample {
	var words [][learned.FeaturesPerWord]uint32
	learned.Words(text, func(_, _ int, f [learned.FeaturesPerWord]uint32) { words = append(words, f) })
	if len(words) == 0 {
		return nil
	}
	var out []sample
	add := func(ws [][learned.FeaturesPerWord]uint32) {
		s := sample{attack: attack}
		for _, w := range ws {
			s.feats = append(s.feats, w[:]...)
		}
		out = append(out, s)
	}
	defer func() {
		for i := range out {
			out[i].weight = 1 / float64(len(out))
		}
	}()
	if len(words) <= learned.Window {
		add(words)
		return out
	}
	step := learned.Window / 2
	for i := 0; ; i += step {
		if i+learned.Window >= len(words) {
			add(words[len(words)-learned.Window:])
			break
		}
		add(words[i : i+learned.Window])
	}
	return out
}

func fit(train []sample, epochs int, rate, l2 float64, mil int) *learned.Model {
	const n = 1 << learned.Bits
	w := make([]float64, n)
	g2 := make([]float64, n)
	var bias, bg2 float64
	var na, nb float64
	for _, s := range train {
		if s.attack {
			na += s.weight
		} else {
			nb += s.weight
		}
	}
	// Equal weight to the two classes.
	wa, wb := (na+nb)/(2*na), (na+nb)/(2*nb)
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int, len(train))
	for i := range order {
		order[i] = i
	}
	score := func(s sample) float64 {
		z := bias
		for _, f := range s.feats {
			z += w[f]
		}
		return z
	}
	for e := range epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		// Multiple-instance epochs: an attack text is an attack because
		// some window of it is, as the layer judges a text by its best
		// window; its other windows (a jailbreak's role-play preamble,
		// the data an instruction hides in) are not pushed up.
		var best map[int]int
		if mil > 0 && e >= mil {
			best = map[int]int{}
			top := map[int]float64{}
			for i, s := range train {
				if !s.attack {
					continue
				}
				z := score(s)
				if top1, ok := top[s.bag]; !ok || z > top1 {
					top[s.bag], best[s.bag] = z, i
				}
			}
		}
		var loss float64
		for _, i := range order {
			s := train[i]
			if best != nil && s.attack {
				if best[s.bag] != i {
					continue
				}
				s.weight = 1
			}
			z := score(s)
			p := 1 / (1 + math.Exp(-z))
			y, cw := 0.0, wb*s.weight
			if s.attack {
				y, cw = 1, wa*s.weight
			}
			loss -= cw * (y*math.Log(p+1e-12) + (1-y)*math.Log(1-p+1e-12))
			g := cw * (p - y)
			bg2 += g * g
			bias -= rate * g / math.Sqrt(bg2+1e-8)
			for _, f := range s.feats {
				gf := g + l2*w[f]
				g2[f] += gf * gf
				w[f] -= rate * gf / math.Sqrt(g2[f]+1e-8)
			}
		}
		fmt.Printf("epoch %d: loss %.4f\n", e+1, loss/(na+nb))
	}
	// Quantize to int8: the largest weight maps to 127.
	var maxAbs float64
	for _, x := range w {
		maxAbs = max(maxAbs, math.Abs(x))
	}
	scale := maxAbs / 127
	m := &learned.Model{Bias: float32(bias), Scale: float32(scale), W: make([]int8, n)}
	for i, x := range w {
		m.W[i] = int8(math.Round(x / scale))
	}
	return m
}

// report prints, per training source's development fifth, the recall
// and false-alarm rate at a few thresholds.
func report(w io.Writer, m *learned.Model, dev []evalset.Item) {
	type st struct{ a, b int }
	thresholds := []float64{0.5, 0.7, 0.8, 0.9, 0.95, 0.98}
	bySrc := map[string][]evalset.Item{}
	var names []string
	for _, it := range dev {
		if bySrc[it.Source] == nil {
			names = append(names, it.Source)
		}
		bySrc[it.Source] = append(bySrc[it.Source], it)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "development fifth, recall / false alarms at thresholds %v\n", thresholds)
	for _, name := range names {
		var c st
		hitA := make([]int, len(thresholds))
		hitB := make([]int, len(thresholds))
		for _, it := range bySrc[name] {
			s := m.Score([]byte(it.Text)).Score
			if it.Attack {
				c.a++
			} else {
				c.b++
			}
			for i, t := range thresholds {
				if s >= t {
					if it.Attack {
						hitA[i]++
					} else {
						hitB[i]++
					}
				}
			}
		}
		fmt.Fprintf(w, "%-14s %4d attacks %5d benign:", name, c.a, c.b)
		for i := range thresholds {
			fmt.Fprintf(w, "  %.2f/%.3f", frac(hitA[i], c.a), frac(hitB[i], c.b))
		}
		fmt.Fprintln(w)
	}
}

func frac(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
