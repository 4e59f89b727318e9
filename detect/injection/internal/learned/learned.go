// Package learned is the prompt-injection scanner's learned layer: a
// logistic regression over hashed word features, read over windows of
// consecutive words. A window's score is the sigmoid of the bias plus
// the weights of the features of its words; a text's score is that of
// its highest-scoring window, so an instruction planted in a long
// document is judged on its own words, not diluted by the document.
//
// The features of a word are its hash, the hash of it and the word
// before it, and the hash of its first five bytes (which folds
// "instructions", "instructed" and "instruct" together). Words are runs
// of ASCII letters and digits, folded to lower case, and of non-ASCII
// letters; each CJK character (and anything else whose UTF-8 encoding
// begins with 0xE3 or above) is a word of its own, as CJK text has no
// spaces. Hashes index a table of 1<<Bits int8 weights.
//
// Inference is one pass over the text: per word a few table look-ups,
// and a running sum over the last Window words. It allocates nothing.
// The weights are trained by internal/cmd/injtrain.
package learned

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Bits is the size of the hashed feature table, as a power of two.
const Bits = 16

// Window is the number of words a window holds.
const Window = 24

// FeaturesPerWord is how many features each word contributes.
const FeaturesPerWord = 3

// maxWordLen is the most bytes of a word that are hashed.
const maxWordLen = 32

// byteClass: 0 separator, 1 ASCII letter or digit (value is the lower
// case), 2 start of a multi-byte rune that joins words, 3 start of a
// rune that is a word of its own, 4 continuation byte.
var byteClass, lower = func() (c [256]uint8, l [256]byte) {
	for i := range 256 {
		b := byte(i)
		l[i] = b
		switch {
		case b >= 'a' && b <= 'z' || b >= '0' && b <= '9':
			c[i] = 1
		case b >= 'A' && b <= 'Z':
			c[i] = 1
			l[i] = b + 'a' - 'A'
		case b >= 0xE3 && b < 0xF8:
			c[i] = 3
		case b >= 0xC0:
			c[i] = 2
		case b >= 0x80:
			c[i] = 4
		}
	}
	return
}()

const (
	prime1 = 0x9E3779B97F4A7C15
	prime2 = 0xC2B2AE3D27D4EB4F
	prime3 = 0x165667B19E3779F9
)

// tokenizer walks a text word by word. A word's bytes are packed eight
// at a time into a 64-bit chunk (lower-cased as they are read), and a
// multiply folds each full chunk into the word's hash: one multiply per
// eight bytes, not one per byte. The stem is the word's first chunk cut
// to five bytes.
//
// This runs over every answer an agent gets, so plain ASCII is read
// eight bytes at a time: a word boundary costs a count of
// trailing zeros, not a mispredicted branch per byte. Anything else
// (a byte at or above 0x80 near the word, the text's last eight bytes)
// takes the byte-by-byte path (word), which gives the same features;
// FuzzTokenizer holds the two to that.
type tokenizer struct {
	text []byte
	i    int
	prev uint64
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// asciiWordBytes returns 0x80 in each byte of v that is an ASCII letter
// or digit, and the same for letters alone; every byte of v must be
// below 0x80, so no addition carries into the next byte.
func asciiWordBytes(v uint64) (word, letters uint64) {
	l := v | 0x20*ones // A-Z to a-z; nothing else becomes a letter
	letters = (l + (0x80-'a')*ones) &^ (l + (0x80-'z'-1)*ones) & highs
	digits := (v + (0x80-'0')*ones) &^ (v + (0x80-'9'-1)*ones) & highs
	return letters | digits, letters
}

// batch is how many words fill reads at a time.
const batch = 64

// token is one word as fill reports it.
type token struct {
	start, end int32
	f          features
}

// fill reads the next words into out, as many as there are up to its
// length, and returns how many it read: 0 at the end of the text. It
// reads a batch per call so that the loop over words is one function.
func (t *tokenizer) fill(out *[batch]token) int {
	text, i := t.text, t.i
	k := 0
	for k < len(out) {
		// Skip separators.
		for i+8 <= len(text) {
			v := binary.LittleEndian.Uint64(text[i:])
			if v&highs != 0 {
				break
			}
			if w, _ := asciiWordBytes(v); w != 0 {
				i += bits.TrailingZeros64(w) / 8
				goto found
			}
			i += 8
		}
		for i < len(text) {
			if c := byteClass[text[i]]; c != 0 && c != 4 {
				break
			}
			i++
		}
		if i >= len(text) {
			break
		}
	found:
		start := i
		{
			// The word, eight bytes at a time while they are ASCII.
			var h, stem uint64
			n := 0
			for {
				if i+8 > len(text) {
					break
				}
				v := binary.LittleEndian.Uint64(text[i:])
				if v&highs != 0 {
					break
				}
				w, letters := asciiWordBytes(v)
				c := bits.TrailingZeros64(^w&highs) / 8 // word bytes in this chunk
				if n < maxWordLen {
					chunk := v | letters>>2 // lower case
					if c < 8 {
						chunk &= 1<<(8*c) - 1
					}
					if n == 0 {
						stem = chunk
						if c > 5 {
							stem &= 1<<40 - 1
						}
					}
					n += c
					h = (h ^ chunk) * prime1
				} else if c < 8 {
					// Past maxWordLen: only the end is looked for.
					h *= prime1
				}
				if c < 8 {
					i += c
					out[k] = token{int32(start), int32(i), t.features(h, stem, n)}
					k++
					goto next
				}
				i += 8
			}
		}
		{
			h, stem, n, end := t.word(start)
			i = end
			out[k] = token{int32(start), int32(i), t.features(h, stem, n)}
			k++
		}
	next:
	}
	t.i = i
	return k
}

// features are a word's FeaturesPerWord indexes into the weight table.
type features struct{ word, pair, stem uint32 }

func (f features) array() [FeaturesPerWord]uint32 { return [...]uint32{f.word, f.pair, f.stem} }

// features turns a word's hash, stem and length into its features.
func (t *tokenizer) features(h, stem uint64, n int) features {
	const shift = 64 - Bits
	// One multiply: the top bits of a product depend on every bit of
	// the hash, and the top bits are what the features take.
	w := (h ^ uint64(n)) * prime3
	f := features{
		word: uint32(w >> shift),
		pair: uint32((t.prev*prime2 ^ w) * prime3 >> shift),
		stem: uint32((stem ^ prime2) * prime1 >> shift),
	}
	t.prev = w
	return f
}

// word reads the word at i byte by byte and returns its hash, stem, the
// bytes hashed and where it ends.
func (t *tokenizer) word(i int) (h, stem uint64, n, end int) {
	text := t.text
	var chunk uint64
	if byteClass[text[i]] == 3 {
		// A CJK-like rune: a word of its own.
		chunk = uint64(text[i])
		i++
		for sh := 8; i < len(text) && byteClass[text[i]] == 4; sh += 8 {
			if sh < 64 {
				chunk |= uint64(text[i]) << sh
			}
			i++
		}
		return chunk, chunk, 0, i
	}
	for i < len(text) {
		c := byteClass[text[i]]
		if c == 0 || c == 3 {
			break
		}
		if n < maxWordLen {
			chunk |= uint64(lower[text[i]]) << (8 * (n & 7))
			n++
			switch n {
			case 5:
				stem = chunk
			case 8, 16, 24, 32:
				h = (h ^ chunk) * prime1
				chunk = 0
			}
		}
		i++
	}
	if n < 5 {
		stem = chunk
	}
	return (h ^ chunk) * prime1, stem, n, i
}

// Words calls f for every word of text with its byte range and its
// features (indexes into the weight table).
func Words(text []byte, f func(start, end int, feats [FeaturesPerWord]uint32)) {
	t := tokenizer{text: text, prev: 0x51ED27}
	var buf [batch]token
	for {
		n := t.fill(&buf)
		if n == 0 {
			return
		}
		for _, w := range buf[:n] {
			f(int(w.start), int(w.end), w.f.array())
		}
	}
}

// Model is a trained layer.
type Model struct {
	// Bias and Scale turn a window's sum of int8 weights into a logit:
	// Bias + Scale*sum.
	Bias, Scale float32
	W           []int8
}

// magic begins a model file.
const magic = "STKLRv1\n"

// ErrModel is returned for a model file that is not one.
var ErrModel = errors.New("learned: not a model file")

// Marshal encodes m: magic, bits (uint32), bias, scale (float32), the
// weights.
func (m *Model) Marshal() []byte {
	b := make([]byte, 0, len(magic)+12+len(m.W))
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint32(b, Bits)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(m.Bias))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(m.Scale))
	for _, w := range m.W {
		b = append(b, byte(w))
	}
	return b
}

// Unmarshal decodes a model file.
func Unmarshal(b []byte) (*Model, error) {
	if len(b) < len(magic)+12 || string(b[:len(magic)]) != magic {
		return nil, ErrModel
	}
	b = b[len(magic):]
	if bits := binary.LittleEndian.Uint32(b); bits != Bits || len(b) != 12+1<<Bits {
		return nil, fmt.Errorf("%w: %d feature bits and %d bytes, want %d bits", ErrModel, bits, len(b), Bits)
	}
	m := &Model{
		Bias:  math.Float32frombits(binary.LittleEndian.Uint32(b[4:])),
		Scale: math.Float32frombits(binary.LittleEndian.Uint32(b[8:])),
		W:     make([]int8, 1<<Bits),
	}
	for i, c := range b[12:] {
		m.W[i] = int8(c)
	}
	return m, nil
}

// Verdict is the score of a text's highest-scoring window and where
// that window is.
type Verdict struct {
	Score      float64
	Start, End int
}

// Score returns the highest window score of text.
func (m *Model) Score(text []byte) Verdict {
	var ring [Window]int32
	var starts [Window]int32
	var sum int32
	best := int32(math.MinInt32)
	var bs, be, last int
	n := 0
	t := tokenizer{text: text, prev: 0x51ED27}
	var buf [batch]token
	for {
		got := t.fill(&buf)
		if got == 0 {
			break
		}
		for _, w := range buf[:got] {
			c := int32(m.W[w.f.word]) + int32(m.W[w.f.pair]) + int32(m.W[w.f.stem])
			k := n % Window
			sum += c - ring[k]
			ring[k] = c
			starts[k] = w.start
			n++
			if n >= Window && sum > best {
				best = sum
				bs, be = int(starts[n%Window]), int(w.end)
			}
			last = int(w.end)
		}
	}
	if n == 0 {
		return Verdict{}
	}
	if n < Window {
		// A text shorter than a window is one window.
		best, bs, be = sum, 0, last
	}
	return Verdict{Score: sigmoid(float64(m.Bias) + float64(m.Scale)*float64(best)), Start: bs, End: be}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
