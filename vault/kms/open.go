package kms

import (
	"context"
	"strings"
	"time"
)

// DefaultTimeout bounds each Wrap and Unwrap call when Options.Timeout is
// zero.
const DefaultTimeout = 10 * time.Second

// Options configure Open.
type Options struct {
	// BaseDir is the directory relative local:// paths resolve against
	// (the data directory). Empty means the working directory.
	BaseDir string
	// Timeout bounds each Wrap and Unwrap call, on top of the caller's
	// context. Zero means DefaultTimeout.
	Timeout time.Duration
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// Open returns the KMS named by uri:
//
//	local://PATH                                          a 32-byte key file (development only)
//	gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K  Google Cloud KMS
//	awskms://KEY-ID | awskms://ARN | awskms://alias/NAME     AWS KMS
//
// Cloud backends read their usual environment: Application Default
// Credentials and STACK_GCPKMS_ENDPOINT for GCP; AWS_REGION, the AWS
// credential chain and AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL for AWS.
// ctx bounds only the setup; each later call is bounded by Options.Timeout.
// The caller closes the KMS.
func Open(ctx context.Context, uri string, opts Options) (KMS, error) {
	switch {
	case strings.HasPrefix(uri, localScheme):
		return openLocal(uri, opts)
	case strings.HasPrefix(uri, gcpScheme):
		return openGCP(ctx, uri, opts)
	case strings.HasPrefix(uri, awsScheme):
		return openAWS(ctx, uri, opts)
	default:
		return nil, opError(uri, "open", ErrUnknownScheme, nil)
	}
}

// callContext applies the per-call timeout to ctx.
func callContext(ctx context.Context, opts Options) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opts.timeout())
}
