package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandoffCLI(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	startControl(t, ctl)
	if out := mustRun(t, ctl, "", "handoff", "schema", "list"); !strings.Contains(out, "no schemas") {
		t.Fatalf("schema list, none yet:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "findings.json")
	os.WriteFile(file, []byte(`{"type":"object","required":["url"],"properties":{"url":{"type":"string","format":"uri"}}}`), 0o644)
	if out := mustRun(t, ctl, "", "handoff", "schema", "put", "findings/v1", file); !strings.Contains(out, "stored schema findings/v1") {
		t.Fatalf("schema put:\n%s", out)
	}
	mustRun(t, ctl, `{"type":"array"}`, "handoff", "schema", "put", "list/v1", "-")
	if out := mustRun(t, ctl, "", "handoff", "schema", "list"); !strings.Contains(out, "findings/v1") || !strings.Contains(out, "list/v1") {
		t.Fatalf("schema list:\n%s", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"$ref":"https://example.com/x.json"}`), 0o644)
	if code, _, errs := runStack(t, ctl, "", "handoff", "schema", "put", "bad/v1", bad); code != 2 || !strings.Contains(errs, "bad.json") || !strings.Contains(errs, "refers only to itself") {
		t.Fatalf("a schema with a remote $ref: %d %s", code, errs)
	}
	if out := mustRun(t, ctl, "", "handoff", "list"); !strings.Contains(out, "no handoffs waiting") {
		t.Fatalf("handoff list:\n%s", out)
	}
}
