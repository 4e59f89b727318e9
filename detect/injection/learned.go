package injection

import (
	_ "embed"

	"github.com/stackctl/stack/detect/injection/internal/learned"
)

// The learned layer, when Options.LearnedThreshold turns it on, reads
// the text view (after normalization: NFKC,
// homoglyphs folded, invisible controls dropped, JSON escapes decoded)
// once the patterns have had their look, unless they already found the
// content critical. It is a logistic regression over hashed words, word
// pairs and word stems, scored over every window of learned.Window
// consecutive words; the best window's score, at or above
// Options.LearnedThreshold, is a match named learned_instruction whose
// weight is the flagging threshold: alone it makes a warning, with a
// pattern's evidence it can make the content critical. It catches
// instructions that name no keyword the catalogue knows ("send the
// balance to this account first"), which is where the patterns are
// blind; its weights come from internal/cmd/injtrain, its data card and
// measured recall are in docs/detectors.md.

// LearnedPattern names the learned layer's matches.
const LearnedPattern = "learned_instruction"

//go:embed internal/learned/model.bin
var modelFile []byte

var model = func() *learned.Model {
	m, err := learned.Unmarshal(modelFile)
	if err != nil {
		panic("injection: embedded model: " + err.Error())
	}
	return m
}()

// learn runs the learned layer over the text view v and records its
// match.
func (sc *scanner) learn(v *View) {
	verdict := model.Score(v.Text)
	if verdict.Score < sc.o.LearnedThreshold {
		return
	}
	m := Match{Pattern: LearnedPattern, Category: CategoryOverride, View: v.Name, Weight: sc.o.Threshold}
	m.Span.Start, m.Span.End = v.Origin(verdict.Start, verdict.End)
	if sc.isJSON {
		m.Span.Start, m.Span.End = sc.json.origin(m.Span.Start), sc.json.origin(m.Span.End)
	}
	m.Span.Excerpt = excerpt(v.Text[verdict.Start:verdict.End])
	sc.learned, sc.hasLearned = m, true
	sc.critical = sc.score() >= sc.o.Critical
}
