package otlp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stackctl/stack/audit"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
)

// benchEntries are n records of a busy agent, as the fleet log ships
// them: four sidecar logs, every request field set.
func benchEntries(n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		side := "sc-" + strconv.Itoa(i%4)
		out[i] = Entry{
			Record: audit.Record{
				Seq: uint64(i + 1), EventID: "0b7e1f9c-6d0a-4c1e-9d55-" + strconv.Itoa(100000000000+i),
				TimestampMS: 1_767_225_600_000 + int64(i), AgentID: "billing-agent", PassportJTI: "9f2c1a7e",
				Action: audit.ActionCredentialAccess, CredentialID: "stripe", CredentialFingerprint: "sha256:3f5a9c",
				Host: "api.stripe.com", Method: "POST", Path: "/v1/charges/ch_" + strconv.Itoa(i), Status: 200,
				BytesIn: 512, BytesOut: 4096, DurationMS: 87, PrevHash: audit.GenesisHash, Hash: audit.Hash{byte(i)},
			},
			Agent: "billing-agent", Sidecar: side, Log: "log-" + side, FleetIndex: uint64(i),
		}
	}
	return out
}

// What Export does to 1000 entries before the first byte leaves: map,
// size, group and marshal, and with Gzip, compress.
func BenchmarkEncode1000(b *testing.B) {
	entries := benchEntries(1000)
	e, err := New(Options{Endpoint: "http://127.0.0.1:4318"})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var wire int
			for b.Loop() {
				records := make([]*logspb.LogRecord, len(entries))
				sizes := make([]int, len(entries))
				for i := range entries {
					records[i] = logRecord(&entries[i], 1)
					sizes[i] = proto.Size(records[i])
				}
				n := e.splitSize(entries, sizes, DefaultMaxRecords, DefaultMaxBytes)
				body, err := proto.Marshal(e.request(entries[:n], records[:n]))
				if err != nil {
					b.Fatal(err)
				}
				if gz {
					if body, err = compress(body); err != nil {
						b.Fatal(err)
					}
				}
				wire = len(body)
			}
			b.ReportMetric(float64(wire), "wire-bytes")
		})
	}
}

// Export of 1000 entries to a loopback receiver that reads and drops
// the body: encoding plus one HTTP round trip.
func BenchmarkExport1000(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	entries := benchEntries(1000)
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			e, err := New(Options{Endpoint: srv.URL, Gzip: gz})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := e.Export(context.Background(), entries); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
