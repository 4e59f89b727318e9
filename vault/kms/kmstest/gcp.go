package kmstest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"hash/crc32"
	"net"
	"sync"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/stackctl/stack/vault/kms"
)

// GCPServer is an in-process Cloud KMS that implements Encrypt and Decrypt
// with a real AES-256-GCM key per CryptoKey name (created on first use),
// verifying and filling the CRC32C integrity fields as Cloud KMS does.
type GCPServer struct {
	kmspb.UnimplementedKeyManagementServiceServer

	// Endpoint is http://127.0.0.1:PORT, the value for STACK_GCPKMS_ENDPOINT.
	Endpoint string

	srv  *grpc.Server
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	keys map[string]cipher.AEAD
}

// StartGCP starts a GCPServer on 127.0.0.1 and returns its endpoint
// (http://127.0.0.1:PORT, for STACK_GCPKMS_ENDPOINT). It stops when the
// test ends.
func StartGCP(t testing.TB) (endpoint string) {
	t.Helper()
	return StartGCPServer(t).Endpoint
}

// StartGCPServer is StartGCP returning the server, so that a test can stop
// it early to see how clients behave when the KMS is down.
func StartGCPServer(t testing.TB) *GCPServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kmstest: listen: %v", err)
	}
	s := &GCPServer{
		Endpoint: "http://" + ln.Addr().String(),
		srv:      grpc.NewServer(),
		done:     make(chan struct{}),
		keys:     map[string]cipher.AEAD{},
	}
	kmspb.RegisterKeyManagementServiceServer(s.srv, s)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // returns when Stop is called
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server and waits for it; later calls fail as Unavailable.
// It is idempotent.
func (s *GCPServer) Stop() {
	s.once.Do(func() {
		s.srv.Stop()
		<-s.done
	})
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

func (s *GCPServer) key(name string) (cipher.AEAD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.keys[name]; ok {
		return a, nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	s.keys[name] = a
	return a, nil
}

func checkCRC(field string, data []byte, sum *wrapperspb.Int64Value) (bool, error) {
	if sum == nil {
		return false, nil
	}
	if sum.GetValue() != crc(data) {
		return false, status.Errorf(codes.InvalidArgument, "%s: checksum mismatch", field)
	}
	return true, nil
}

// Encrypt implements the Cloud KMS Encrypt RPC.
func (s *GCPServer) Encrypt(_ context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	ptOK, err := checkCRC("plaintext_crc32c", req.GetPlaintext(), req.GetPlaintextCrc32C())
	if err != nil {
		return nil, err
	}
	aadOK, err := checkCRC("additional_authenticated_data_crc32c", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C())
	if err != nil {
		return nil, err
	}
	a, err := s.key(req.GetName())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ct := a.Seal(nonce, nonce, req.GetPlaintext(), req.GetAdditionalAuthenticatedData())
	return &kmspb.EncryptResponse{
		Name:                    req.GetName() + "/cryptoKeyVersions/1",
		Ciphertext:              ct,
		CiphertextCrc32C:        wrapperspb.Int64(crc(ct)),
		VerifiedPlaintextCrc32C: ptOK,
		VerifiedAdditionalAuthenticatedDataCrc32C: aadOK,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

// Decrypt implements the Cloud KMS Decrypt RPC.
func (s *GCPServer) Decrypt(_ context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if _, err := checkCRC("ciphertext_crc32c", req.GetCiphertext(), req.GetCiphertextCrc32C()); err != nil {
		return nil, err
	}
	if _, err := checkCRC("additional_authenticated_data_crc32c", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	a, err := s.key(req.GetName())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ct := req.GetCiphertext()
	if len(ct) < a.NonceSize() {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	pt, err := a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], req.GetAdditionalAuthenticatedData())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
	}
	return &kmspb.DecryptResponse{
		Plaintext:       pt,
		PlaintextCrc32C: wrapperspb.Int64(crc(pt)),
		UsedPrimary:     true,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

// SetGCPEnv points kms.Open's gcpkms backend at endpoint for the rest of
// the test.
func SetGCPEnv(t testing.TB, endpoint string) {
	t.Helper()
	t.Setenv(kms.GCPEndpointEnv, endpoint)
}

// GCPKeyURI returns a gcpkms:// URI for a CryptoKey named key in a fixed
// test project; the test server creates it on first use.
func GCPKeyURI(key string) string {
	return "gcpkms://projects/stack-test/locations/global/keyRings/test/cryptoKeys/" + key
}
