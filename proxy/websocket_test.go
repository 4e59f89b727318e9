package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/websocket"

	"github.com/stackctl/stack/audit"
)

// A WebSocket upgrade through an intercepted tunnel gets the credential
// injected on the upgrade request, then carries frames both ways, the
// upstream's scrubbed of the secret.
func TestWebSocketUpgradeWithInjection(t *testing.T) {
	hs := newHarness(t, websocket.Handler(func(ws *websocket.Conn) {
		var msg string
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			return
		}
		websocket.Message.Send(ws, "echo "+msg+" auth="+ws.Request().Header.Get("Authorization"))
	}))
	tok, _ := hs.issue("bot", stripeScope(), 0)

	proxyAddr := strings.TrimPrefix(hs.server.URL, "http://")
	raw, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	target := stripeHost + ":" + hs.up.port
	auth := base64.StdEncoding.EncodeToString([]byte("bot:" + tok))
	if _, err := raw.Write([]byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Basic " + auth + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	conn := tls.Client(raw, &tls.Config{ServerName: stripeHost, RootCAs: newPool(hs.ca.Certificate()), NextProtos: []string{"http/1.1"}})
	cfg, err := websocket.NewConfig("wss://"+target+"/v1/stream", "https://"+stripeHost)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"Authorization": {"Bearer stk_ph_stripe"}}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		t.Fatalf("websocket handshake through the proxy: %v", err)
	}
	defer ws.Close()
	if err := websocket.Message.Send(ws, "hello"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil {
		t.Fatal(err)
	}
	// The upstream echoes the credential it received on the upgrade; the
	// agent reads the placeholder in its place.
	if got != "echo hello auth=Bearer stk_ph_stripe" {
		t.Errorf("got %q", got)
	}
	if a := hs.up.received(); len(a) != 1 || a[0] != "Bearer "+stripeToken {
		t.Errorf("upstream received %q on the upgrade", a)
	}
	r := hs.waitRecord(func(r audit.Record) bool { return r.Action == audit.ActionRequest && r.Status == 101 })
	if r.CredentialID != "stripe" {
		t.Errorf("upgrade record = %+v", r)
	}
}
