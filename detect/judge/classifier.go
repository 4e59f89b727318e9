package judge

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A classifier judge (KindClassifier) is sent
//
//	POST <url>
//	{"inputs": "<content>", "model": "<model>"}
//
// (model only when set) and answers 200 with the scores of its labels,
// as Hugging Face's text-classification servers do for Prompt Guard:
//
//	[{"label": "INJECTION", "score": 0.97}, {"label": "BENIGN", "score": 0.02}, ...]
//
// or that list inside a list of one ([[...]]). Labels compare without
// regard to case: BENIGN, SAFE and LABEL_0 are benign, every other label
// (INJECTION, JAILBREAK, MALICIOUS, LABEL_1, ...) is an attack. The
// content's score is the sum of its attack labels' scores (at most 1);
// when only benign labels are listed (a server answering its top label
// only), it is 1 minus the largest of them. The content is an injection
// when its score reaches Options.Threshold.

// classifierBody is a classifier judge's request body.
type classifierBody struct {
	Inputs string `json:"inputs"`
	Model  string `json:"model,omitempty"`
}

func classifierRequest(model string, content []byte) ([]byte, error) {
	return json.Marshal(classifierBody{Inputs: string(content), Model: model})
}

// labelScore is one label of a classifier's answer.
type labelScore struct {
	Label *string  `json:"label"`
	Score *float64 `json:"score"`
}

// benignLabels are the labels that say content is benign.
var benignLabels = []string{"benign", "safe", "label_0"}

// parseClassifier reads a classifier's answer; threshold decides
// Verdict.Injection. Anything else is an error wrapping ErrMalformed.
func parseClassifier(answer []byte, threshold float64) (Verdict, error) {
	var labels []labelScore
	if err := json.Unmarshal(answer, &labels); err != nil {
		var nested [][]labelScore
		if err2 := json.Unmarshal(answer, &nested); err2 != nil || len(nested) != 1 {
			return Verdict{}, fmt.Errorf("judge: %w: not a list of label scores: %v", ErrMalformed, err)
		}
		labels = nested[0]
	}
	if len(labels) == 0 {
		return Verdict{}, fmt.Errorf("judge: %w: no labels", ErrMalformed)
	}
	var attack, benign float64
	var sawAttack bool
	top, topScore := "", -1.0
	for i, l := range labels {
		if l.Label == nil || l.Score == nil {
			return Verdict{}, fmt.Errorf("judge: %w: label %d lacks label or score", ErrMalformed, i)
		}
		sc := *l.Score
		if math.IsNaN(sc) || sc < 0 || sc > 1 {
			return Verdict{}, fmt.Errorf("judge: %w: label %d scores %v, outside [0, 1]", ErrMalformed, i, sc)
		}
		if isBenign(*l.Label) {
			benign = max(benign, sc)
		} else {
			attack += sc
			sawAttack = true
		}
		if sc > topScore {
			top, topScore = *l.Label, sc
		}
	}
	score := min(attack, 1)
	if !sawAttack {
		score = 1 - benign
	}
	return Verdict{
		Injection: score >= threshold,
		Score:     score,
		Reason:    cleanReason("top label " + top + " " + strconv.FormatFloat(topScore, 'f', 2, 64)),
	}, nil
}

func isBenign(label string) bool {
	for _, b := range benignLabels {
		if strings.EqualFold(strings.TrimSpace(label), b) {
			return true
		}
	}
	return false
}
