package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInjectionModelDefaults(t *testing.T) {
	c := Default(t.TempDir())
	want := InjectionModelConfig{Kind: "chat", Timeout: 800 * time.Millisecond, OnError: "open", CacheSize: 4096, When: "uncertain",
		BreakAfter: 5, BreakFor: 30 * time.Second}
	if got := c.Detect.PromptInjection.Model; got != want {
		t.Errorf("defaults = %+v, want %+v (off: no url)", got, want)
	}
}

func TestInjectionModelLoads(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, `detect:
  prompt_injection:
    model:
      kind: classifier
      url: http://127.0.0.1:8000/classify
      api_key_env: JUDGE_KEY
      timeout: 250ms
      on_error: closed
      cache_size: 0
      when: untrusted
      break_after: -1
`)
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	want := InjectionModelConfig{Kind: "classifier", URL: "http://127.0.0.1:8000/classify", APIKeyEnv: "JUDGE_KEY",
		Timeout: 250 * time.Millisecond, OnError: "closed", When: "untrusted", BreakAfter: -1, BreakFor: 30 * time.Second}
	if got := c.Detect.PromptInjection.Model; got != want {
		t.Errorf("model = %+v, want %+v", got, want)
	}
}

func TestInjectionModelInvalid(t *testing.T) {
	const on = "detect:\n  prompt_injection:\n    model:\n      url: https://llm.internal/v1/chat/completions\n      model: m\n"
	tests := []struct {
		name, file, key, says string
	}{
		{"kind", on + "      kind: llama\n", "detect.prompt_injection.model.kind", "chat, classifier"},
		{"on_error", on + "      on_error: maybe\n", "detect.prompt_injection.model.on_error", "open, closed"},
		{"when", on + "      when: sometimes\n", "detect.prompt_injection.model.when", "uncertain, untrusted, always"},
		{"timeout", on + "      timeout: 0s\n", "detect.prompt_injection.model.timeout", "positive"},
		{"cache_size", on + "      cache_size: -1\n", "detect.prompt_injection.model.cache_size", "not be negative"},
		{"break_after 0", on + "      break_after: 0\n", "detect.prompt_injection.model.break_after", "at least 1"},
		{"break_for 0", on + "      break_for: 0s\n", "detect.prompt_injection.model.break_for", "positive"},
		{"a key in api_key_env", on + "      api_key_env: sk-abc123\n", "detect.prompt_injection.model.api_key_env", "not hold the key"},
		{"chat without model", "detect:\n  prompt_injection:\n    model:\n      url: https://llm.internal/v1/chat/completions\n", "detect.prompt_injection.model.model", "not be empty"},
		{"http to another host", "detect:\n  prompt_injection:\n    model:\n      url: http://llm.internal/v1/chat/completions\n      model: m\n", "detect.prompt_injection.model.url", "https"},
		{"ca_file missing", on + "      ca_file: missing.pem\n", "detect.prompt_injection.model.ca_file", "cannot be read"},
		{"unknown key", on + "      temperature: 0\n", "detect.prompt_injection.model.temperature", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeFile(t, home, tc.file)
			_, err := Load(LoadOptions{Home: home})
			wantProblem(t, err, tc.key, tc.says)
		})
	}
}

// A password in the url is refused and not repeated in the report.
func TestInjectionModelURLPasswordNotRepeated(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, "detect:\n  prompt_injection:\n    model:\n      url: https://judge:hunter2secret@llm.internal/v1/chat/completions\n      model: m\n")
	_, err := Load(LoadOptions{Home: home})
	if err == nil || !strings.Contains(err.Error(), "detect.prompt_injection.model.url") || strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("err = %v", err)
	}
}

func TestInjectionModelCAFileRelativeToHome(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, "detect:\n  prompt_injection:\n    model:\n      ca_file: judge-ca.pem\n")
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, "judge-ca.pem"); c.Detect.PromptInjection.Model.CAFile != want {
		t.Errorf("ca_file = %q, want %q", c.Detect.PromptInjection.Model.CAFile, want)
	}
}
