package workload_test

import (
	"context"
	"fmt"

	"github.com/stackctl/stack/control/workload"
)

// A control plane that lets pods of one cluster and one GitHub
// organisation's workflows join as agents.
func ExampleNew() {
	v, err := workload.New([]workload.Issuer{{
		URL: "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
		Rules: []workload.Rule{
			{Agent: "billing-bot", Claims: map[string]string{
				"kubernetes.io/namespace":           "billing",
				"kubernetes.io/serviceaccount/name": "bot",
			}},
		},
	}, {
		URL: "https://token.actions.githubusercontent.com",
		Rules: []workload.Rule{
			{Agent: "deployer", Claims: map[string]string{"repository": "stackctl/*", "ref": "refs/heads/main"}},
		},
	}}, workload.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// No request is made until a token arrives; a malformed one is
	// refused without any.
	_, err = v.Verify(context.Background(), "not-a-token")
	fmt.Println(workload.Reason(err))
	// Output: workload_token_malformed
}
