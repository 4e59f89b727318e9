package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/config"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/detect/judge"
	"github.com/stackctl/stack/proxy"
	"github.com/stackctl/stack/vault"
)

// detectors is the wired detector grid of a running sidecar.
type detectors struct {
	grid       *detect.Grid
	persistent []detect.Persistent
	store      *detect.Store
	webhook    *detect.Webhook
	// summaries folds alert storms; nil when detect.alert_summary_window
	// is 0.
	summaries *detect.Summarizer
	// judge is prompt_injection's model judge; nil when off.
	judge *judge.Judge
}

// buildDetectors makes the grid from config: the four built-in detectors
// (those not off), the policy, learned state loaded from detect.state_path,
// the alert webhook when its URL is set, and the summarizer of alert
// storms unless detect.alert_summary_window is 0. bound says which hosts a
// credential is bound to; secrets finds the credentials' own secrets;
// metrics, when set, counts what the model judge is asked.
func buildDetectors(cfg *config.Config, bound func(name string) ([]string, bool), secrets detect.SecretMatcher, metrics *proxy.Metrics, log *zap.Logger) (*detectors, error) {
	dc := cfg.Detect
	burst, err := detect.NewBurst(detect.BurstOptions{
		LearningWindow: dc.CredentialBurst.LearningWindow, MinSamples: dc.CredentialBurst.MinSamples,
		MinBaselineAge: dc.CredentialBurst.MinBaselineAge, ShortWindow: dc.CredentialBurst.Window,
		Factor: dc.CredentialBurst.Factor, MinCount: dc.CredentialBurst.MinCount, AbsoluteCap: dc.CredentialBurst.AbsoluteCap,
	})
	if err != nil {
		return nil, usageError(fmt.Errorf("detect.credential_burst: %w", err))
	}
	drift, err := detect.NewDrift(detect.DriftOptions{MinEvents: dc.ScopeDrift.MinEvents, MinAge: dc.ScopeDrift.MinAge})
	if err != nil {
		return nil, usageError(fmt.Errorf("detect.scope_drift: %w", err))
	}
	pi, err := detect.NewPromptInjection(detect.PromptInjectionOptions{Threshold: dc.PromptInjection.Threshold, LearnedThreshold: dc.PromptInjection.LearnedThreshold, Window: dc.ScanWindow})
	if err != nil {
		return nil, usageError(fmt.Errorf("detect.prompt_injection: %w", err))
	}
	modelJudge, judgeOpts, err := injectionJudge(dc.PromptInjection.Model, dc.PromptInjection.Threshold, metrics, log)
	if err != nil {
		return nil, usageError(fmt.Errorf("detect.prompt_injection.model: %w", err))
	}
	if judgeOpts != nil {
		if pi, err = pi.WithJudge(*judgeOpts); err != nil {
			return nil, usageError(fmt.Errorf("detect.prompt_injection.model: %w", err))
		}
	}
	exfil, err := detect.NewExfiltration(detect.ExfiltrationOptions{Bound: bound, Secrets: secrets, Window: dc.ScanWindow})
	if err != nil {
		return nil, usageError(fmt.Errorf("detect.credential_exfiltration: %w", err))
	}

	// Every detector joins the grid, off ones too: the grid skips them,
	// and rules and suppressions naming them stay valid.
	all := []detect.Detector{burst, drift, pi, exfil}
	policy := detectPolicy(dc)
	grid, err := detect.NewGrid(detect.GridOptions{Detectors: all, Policy: policy})
	if err != nil {
		return nil, usageError(fmt.Errorf("detect: %w", err))
	}
	ds := &detectors{grid: grid, persistent: []detect.Persistent{burst, drift}, judge: modelJudge}
	if dc.AlertSummaryWindow > 0 {
		ds.summaries, err = detect.NewSummarizer(detect.SummarizerOptions{Window: dc.AlertSummaryWindow})
		if err != nil {
			return nil, usageError(fmt.Errorf("detect.alert_summary_window: %w", err))
		}
	}

	ds.store, err = detect.OpenStore(dc.StatePath, detect.StoreOptions{})
	if err != nil {
		return nil, ownedByOther(err, dc.StatePath)
	}
	if err := ds.store.Load(ds.persistent...); err != nil {
		log.Warn("learned baselines could not be loaded; starting fresh", zap.String("path", dc.StatePath), zap.Error(err))
	}

	if dc.WebhookURLEnv != "" {
		if u := os.Getenv(dc.WebhookURLEnv); u != "" {
			ds.webhook, err = detect.NewWebhook(detect.WebhookOptions{URL: u, OnError: func(a detect.Alert, err error) {
				log.Warn("alert webhook gave up", zap.Error(err))
			}})
			if err != nil {
				return nil, usageError(fmt.Errorf("detect.webhook_url_env %s: %w", dc.WebhookURLEnv, err))
			}
		} else {
			log.Warn("alert webhook variable is empty; no webhook alerts", zap.String("variable", dc.WebhookURLEnv))
		}
	}
	return ds, nil
}

// detectPolicy is the grid's policy as the config says: modes, the
// rollout gate, composite rules and suppressions. SIGHUP re-reads it.
func detectPolicy(dc config.DetectConfig) detect.Policy {
	policy := detect.Policy{AlertOnly: dc.AlertOnly, Modes: map[string]detect.Mode{
		detect.BurstName:        detect.Mode(dc.CredentialBurst.Mode),
		detect.DriftName:        detect.Mode(dc.ScopeDrift.Mode),
		detect.InjectionName:    detect.Mode(dc.PromptInjection.Mode),
		detect.ExfiltrationName: detect.Mode(dc.CredentialExfiltration.Mode),
	}}
	for _, r := range dc.Rules {
		policy.Rules = append(policy.Rules, detect.Rule{Name: r.Name, Detectors: r.Detectors, Within: r.Within, Action: detect.Action(r.Action)})
	}
	for _, s := range dc.Suppress {
		policy.Suppress = append(policy.Suppress, detect.Suppression{Agent: s.Agent, Host: s.Host, Detector: s.Detector, Rule: s.Rule})
	}
	return policy
}

// liveSecrets is the exfiltration detector's index of the vault's
// secrets, replaced whole when the vault changes.
type liveSecrets struct {
	idx atomic.Pointer[detect.SecretIndex]
}

// Match implements detect.SecretMatcher.
func (l *liveSecrets) Match(body []byte) []string {
	if idx := l.idx.Load(); idx != nil {
		return idx.Match(body)
	}
	return nil
}

func (l *liveSecrets) rebuild(ctx context.Context, v *vault.Vault) error {
	idx, err := secretIndex(ctx, v)
	if err != nil {
		return err
	}
	l.idx.Store(idx)
	return nil
}

// set indexes secrets (leased ones) in place of the previous index.
func (l *liveSecrets) set(secrets map[string][]byte) {
	l.idx.Store(detect.NewSecretIndex(secrets))
}

// secretIndex indexes the vault's secrets so the exfiltration detector
// recognises them in outbound bodies; it keeps keyed hashes, not the
// secrets.
func secretIndex(ctx context.Context, v *vault.Vault) (*detect.SecretIndex, error) {
	creds, err := v.List()
	if err != nil {
		return nil, err
	}
	secrets := make(map[string][]byte, len(creds))
	for _, c := range creds {
		_, secret, err := v.Get(ctx, c.Name)
		if err != nil {
			return nil, fmt.Errorf("index vault secrets for the exfiltration detector: %w", err)
		}
		secrets[c.Name] = secret
	}
	idx := detect.NewSecretIndex(secrets)
	for _, s := range secrets {
		clear(s)
	}
	return idx, nil
}

// alerts returns the proxy's alert callback: the webhook, when there is
// one. Storms reach it as their first alert and then one summary per
// detect.alert_summary_window, folded by the proxy's summarizer.
func (ds *detectors) alerts() proxy.AlertFunc {
	if ds.webhook == nil {
		return nil
	}
	return ds.webhook.Notify
}

// save writes learned state; the sidecar calls it periodically and on
// shutdown.
func (ds *detectors) save() error { return ds.store.Save(ds.persistent...) }

// run saves learned state every interval until ctx ends, then once more.
func (ds *detectors) run(ctx context.Context, interval time.Duration, log *zap.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := ds.save(); err != nil {
				log.Error("saving learned baselines failed", zap.Error(err))
			}
			return nil
		case <-t.C:
			if err := ds.save(); err != nil {
				log.Warn("saving learned baselines failed", zap.Error(err))
			}
		}
	}
}

func (ds *detectors) close() error {
	if ds.webhook != nil {
		ds.webhook.Close()
	}
	if ds.judge != nil {
		ds.judge.Close()
	}
	return ds.store.Close()
}
