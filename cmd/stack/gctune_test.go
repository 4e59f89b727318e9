package main

import "testing"

func TestGCSettingsYieldToEnvironment(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	p, setP, l, setL := gcSettings(env(nil))
	if !setP || !setL || p != proxyGCPercent || l != proxyMemoryLimit {
		t.Fatalf("defaults: %d %v %d %v", p, setP, l, setL)
	}
	if _, setP, _, setL := gcSettings(env(map[string]string{"GOGC": "off"})); setP || !setL {
		t.Fatalf("GOGC set: percent applied %v, limit applied %v", setP, setL)
	}
	if _, setP, _, setL := gcSettings(env(map[string]string{"GOMEMLIMIT": "1GiB"})); !setP || setL {
		t.Fatalf("GOMEMLIMIT set: percent applied %v, limit applied %v", setP, setL)
	}
}
