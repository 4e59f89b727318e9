package main

import (
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/detect/judge"
	"github.com/stackctl/stack/proxy"
)

// injectionJudge builds prompt_injection's model judge from
// detect.prompt_injection.model: nil when its url is empty. The API key
// is read from the variable api_key_env names; a variable named but
// empty is an error, as every call would be refused. Each judgement is
// logged at debug with what it cost, and counted in metrics when set.
func injectionJudge(m config.InjectionModelConfig, threshold float64, metrics *proxy.Metrics, log *zap.Logger) (*judge.Judge, *detect.JudgeOptions, error) {
	if m.URL == "" {
		return nil, nil, nil
	}
	var key string
	if m.APIKeyEnv != "" {
		if key = os.Getenv(m.APIKeyEnv); key == "" {
			return nil, nil, fmt.Errorf("api_key_env: the variable %s is empty or unset", m.APIKeyEnv)
		}
	}
	cache := m.CacheSize
	if cache == 0 {
		cache = -1 // config's 0 keeps none; the judge's 0 is its default
	}
	j, err := judge.New(judge.Options{
		Kind: judge.Kind(m.Kind), URL: m.URL, Model: m.Model, APIKey: key,
		Timeout: m.Timeout, CacheSize: cache, CAFile: m.CAFile, Threshold: threshold,
		BreakAfter: m.BreakAfter, BreakFor: m.BreakFor,
		OnCall: func(c judge.Call) {
			if metrics != nil {
				metrics.ObserveJudge(string(c.Kind), string(c.Outcome), c.Took)
			}
			if ce := log.Check(zap.DebugLevel, "prompt injection judge"); ce != nil {
				ce.Write(zap.String("kind", string(c.Kind)), zap.String("outcome", string(c.Outcome)),
					zap.Duration("took", c.Took), zap.Int("bytes", c.Bytes), zap.Bool("injection", c.Injection),
					zap.Int("prompt_tokens", c.PromptTokens), zap.Int("completion_tokens", c.CompletionTokens), zap.Error(c.Err))
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return j, &detect.JudgeOptions{Judge: j, Name: m.Kind, When: detect.JudgeWhen(m.When), FailClosed: m.OnError == "closed"}, nil
}
