package config

import (
	"errors"
	"strings"
	"testing"
)

// detect.prompt_injection.learned_threshold: off by default, a score in
// (0, 1] turns the learned layer on, anything else is refused.
func TestInjectionLearnedThreshold(t *testing.T) {
	if got := Default(t.TempDir()).Detect.PromptInjection.LearnedThreshold; got != 0 {
		t.Errorf("default = %v, want 0 (off)", got)
	}
	for _, tc := range []struct {
		name, value string
		want        float64
		problem     bool
	}{
		{name: "recommended", value: "0.98", want: 0.98},
		{name: "off", value: "0", want: 0},
		{name: "one", value: "1", want: 1},
		{name: "negative", value: "-0.5", problem: true},
		{name: "above one", value: "1.5", problem: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeFile(t, home, "detect:\n  prompt_injection:\n    learned_threshold: "+tc.value+"\n")
			c, err := Load(LoadOptions{Home: home})
			if tc.problem {
				var verr *ValidationError
				if !errors.As(err, &verr) || !strings.Contains(err.Error(), "detect.prompt_injection.learned_threshold") {
					t.Fatalf("err = %v, want a problem with detect.prompt_injection.learned_threshold", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Detect.PromptInjection.LearnedThreshold; got != tc.want {
				t.Errorf("learned_threshold = %v, want %v", got, tc.want)
			}
		})
	}
}
