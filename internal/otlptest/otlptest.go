// Package otlptest runs the OpenTelemetry Collector's own OTLP receiver
// in-process on loopback, for tests of what STACK exports to it.
package otlptest

import (
	"context"
	"net"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

// Start starts the receiver, HTTP only, on a loopback port, feeding next
// (a consumertest.LogsSink, say). It returns the endpoint to export to
// and shuts the receiver down when the test ends.
func Start(t testing.TB, next consumer.Logs) string {
	t.Helper()
	factory := otlpreceiver.NewFactory()
	// The receiver takes an address, not a listener, and does not say
	// which port it bound: find a free one, and try again if another
	// process takes it first.
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()

		cfg := factory.CreateDefaultConfig().(*otlpreceiver.Config)
		cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = addr
		r, err := factory.CreateLogs(context.Background(), receivertest.NewNopSettings(factory.Type()), cfg, next)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			if try < 5 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := r.Shutdown(context.Background()); err != nil {
				t.Errorf("receiver shutdown: %v", err)
			}
		})
		return "http://" + addr
	}
}
