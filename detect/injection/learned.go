package injection

import (
	_ "embed"
	"sort"

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
// measured recall are in docs/detectors.md. On a chat request it reads
// only the tool results (chat.go): every other turn addresses the
// assistant with instructions by design.

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

// learn runs the learned layer over the text view v of the body raw and
// records its match. On a chat request it reads only the tool results
// (chatUntrusted); elsewhere, all of v.
func (sc *scanner) learn(v *View, raw []byte) {
	var verdict learned.Verdict
	if spans, chat := sc.chatSpans(raw); chat {
		verdict.Score = -1
		for _, s := range spans {
			a, b := sc.viewAt(v, s.start), sc.viewAt(v, s.end)
			if a >= b {
				continue
			}
			if vd := model.Score(v.Text[a:b]); vd.Score > verdict.Score {
				verdict = vd
				verdict.Start += a
				verdict.End += a
			}
		}
	} else {
		verdict = model.Score(v.Text)
	}
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

// chatSpans returns the untrusted spans of raw when it is a chat request
// (see chatUntrusted).
func (sc *scanner) chatSpans(raw []byte) ([]span, bool) {
	i := 0
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t') {
		i++
	}
	if i == len(raw) || raw[i] != '{' {
		return nil, false
	}
	return chatUntrusted(raw)
}

// viewAt returns the first offset of v whose text comes from raw at or
// after rawOff: the views map back to the source monotonically, and the
// source of a JSON body is its decoded text, which maps back to the body.
func (sc *scanner) viewAt(v *View, rawOff int) int {
	return sort.Search(len(v.Text), func(i int) bool {
		src, _ := v.Origin(i, i)
		if sc.isJSON {
			src = sc.json.origin(src)
		}
		return src >= rawOff
	})
}
