package benchkit

import (
	"encoding/json"
	"testing"
)

func TestBalanceJSON(t *testing.T) {
	for _, size := range []int{0, 64, 512, 4096} {
		b := BalanceJSON(size)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if size >= 100 && len(b) != size {
			t.Errorf("size %d: got %d bytes", size, len(b))
		}
	}
}
