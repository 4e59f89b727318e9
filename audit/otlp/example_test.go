package otlp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/audit/otlp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// The control plane's loop: export what the fleet log accepted since the
// cursor, and move the cursor only when the receiver has it.
func ExampleExporter_Export() {
	// A stand-in for the SIEM's OTLP/HTTP endpoint.
	siem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		lr := req.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
		fmt.Printf("%s %s: %s\n", r.URL.Path, lr.SeverityText, lr.Body.GetStringValue())
	}))
	defer siem.Close()

	exp, err := otlp.New(otlp.Options{
		Endpoint: siem.URL,
		Headers:  map[string]string{"X-API-Key": "from a secret reference, never a literal"},
		Resource: map[string]string{"service.instance.id": "control-0"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer exp.Close()

	entries := []otlp.Entry{{
		Record: audit.Record{
			Seq: 12, EventID: "5f0c", Action: audit.ActionRequestDenied, AgentID: "billing-agent",
			Method: "DELETE", Host: "api.stripe.com", Path: "/v1/customers/cus_1", Status: 403, Reason: "scope_denied",
		},
		Agent: "billing-agent", Sidecar: "sc-1", Log: "4be1", FleetIndex: 9041,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var partial *otlp.PartialError
	switch err := exp.Export(ctx, entries); {
	case err == nil:
		fmt.Println("advance the cursor past", entries[len(entries)-1].FleetIndex)
	case errors.As(err, &partial):
		fmt.Println("log it, then advance the cursor:", err)
	default:
		fmt.Println("keep the cursor; try again later:", err)
	}
	// Output:
	// /v1/logs WARN: request_denied DELETE api.stripe.com/v1/customers/cus_1 → 403 (scope_denied)
	// advance the cursor past 9041
}
