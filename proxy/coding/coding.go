// Package coding undoes HTTP content codings (gzip, deflate, br, zstd),
// so that the proxy can scrub and scan a compressed response as the agent
// will read it. It owns which codings the proxy reads: Accept narrows an
// agent's Accept-Encoding to them, and Decode reads them.
package coding

import (
	"bufio"
	"compress/flate"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Codings the proxy decodes, by their Content-Encoding names.
var decodable = []string{"gzip", "deflate", "br", "zstd"}

// maxZstdWindow is the largest zstd window a response may ask for: the 8
// MiB RFC 8878 asks HTTP decoders to support, so one response cannot make
// the proxy allocate more.
const maxZstdWindow = 8 << 20

// maxCodings bounds how many codings one response may stack.
const maxCodings = 4

// ErrUnsupported is returned for a content coding the proxy cannot read.
var ErrUnsupported = errors.New("coding: unsupported content coding")

// Supported reports whether c, one Content-Encoding token, is decoded
// (identity included).
func Supported(c string) bool {
	c = normalize(c)
	if c == "identity" {
		return true
	}
	for _, d := range decodable {
		if c == d {
			return true
		}
	}
	return false
}

func normalize(c string) string {
	c = strings.ToLower(strings.TrimSpace(c))
	if c == "x-gzip" {
		return "gzip"
	}
	return c
}

// Accept narrows an Accept-Encoding value to the codings Decode reads,
// keeping their parameters (q-values) and order; identity and "*" are
// dropped (a "*" would invite codings the proxy cannot read). It returns ""
// when nothing remains, which means identity.
func Accept(v string) string {
	if onlyDecodable(v) {
		return v // what clients send: nothing to build, on every request
	}
	var out []string
	for _, part := range strings.Split(v, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = normalize(name)
		if name == "" || name == "identity" || !Supported(name) {
			continue
		}
		if params = strings.TrimSpace(params); params != "" {
			name += ";" + params
		}
		out = append(out, name)
	}
	return strings.Join(out, ", ")
}

// onlyDecodable reports whether every coding v lists is one Decode reads,
// spelled as Accept would spell it.
func onlyDecodable(v string) bool {
	for rest := v; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		name, _, _ := strings.Cut(part, ";")
		if !slices.Contains(decodable, strings.TrimSpace(name)) {
			return false
		}
	}
	return true
}

// Parse splits a Content-Encoding value into its codings, in the order
// the sender applied them, without identity. It fails with
// ErrUnsupported, naming the coding, for one the proxy cannot read.
func Parse(v string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(v, ",") {
		c := normalize(part)
		if c == "" || c == "identity" {
			continue
		}
		if !Supported(c) {
			return nil, fmt.Errorf("%w %q", ErrUnsupported, strings.TrimSpace(part))
		}
		out = append(out, c)
	}
	if len(out) > maxCodings {
		return nil, fmt.Errorf("%w: %d codings stacked", ErrUnsupported, len(out))
	}
	return out, nil
}

// Decode returns a reader of r's content with codings (from Parse)
// undone, last applied first. Nothing is read from r before the first
// Read, so a stream's first bytes are not waited for here. Closing it
// releases the decoders and closes r. A corrupt stream, or a coding not
// in Parse's list, shows as an error from Read.
func Decode(r io.ReadCloser, codings []string) io.ReadCloser {
	return &decoder{src: r, r: r, codings: codings}
}

type decoder struct {
	src     io.Closer
	r       io.Reader
	codings []string // still to set up, at the first Read
	err     error
	closers []func()
}

func (d *decoder) Read(p []byte) (int, error) {
	if d.codings != nil {
		cs := d.codings
		d.codings = nil
		for i := len(cs) - 1; i >= 0 && d.err == nil; i-- {
			d.err = d.push(cs[i])
		}
	}
	if d.err != nil {
		return 0, d.err
	}
	return d.r.Read(p)
}

func (d *decoder) push(c string) error {
	switch c {
	case "gzip":
		zr, err := gzip.NewReader(d.r)
		if err == io.EOF {
			d.r = eof{} // an empty body, as some servers send for no content
			return nil
		}
		if err != nil {
			return fmt.Errorf("coding: gzip: %w", err)
		}
		d.closers = append(d.closers, func() { zr.Close() })
		d.r = zr
	case "deflate":
		// "deflate" means the zlib format (RFC 9110 8.4.1.2), but some
		// servers send raw deflate: tell them apart by the zlib header.
		br := bufio.NewReader(d.r)
		head, _ := br.Peek(2)
		if len(head) == 2 && head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return fmt.Errorf("coding: deflate: %w", err)
			}
			d.closers = append(d.closers, func() { zr.Close() })
			d.r = zr
		} else {
			fr := flate.NewReader(br)
			d.closers = append(d.closers, func() { fr.Close() })
			d.r = fr
		}
	case "br":
		d.r = brotli.NewReader(d.r)
	case "zstd":
		zr, err := zstd.NewReader(d.r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return fmt.Errorf("coding: zstd: %w", err)
		}
		d.closers = append(d.closers, zr.Close)
		d.r = zr
	default:
		return fmt.Errorf("%w %q", ErrUnsupported, c)
	}
	return nil
}

func (d *decoder) Close() error {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
	return d.src.Close()
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }
