package kms

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

const (
	awsScheme = "awskms://"
	// AWSContextKey is the EncryptionContext key that carries the
	// additional authenticated data (base64) on AWS KMS calls. AWS checks
	// the context on Decrypt and logs it in CloudTrail; it is not secret.
	AWSContextKey = "stack:aad"
)

type awsKMS struct {
	uri    string
	keyID  string
	opts   Options
	client *awskms.Client
	closer
}

func openAWS(ctx context.Context, uri string, opts Options) (KMS, error) {
	keyID := strings.TrimPrefix(uri, awsScheme)
	if keyID == "" || strings.ContainsAny(keyID, " \t\r\n?#") {
		return nil, invalidURI(uri, "want awskms://KEY-ID, awskms://arn:aws:kms:REGION:ACCOUNT:key/ID or awskms://alias/NAME")
	}
	if strings.HasPrefix(keyID, "alias") && !strings.HasPrefix(keyID, "alias/") || keyID == "alias/" {
		return nil, invalidURI(uri, "an alias is written awskms://alias/NAME")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, opError(uri, "open", ErrInvalidURI, err)
	}
	if cfg.Region == "" {
		// An ARN names its region; use it rather than fail.
		if parts := strings.Split(keyID, ":"); len(parts) >= 6 && parts[0] == "arn" {
			cfg.Region = parts[3]
		}
	}
	if cfg.Region == "" {
		return nil, opError(uri, "open", ErrInvalidURI, errors.New("no AWS region: set AWS_REGION or use a key ARN"))
	}
	return &awsKMS{uri: uri, keyID: keyID, opts: opts, client: awskms.NewFromConfig(cfg)}, nil
}

func awsContext(aad []byte) map[string]string {
	if len(aad) == 0 {
		return nil
	}
	return map[string]string{AWSContextKey: base64.StdEncoding.EncodeToString(aad)}
}

func (a *awsKMS) URI() string { return a.uri }

func (a *awsKMS) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if a.isClosed() {
		return nil, opError(a.uri, "wrap", ErrClosed, nil)
	}
	ctx, cancel := callContext(ctx, a.opts)
	defer cancel()
	payload := cloudPayload(plaintext)
	defer clear(payload)
	out, err := a.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId:             aws.String(a.keyID),
		Plaintext:         payload,
		EncryptionContext: awsContext(aad),
	})
	if err != nil {
		return nil, a.classify("wrap", ErrWrap, err)
	}
	return out.CiphertextBlob, nil
}

func (a *awsKMS) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if a.isClosed() {
		return nil, opError(a.uri, "unwrap", ErrClosed, nil)
	}
	ctx, cancel := callContext(ctx, a.opts)
	defer cancel()
	// KeyId is always sent so that AWS refuses a blob made under another
	// key instead of silently decrypting it with that key.
	out, err := a.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:             aws.String(a.keyID),
		CiphertextBlob:    wrapped,
		EncryptionContext: awsContext(aad),
	})
	if err != nil {
		return nil, a.classify("unwrap", ErrUnwrap, err)
	}
	return cloudOpen(a.uri, out.Plaintext)
}

// awsUnavailable are service answers that mean "try again later".
var awsUnavailable = map[string]bool{
	"DependencyTimeoutException": true,
	"KMSInternalException":       true,
	"KeyUnavailableException":    true,
	"LimitExceededException":     true,
	"ThrottlingException":        true,
	"ServiceUnavailable":         true,
	"InternalFailure":            true,
	"RequestTimeout":             true,
}

// classify maps an SDK error to ErrUnavailable or the operation's refusal
// sentinel. An error that is not a service answer (connection refused,
// timeout, no credentials) means the KMS could not be used.
func (a *awsKMS) classify(op string, refused, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) && !awsUnavailable[api.ErrorCode()] {
		return opError(a.uri, op, refused, err)
	}
	return opError(a.uri, op, ErrUnavailable, err)
}

func (a *awsKMS) Close() error {
	a.close()
	return nil
}
