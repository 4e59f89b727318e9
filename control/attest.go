package control

import (
	"context"

	"github.com/stackctl/stack/control/workload"
)

// NewAttester maps workload tokens to agents with v's issuers and rules.
func NewAttester(v *workload.Verifier) Attester { return attester{v} }

type attester struct{ v *workload.Verifier }

func (t attester) Attest(ctx context.Context, token string) (string, string, error) {
	id, err := t.v.Verify(ctx, token)
	return id.Agent, id.Subject, err
}

func (attester) Reason(err error) string { return workload.Reason(err) }
