package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/stackctl/stack/passport"
)

// authorized refuses calls without the real secret, and echoes what it
// got in the error text (grpc-message, a trailer) for the service
// "echo-auth".
func authorized(ctx context.Context, service string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := strings.Join(md.Get("authorization"), ",")
	if got != "Bearer "+stripeToken {
		return status.Errorf(codes.Unauthenticated, "want the real key, got %q", got)
	}
	if service == "echo-auth" {
		return status.Errorf(codes.PermissionDenied, "key %s may not read echo-auth", got)
	}
	return nil
}

// grpc-go, which speaks only HTTP/2, reaches a gRPC upstream through the
// sidecar with a credential injected, unary and streaming; the upstream's
// error text comes back scrubbed.
func TestGRPCThroughSidecar(t *testing.T) {
	hsrv := health.NewServer()
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := authorized(ctx, req.(*healthpb.HealthCheckRequest).GetService()); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := authorized(ss.Context(), ""); err != nil {
				return err
			}
			return h(s, ss)
		}),
	)
	healthpb.RegisterHealthServer(srv, hsrv)
	t.Cleanup(srv.Stop)
	hs := newHarness(t, srv) // grpc.Server serves HTTP/2 requests as an http.Handler
	scope := passport.Scope{{Hosts: []string{stripeHost}, Methods: []string{"POST"},
		Paths: []string{"/grpc.health.v1.Health/*"}, Credentials: []string{"stripe"}}}
	tok, _ := hs.issue("grpc-bot", scope, 0)

	conn, err := grpc.NewClient("passthrough:///"+stripeHost+":"+hs.up.port,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: newPool(hs.ca.Certificate())})),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			// What grpc-go's own proxy support does with HTTPS_PROXY.
			c, br, resp := hs.rawConnect(addr, proxyAuth("grpc-bot", tok))
			if resp.StatusCode != 200 {
				c.Close()
				return nil, status.Errorf(codes.Unavailable, "CONNECT: %s", resp.Status)
			}
			c.SetDeadline(time.Time{})
			return &bufConn{Conn: c, r: br}, nil
		}),
		grpc.WithPerRPCCredentials(placeholderCreds{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("status %v", resp.Status)
		}
	})
	t.Run("error text scrubbed", func(t *testing.T) {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "echo-auth"})
		st, _ := status.FromError(err)
		if st.Code() != codes.PermissionDenied || strings.Contains(st.Message(), stripeToken) ||
			!strings.Contains(st.Message(), "Bearer stk_ph_stripe") {
			t.Fatalf("error %v: want PermissionDenied naming the placeholder, never the key", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		hsrv.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("first update %v, %v", first, err)
		}
		hsrv.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
		next, err := stream.Recv()
		if err != nil || next.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("second update %v, %v", next, err)
		}
	})
	if got := hs.up.received(); len(got) == 0 || got[0] != "Bearer "+stripeToken {
		t.Fatalf("upstream received %q", got)
	}
}

// placeholderCreds sends the placeholder as an SDK configured with it
// would.
type placeholderCreds struct{}

func (placeholderCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer stk_ph_stripe"}, nil
}

func (placeholderCreds) RequireTransportSecurity() bool { return true }
