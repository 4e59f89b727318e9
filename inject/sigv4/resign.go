package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/stackctl/stack/inject/mint"
)

// MaxBody is the largest body read to hash it (a request that carries no
// x-amz-content-sha256) or to describe it (a form or DeleteObjects body).
const MaxBody = 16 << 20

// neverSigned are headers Resign leaves out of the signature even when
// the agent signed them: hop-by-hop headers, which do not reach AWS as
// sent, and those the proxy's transport may set or change after signing.
var neverSigned = []string{
	"accept-encoding", "user-agent", "connection", "keep-alive", "proxy-authenticate",
	"proxy-authorization", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect",
	"x-amzn-trace-id",
}

// s3Services are the signing names of S3's REST APIs, which sign the path
// as sent rather than escape it once more.
var s3Services = []string{"s3", "s3-object-lambda", "s3-outposts", "s3express"}

// Resign replaces the agent's signature on req with one made with the
// session's credentials at now, for the region and service the agent
// signed for, and adds the session token (X-Amz-Security-Token). It
// signs the headers the agent signed that are still present (less
// neverSigned), plus host, content-length when the body's length is
// known, x-amz-date, x-amz-security-token and x-amz-content-sha256: what
// the proxy's transport adds later is not signed and so cannot break the
// signature. Call it last, once nothing else will change the request.
//
// The payload hash is x-amz-content-sha256 as sent when it is a SHA-256
// digest, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER (chunks
// without signatures: the header signature covers such a request).
// Without the header (services other than S3) Resign hashes the body,
// reading at most MaxBody bytes, and puts it back; for S3 it also sets
// the header, which S3 requires.
//
// It refuses, with an *Error (reason.SigV4Unsupported), what it cannot
// re-sign: a presigned URL; aws-chunked bodies with chunk signatures
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER],
// STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD[-TRAILER]), whose every chunk
// is chained to the agent's seed signature, made with a placeholder; any
// other payload hash; a body over MaxBody to hash. Check refuses the
// same, and is called before a session is minted. On error the request
// must not be forwarded.
func Resign(req *http.Request, s Signed, sess *mint.AWSSession, now time.Time) error {
	if sess == nil || sess.AccessKeyID == "" || sess.SecretAccessKey == "" {
		return errors.New("sigv4: no session credentials to sign with")
	}
	hash, err := payloadHash(req, s)
	if err != nil {
		return err
	}
	isS3 := slices.Contains(s3Services, s.Service)
	if s.PayloadHash == "" && isS3 {
		// S3 requires the header, and the signature covers it.
		req.Header.Set("X-Amz-Content-Sha256", hash)
	}

	for k := range req.Header {
		switch strings.ToLower(k) {
		case "authorization", "x-amz-date", "x-amz-security-token":
			delete(req.Header, k)
		}
	}
	// Sign exactly what the agent signed (and the signer's own headers):
	// hide the rest from the signer, then put it back.
	hidden := http.Header{}
	for k, v := range req.Header {
		lk := strings.ToLower(k)
		if lk == "x-amz-content-sha256" || slices.Contains(s.SignedHeaders, lk) && !slices.Contains(neverSigned, lk) {
			continue
		}
		hidden[k] = v
		delete(req.Header, k)
	}
	creds := aws.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.SecretAccessKey, SessionToken: sess.SessionToken}
	// A signer of its own: the SDK's caches one signing key per region and
	// service and reuses it for the same access key ID, whatever the
	// secret; deriving a key is four HMACs.
	err = v4.NewSigner().SignHTTP(context.Background(), creds, req, hash, s.Service, s.Region, now, func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = isS3
	})
	for k, v := range hidden {
		req.Header[k] = v
	}
	if err != nil {
		req.Header.Del("Authorization")
		return fmt.Errorf("sigv4: sign: %w", err)
	}
	return nil
}

// Check refuses, before anything is minted to sign it with, a request
// Resign would refuse: the same *Error (reason.SigV4Unsupported) for a
// presigned URL, a signed aws-chunked body, an unknown payload hash or a
// body too large to hash. Like Resign, it reads a body that carries no
// x-amz-content-sha256 (at most MaxBody bytes) to hash it, and puts it
// back; Resign does not read it again.
func Check(req *http.Request, s Signed) error {
	_, err := payloadHash(req, s)
	return err
}

// payloadHash is the payload hash Resign signs req with: the agent's
// x-amz-content-sha256 when Resign can sign with it, or the body's
// SHA-256 when the agent sent none. It is the one place that decides what
// is re-signed.
func payloadHash(req *http.Request, s Signed) (string, error) {
	if s.Presigned {
		return "", unsupported("presigned URLs are not re-signed: have the agent's SDK send the request itself " +
			"(signed in the Authorization header) rather than presign a URL")
	}
	hash := s.PayloadHash
	switch {
	case hash == "":
		body, err := readBody(req)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(body)
		return hex.EncodeToString(sum[:]), nil
	case hash == UnsignedPayload, hash == StreamingUnsignedTrailer, isDigest(hash):
		return hash, nil
	case strings.HasPrefix(hash, "STREAMING-AWS4-"):
		return "", unsupported(fmt.Sprintf("signed aws-chunked uploads (x-amz-content-sha256 %s) are not re-signed: each chunk's "+
			"signature chains from the agent's; configure the SDK to send the payload unsigned or with a SHA-256 hash", hash))
	}
	return "", unsupported(fmt.Sprintf("unknown x-amz-content-sha256 %.80q", hash))
}

func isDigest(s string) bool {
	return len(s) == 64 && allIn(s, "0123456789abcdef")
}

// bufferedBody is a body already read into memory.
type bufferedBody struct {
	*bytes.Reader
	data []byte
}

func (*bufferedBody) Close() error { return nil }

// failedBody is a body that could not be read whole: it fails every
// read, so a request whose body was lost is never sent or signed.
type failedBody struct{ err error }

func (b failedBody) Read([]byte) (int, error) { return 0, b.err }
func (failedBody) Close() error               { return nil }

// readBody reads req's body (at most MaxBody bytes) and puts it back,
// with GetBody, as a body of known length. A body read before is not
// read again.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if b, ok := req.Body.(*bufferedBody); ok && b.Len() == len(b.data) {
		return b.data, nil
	}
	if b, ok := req.Body.(failedBody); ok {
		return nil, b.err
	}
	if req.ContentLength > MaxBody {
		return nil, tooLarge()
	}
	data, err := io.ReadAll(io.LimitReader(req.Body, MaxBody+1))
	req.Body.Close()
	if err != nil {
		err = unsupported("reading the request body to hash it: " + err.Error())
	} else if len(data) > MaxBody {
		err = tooLarge()
	}
	if err != nil {
		// What was read is gone: a later read must fail the same way,
		// not find an empty body and sign it.
		req.Body, req.GetBody = failedBody{err}, nil
		return nil, err
	}
	// A known length: the signature covers content-length, so the body
	// must not go out chunked.
	req.ContentLength = int64(len(data))
	req.TransferEncoding = nil
	if len(data) == 0 {
		// A client request with a non-nil body of length 0 is sent
		// chunked: say there is none.
		req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		return nil, nil
	}
	req.Body = &bufferedBody{Reader: bytes.NewReader(data), data: data}
	req.GetBody = func() (io.ReadCloser, error) {
		return &bufferedBody{Reader: bytes.NewReader(data), data: data}, nil
	}
	return data, nil
}

func tooLarge() error {
	return unsupported(fmt.Sprintf("the request body is larger than %d MiB and carries no x-amz-content-sha256: "+
		"it is not read to hash it", MaxBody>>20))
}
