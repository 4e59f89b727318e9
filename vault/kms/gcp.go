package kms

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/url"
	"os"
	"strings"

	gcpkms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	gcpScheme = "gcpkms://"
	// GCPEndpointEnv overrides the Cloud KMS endpoint (host:port, over TLS
	// with Application Default Credentials). The form http://HOST:PORT,
	// allowed only for a loopback HOST, speaks plaintext gRPC without
	// credentials, for emulators and tests.
	GCPEndpointEnv = "STACK_GCPKMS_ENDPOINT"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

type gcp struct {
	uri    string
	name   string // projects/P/locations/L/keyRings/R/cryptoKeys/K
	opts   Options
	client *gcpkms.KeyManagementClient
	closer
}

// parseGCPName checks the CryptoKey resource name in a gcpkms:// URI.
func parseGCPName(uri string) (string, error) {
	name := strings.TrimPrefix(uri, gcpScheme)
	parts := strings.Split(name, "/")
	want := []string{"projects", "", "locations", "", "keyRings", "", "cryptoKeys", ""}
	if len(parts) != len(want) {
		return "", invalidURI(uri, "want gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
	}
	for i, w := range want {
		if w != "" && parts[i] != w {
			return "", invalidURI(uri, "want gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K (segment %d is %q, want %q)", i+1, parts[i], w)
		}
		if w == "" && (parts[i] == "" || strings.ContainsAny(parts[i], " \t\r\n?#")) {
			return "", invalidURI(uri, "want gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K (segment %d is empty or malformed)", i+1)
		}
	}
	return name, nil
}

func openGCP(ctx context.Context, uri string, opts Options) (KMS, error) {
	name, err := parseGCPName(uri)
	if err != nil {
		return nil, err
	}
	var copts []option.ClientOption
	if ep := os.Getenv(GCPEndpointEnv); ep != "" {
		eo, err := gcpEndpointOptions(ep)
		if err != nil {
			return nil, opError(uri, "open", ErrInvalidURI, fmt.Errorf("%s: %w", GCPEndpointEnv, err))
		}
		copts = eo
	}
	client, err := gcpkms.NewKeyManagementClient(ctx, copts...)
	if err != nil {
		return nil, opError(uri, "open", ErrUnavailable, err)
	}
	return &gcp{uri: uri, name: name, opts: opts, client: client}, nil
}

// gcpEndpointOptions turns STACK_GCPKMS_ENDPOINT into client options.
// Plaintext is only ever used towards loopback so that a typo cannot send
// key material in the clear across a network.
func gcpEndpointOptions(ep string) ([]option.ClientOption, error) {
	if !strings.HasPrefix(ep, "http://") {
		if strings.Contains(ep, "://") {
			return nil, fmt.Errorf("endpoint %q: want HOST:PORT, or http://HOST:PORT for a loopback emulator", ep)
		}
		return []option.ClientOption{option.WithEndpoint(ep)}, nil
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("endpoint %q: want http://HOST:PORT", ep)
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("endpoint %q: plaintext http:// is allowed only on loopback", ep)
	}
	return []option.ClientOption{
		option.WithEndpoint(u.Host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}, nil
}

func (g *gcp) URI() string { return g.uri }

func (g *gcp) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if g.isClosed() {
		return nil, opError(g.uri, "wrap", ErrClosed, nil)
	}
	ctx, cancel := callContext(ctx, g.opts)
	defer cancel()
	payload := cloudPayload(plaintext)
	defer clear(payload)
	req := &kmspb.EncryptRequest{
		Name:            g.name,
		Plaintext:       payload,
		PlaintextCrc32C: wrapperspb.Int64(crc32c(payload)),
	}
	if len(aad) > 0 {
		req.AdditionalAuthenticatedData = aad
		req.AdditionalAuthenticatedDataCrc32C = wrapperspb.Int64(crc32c(aad))
	}
	resp, err := g.client.Encrypt(ctx, req)
	if err != nil {
		return nil, g.classify("wrap", ErrWrap, err)
	}
	if !resp.GetVerifiedPlaintextCrc32C() {
		return nil, opError(g.uri, "wrap", ErrIntegrity, errors.New("request plaintext checksum not verified by the server"))
	}
	if len(aad) > 0 && !resp.GetVerifiedAdditionalAuthenticatedDataCrc32C() {
		return nil, opError(g.uri, "wrap", ErrIntegrity, errors.New("request additional data checksum not verified by the server"))
	}
	if resp.GetCiphertextCrc32C() == nil || resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()) {
		return nil, opError(g.uri, "wrap", ErrIntegrity, errors.New("response ciphertext checksum mismatch"))
	}
	return resp.GetCiphertext(), nil
}

func (g *gcp) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if g.isClosed() {
		return nil, opError(g.uri, "unwrap", ErrClosed, nil)
	}
	ctx, cancel := callContext(ctx, g.opts)
	defer cancel()
	req := &kmspb.DecryptRequest{
		Name:             g.name,
		Ciphertext:       wrapped,
		CiphertextCrc32C: wrapperspb.Int64(crc32c(wrapped)),
	}
	if len(aad) > 0 {
		req.AdditionalAuthenticatedData = aad
		req.AdditionalAuthenticatedDataCrc32C = wrapperspb.Int64(crc32c(aad))
	}
	resp, err := g.client.Decrypt(ctx, req)
	if err != nil {
		return nil, g.classify("unwrap", ErrUnwrap, err)
	}
	pt := resp.GetPlaintext()
	if resp.GetPlaintextCrc32C() == nil || resp.GetPlaintextCrc32C().GetValue() != crc32c(pt) {
		clear(pt)
		return nil, opError(g.uri, "unwrap", ErrIntegrity, errors.New("response plaintext checksum mismatch"))
	}
	return cloudOpen(g.uri, pt)
}

// classify maps a gRPC error to ErrUnavailable (worth retrying later) or
// the operation's refusal sentinel.
func (g *gcp) classify(op string, refused, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return opError(g.uri, op, ErrUnavailable, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Internal, codes.Unknown, codes.Aborted:
		return opError(g.uri, op, ErrUnavailable, err)
	}
	return opError(g.uri, op, refused, err)
}

func (g *gcp) Close() error {
	if !g.close() {
		return nil
	}
	if err := g.client.Close(); err != nil {
		return opError(g.uri, "close", nil, err)
	}
	return nil
}
