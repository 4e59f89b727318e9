package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/reason"
)

// frame builds a server frame (unmasked) by hand.
func frame(fin bool, op byte, payload []byte) []byte { return appendFrame(nil, fin, op, payload) }

// readFrames parses server frames until EOF and returns the data messages
// (reassembled from their fragments) and the control payloads, in order.
func readFrames(t *testing.T, r io.Reader) (msgs []string, controls []string, err error) {
	t.Helper()
	br := bufio.NewReader(r)
	var cur []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return msgs, controls, nil
			}
			return msgs, controls, err
		}
		fin, op, n := h[0]&0x80 != 0, h[0]&0x0f, uint64(h[1]&0x7f)
		switch n {
		case 126:
			var b [2]byte
			io.ReadFull(br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			io.ReadFull(br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return msgs, controls, err
		}
		if op >= wsClose {
			controls = append(controls, string(p))
			continue
		}
		cur = append(cur, p...)
		if fin {
			msgs = append(msgs, string(cur))
			cur = nil
		}
	}
}

// scrubThrough feeds raw server bytes through a wsScrubber and parses what
// comes out.
func scrubThrough(t *testing.T, raw []byte, injected []inject.Injected) (msgs, controls []string, err error) {
	t.Helper()
	up := &pipeConn{Reader: bytes.NewReader(raw)}
	w := newWSScrubber(up, injected)
	return readFrames(t, w)
}

type pipeConn struct {
	io.Reader
	written bytes.Buffer
	closed  bool
}

func (c *pipeConn) Write(p []byte) (int, error) { return c.written.Write(p) }
func (c *pipeConn) Close() error                { c.closed = true; return nil }

func TestWSScrubberRedactsAcrossFragments(t *testing.T) {
	secret := "sk_live_0123456789abcdef"
	injected := []inject.Injected{{Name: "stripe", Secret: []byte(secret)}}
	big := strings.Repeat("x", wsChunk-10) + secret + strings.Repeat("y", 100) // the secret straddles a chunk
	var raw []byte
	raw = append(raw, frame(true, wsText, []byte("hello "+secret))...)
	// One message in three fragments, the secret split between the first
	// two, a ping holding the secret in the middle.
	raw = append(raw, frame(false, wsText, []byte("a "+secret[:5]))...)
	raw = append(raw, frame(true, 0x9, []byte("ping "+secret))...)
	raw = append(raw, frame(false, wsContinuation, []byte(secret[5:]+" b"))...)
	raw = append(raw, frame(true, wsContinuation, nil)...)
	raw = append(raw, frame(true, wsBinary, []byte(big))...)
	raw = append(raw, frame(true, wsText, nil)...)
	raw = append(raw, frame(true, wsClose, []byte{0x03, 0xe8})...)
	msgs, controls, err := scrubThrough(t, raw, injected)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"hello stk_ph_stripe", "a stk_ph_stripe b", strings.Repeat("x", wsChunk-10) + "stk_ph_stripe" + strings.Repeat("y", 100), ""}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d: %.80q", len(msgs), len(want), msgs)
	}
	for i := range want {
		if msgs[i] != want[i] {
			t.Errorf("message %d = %.80q, want %.80q", i, msgs[i], want[i])
		}
	}
	if len(controls) != 2 || controls[0] != "ping stk_ph_stripe" || controls[1] != "\x03\xe8" {
		t.Errorf("control frames %q", controls)
	}
}

// Frames the scrubber cannot read end the connection, and nothing of them
// reaches the agent.
func TestWSScrubberFailsClosed(t *testing.T) {
	injected := []inject.Injected{{Name: "stripe", Secret: []byte("sk_live_0123456789abcdef")}}
	compressed := frame(true, wsText, []byte("sk_live_0123456789abcdef"))
	compressed[0] |= 0x40 // RSV1: permessage-deflate
	masked := frame(true, wsText, []byte("xxxx"))
	masked[1] |= 0x80
	for name, raw := range map[string][]byte{
		"compressed":         compressed,
		"masked":             append(masked, 0, 0, 0, 0),
		"stray continuation": frame(true, wsContinuation, []byte("sk_live_0123456789abcdef")),
		"unknown opcode":     frame(true, 0x3, []byte("sk_live_0123456789abcdef")),
		"long ping":          frame(true, 0x9, bytes.Repeat([]byte("p"), 126)),
		"truncated":          frame(true, wsText, []byte("sk_live_0123456789abcdef"))[:10],
	} {
		up := &pipeConn{Reader: bytes.NewReader(raw)}
		out, err := io.ReadAll(newWSScrubber(up, injected))
		if err == nil || len(out) != 0 {
			t.Errorf("%s: read %q, %v; want nothing and an error", name, out, err)
		}
		if name != "truncated" && !up.closed {
			t.Errorf("%s: the upstream connection was left open", name)
		}
	}
}

func TestWSScrubberPassesWritesThrough(t *testing.T) {
	up := &pipeConn{Reader: bytes.NewReader(nil)}
	w := newWSScrubber(up, []inject.Injected{{Name: "stripe", Secret: []byte("sk_live_x")}})
	if _, err := w.Write([]byte("client frame")); err != nil || up.written.String() != "client frame" {
		t.Errorf("write: %v, upstream got %q", err, up.written.String())
	}
}

// An upgrade with a credential injected asks for no extension; an
// upstream that negotiates one anyway (or switches to another protocol)
// is refused, since its traffic could not be scrubbed.
func TestWebSocketExtensionsAndOtherUpgrades(t *testing.T) {
	var sawExtensions []string
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawExtensions = append(sawExtensions, r.Header.Get("Sec-WebSocket-Extensions"))
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		upgrade := "websocket"
		if strings.HasSuffix(r.URL.Path, "/other") {
			upgrade = "h2c"
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + upgrade + "\r\nConnection: Upgrade\r\n")
		if strings.HasSuffix(r.URL.Path, "/deflate") {
			brw.WriteString("Sec-WebSocket-Extensions: permessage-deflate\r\n")
		}
		brw.WriteString("Sec-WebSocket-Accept: x\r\n\r\n")
		brw.Flush()
		brw.Write(frame(true, wsText, []byte("token "+r.Header.Get("Authorization"))))
		brw.Flush()
	}))
	tok, _ := hs.issue("bot", stripeScope(), 0)
	for _, tc := range []struct {
		path       string
		wantStatus int
	}{{"/v1/plain", 101}, {"/deflate", 502}, {"/other", 502}} {
		t.Run(tc.path, func(t *testing.T) {
			raw, err := net.Dial("tcp", strings.TrimPrefix(hs.server.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			target := stripeHost + ":" + hs.up.port
			auth := base64.StdEncoding.EncodeToString([]byte("bot:" + tok))
			raw.Write([]byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Basic " + auth + "\r\n\r\n"))
			br := bufio.NewReader(raw)
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			conn := tls.Client(raw, &tls.Config{ServerName: stripeHost, RootCAs: newPool(hs.ca.Certificate()), NextProtos: []string{"http/1.1"}})
			req := "GET /v1/charges" + tc.path + " HTTP/1.1\r\nHost: " + target + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" +
				"Authorization: Bearer stk_ph_stripe\r\n\r\n"
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			cr := bufio.NewReader(conn)
			resp, err := http.ReadResponse(cr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, b)
			}
			if tc.wantStatus != 101 {
				if got := resp.Header.Get(reason.Header); got != reason.UpgradeRefused {
					t.Errorf("reason %q", got)
				}
				body, _ := io.ReadAll(resp.Body)
				if bytes.Contains(body, []byte(stripeToken)) {
					t.Errorf("the refusal carries the secret: %s", body)
				}
				return
			}
			msgs, _, _ := readFrames(t, cr)
			if len(msgs) != 1 || msgs[0] != "token Bearer stk_ph_stripe" {
				t.Errorf("frames %q, want the echo with the placeholder", msgs)
			}
		})
	}
	for i, ext := range sawExtensions {
		if ext != "" {
			t.Errorf("upgrade %d reached the upstream asking for extensions %q", i, ext)
		}
	}
	if len(sawExtensions) != 3 {
		t.Errorf("%d upgrades reached the upstream, want 3", len(sawExtensions))
	}
}

// Whatever the upstream sends, what comes out is well-formed frames and
// no message or control frame holds the secret.
func FuzzWSScrubber(f *testing.F) {
	secret := "sk_live_0123456789"
	f.Add(frame(true, wsText, []byte("a "+secret)))
	f.Add(append(frame(false, wsBinary, []byte(secret[:4])), frame(true, wsContinuation, []byte(secret[4:]))...))
	f.Add(frame(true, 0x9, []byte(secret)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		up := &pipeConn{Reader: bytes.NewReader(raw)}
		out, _ := io.ReadAll(newWSScrubber(up, []inject.Injected{{Name: "stripe", Secret: []byte(secret)}}))
		msgs, controls, err := readFrames(t, bytes.NewReader(out))
		if err != nil {
			t.Fatalf("the scrubber's output does not parse: %v", err)
		}
		for _, m := range append(msgs, controls...) {
			if strings.Contains(m, secret) {
				t.Fatalf("the secret got through: %q", m)
			}
		}
	})
}
