package hostmatch_test

import (
	"fmt"

	"github.com/stackctl/stack/hostmatch"
)

func Example() {
	// Check a pattern once, where it is configured.
	pattern, err := hostmatch.Pattern("*.Stripe.com")
	if err != nil {
		panic(err)
	}
	fmt.Println(pattern)

	// Match hosts as requests name them.
	for _, host := range []string{"files.stripe.com:443", "stripe.com", "a.files.stripe.com"} {
		fmt.Println(host, hostmatch.Match(pattern, host))
	}

	_, err = hostmatch.Pattern("*.com")
	fmt.Println(err)
	// Output:
	// *.stripe.com
	// files.stripe.com:443 true
	// stripe.com false
	// a.files.stripe.com false
	// invalid host: a wildcard needs at least two labels after "*." (e.g. *.example.com)
}
