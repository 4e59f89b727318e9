package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stackctl/stack/inject"
)

// WebSocket frames from the upstream carry what the service sends, and a
// service may echo the credential it was called with. After an upgrade on
// which a credential was injected, the upstream's frames pass through
// wsScrubber, which replaces the secret by its placeholder as it does in
// response bodies. A message's payload is redacted as one stream across
// its fragments, so a secret split between frames is caught; the frames
// going out are re-cut to the redacted lengths, which RFC 6455 (5.4)
// allows an intermediary when no extension is in use. The proxy removes
// Sec-WebSocket-Extensions from such upgrade requests, so that frames are
// not compressed (a compressed secret could not be found), and refuses an
// upgrade whose answer negotiates an extension anyway.

// isWebSocketUpgrade reports whether h asks for (or agrees to) a WebSocket.
func isWebSocketUpgrade(h http.Header) bool {
	return strings.EqualFold(h.Get("Upgrade"), "websocket")
}

// WebSocket opcodes (RFC 6455 5.2).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	// wsChunk bounds the payload read, redacted and sent on at a time:
	// a large frame goes out as several fragments, never buffered whole.
	wsChunk = 32 << 10
	// wsMaxControl is a control frame's largest payload.
	wsMaxControl = 125
)

var errWSFrame = errors.New("websocket frame the proxy cannot scrub")

// wsScrubber wraps an upgraded upstream connection: Read returns the
// upstream's frames with injected secrets redacted, Write passes the
// agent's frames through. goproxy reads and writes it from two goroutines;
// all of Read's state is its own.
type wsScrubber struct {
	conn     io.ReadWriteCloser
	br       *bufio.Reader
	red      *inject.StreamRedactor // the current data message
	injected []inject.Injected      // for control frames, each on its own

	out []byte // frames ready for Read
	err error  // ends Read once out is drained

	// The current frame, while its payload is being read.
	remaining uint64 // payload bytes of it still to read
	fin       bool   // it ends its message
	// The current data message.
	opcode  byte // its opcode (text or binary)
	started bool // a fragment of it has gone out
	inMsg   bool
	buf     []byte
}

func newWSScrubber(conn io.ReadWriteCloser, injected []inject.Injected) io.ReadWriteCloser {
	red := inject.NewStreamRedactor(injected)
	if red == nil {
		return conn
	}
	return &wsScrubber{conn: conn, br: bufio.NewReaderSize(conn, 4096), red: red, injected: injected}
}

func (w *wsScrubber) Write(p []byte) (int, error) { return w.conn.Write(p) }

func (w *wsScrubber) Close() error { return w.conn.Close() }

func (w *wsScrubber) Read(p []byte) (int, error) {
	for len(w.out) == 0 {
		if w.err != nil {
			return 0, w.err
		}
		if err := w.step(); err != nil {
			w.err = err
			if !errors.Is(err, io.EOF) {
				// Fail closed: what cannot be scrubbed does not reach the
				// agent, and the connection ends.
				w.conn.Close()
			}
		}
	}
	n := copy(p, w.out)
	w.out = w.out[n:]
	return n, nil
}

// step reads the next frame header or the next chunk of the current
// frame's payload and appends what can go out to w.out.
func (w *wsScrubber) step() error {
	if w.remaining == 0 {
		return w.header()
	}
	n := int(min(w.remaining, wsChunk))
	if cap(w.buf) < n {
		w.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(w.br, w.buf[:n]); err != nil {
		return unexpected(err)
	}
	w.remaining -= uint64(n)
	last := w.remaining == 0 && w.fin
	payload := w.red.Feed(nil, w.buf[:n], last)
	if len(payload) > 0 || last {
		w.emit(payload, last)
	}
	if last {
		w.inMsg, w.started, w.fin = false, false, false
	}
	return nil
}

// header reads a frame header. A control frame is read whole and passed
// on at once; a data frame's payload is left for step.
func (w *wsScrubber) header() error {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return unexpected(err)
	}
	fin, rsv, op := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
	masked, n := h[1]&0x80 != 0, uint64(h[1]&0x7f)
	if rsv != 0 || masked {
		// Compressed (no extension was agreed) or masked (servers do not
		// mask): not a frame the proxy can read.
		return fmt.Errorf("%w: rsv %#x, masked %v", errWSFrame, rsv, masked)
	}
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return unexpected(err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return unexpected(err)
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if op >= wsClose {
		if !fin || n > wsMaxControl {
			return fmt.Errorf("%w: control frame of %d bytes", errWSFrame, n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(w.br, payload); err != nil {
			return unexpected(err)
		}
		// Redacted on its own; a control frame must stay within 125 bytes.
		payload = inject.RedactBytes(payload, w.injected)
		if len(payload) > wsMaxControl {
			payload = payload[:wsMaxControl]
		}
		w.out = appendFrame(w.out, true, op, payload)
		return nil
	}
	switch {
	case op == wsContinuation && !w.inMsg, (op == wsText || op == wsBinary) && w.inMsg:
		return fmt.Errorf("%w: opcode %d out of sequence", errWSFrame, op)
	case op != wsContinuation && op != wsText && op != wsBinary:
		return fmt.Errorf("%w: opcode %d", errWSFrame, op)
	}
	if op != wsContinuation {
		w.opcode, w.inMsg, w.started = op, true, false
	}
	w.fin, w.remaining = fin, n
	if n == 0 && !fin {
		return nil // an empty fragment: nothing to send on
	}
	if n == 0 {
		w.emit(w.red.Feed(nil, nil, true), true)
		w.inMsg, w.started, w.fin = false, false, false
	}
	return nil
}

// emit appends a fragment of the current message: the first carries its
// opcode, the others are continuations; fin ends the message.
func (w *wsScrubber) emit(payload []byte, fin bool) {
	op := byte(wsContinuation)
	if !w.started {
		op, w.started = w.opcode, true
	}
	w.out = appendFrame(w.out, fin, op, payload)
}

// appendFrame appends an unmasked frame, as a server sends it.
func appendFrame(dst []byte, fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, b0, byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
