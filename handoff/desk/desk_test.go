package desk_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stackctl/stack/handoff/desk"
)

// The desk's sending, receiving and refusals run against a real control
// plane in control/desk_test.go, and through real sidecars in
// examples/handoff_test.go.

func TestTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{`"90m"`: 90 * time.Minute, `3600`: time.Hour, `1.5`: 1500 * time.Millisecond} {
		var got desk.TTL
		if err := json.Unmarshal([]byte(in), &got); err != nil || time.Duration(got) != want {
			t.Errorf("%s: %v, %v; want %v", in, time.Duration(got), err, want)
		}
	}
	for _, in := range []string{`"soon"`, `true`, `{}`} {
		var got desk.TTL
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("%s: accepted as %v", in, time.Duration(got))
		}
	}
}
