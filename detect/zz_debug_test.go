package detect

import (
	"fmt"
	"testing"
	"time"
)

func TestZZDebugViews(t *testing.T) {
	for _, bc := range []struct {
		name string
		body []byte
	}{{"benign", benign64K(t)}, {"adversarial", adversarial64K()}} {
		views := normalize(bc.body, NormalizeOptions{}, false)
		for _, v := range views {
			fmt.Printf("%s view %-30s len=%6d obf=%v\n", bc.name, v.Name, len(v.Text), v.Obfuscated)
		}
		st := time.Now()
		for range 10 {
			normalize(bc.body, NormalizeOptions{}, false)
		}
		fmt.Println("normalize", time.Since(st)/10)
		st = time.Now()
		for range 10 {
			Scan(bc.body, PromptInjectionOptions{})
		}
		fmt.Println("scan", time.Since(st)/10)
		r := Scan(bc.body, PromptInjectionOptions{})
		fmt.Printf("%+v\n", r.Score)
		for _, m := range r.Matches {
			fmt.Printf("  %s %s %v %.2f\n", m.Pattern, m.View, m.Obfuscated, m.Weight)
		}
	}
}
