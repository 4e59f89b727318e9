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
)

// Bits is the size of the hashed feature table, as a power of two.
const Bits = 18

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
)

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb93fe53a1f4d
	h ^= h >> 33
	return h
}

// Words calls f for every word of text with its byte range and its
// features (indexes into the weight table).
func Words(text []byte, f func(start, end int, feats [FeaturesPerWord]uint32)) {
	const mask = 1<<Bits - 1
	var prev uint64 = 0x51ED27
	i := 0
	for i < len(text) {
		c := byteClass[text[i]]
		if c == 0 || c == 4 {
			i++
			continue
		}
		start := i
		h := uint64(14695981039346656037)
		var stem uint64
		n := 0
		if c == 3 {
			// A CJK-like rune: a word of its own.
			h = (h ^ uint64(text[i])) * 1099511628211
			i++
			for i < len(text) && byteClass[text[i]] == 4 {
				h = (h ^ uint64(text[i])) * 1099511628211
				i++
			}
			stem = h
		} else {
			for i < len(text) {
				c := byteClass[text[i]]
				if c == 0 || c == 3 {
					break
				}
				if n < maxWordLen {
					h = (h ^ uint64(lower[text[i]])) * 1099511628211
					n++
					if n == 5 {
						stem = h
					}
				}
				i++
			}
			if n < 5 {
				stem = h
			}
		}
		w := mix(h)
		var feats [FeaturesPerWord]uint32
		feats[0] = uint32(w) & mask
		feats[1] = uint32(mix(prev*prime1^w)) & mask
		feats[2] = uint32(mix(stem^prime2)) & mask
		prev = w
		f(start, i, feats)
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
	Words(text, func(start, end int, feats [FeaturesPerWord]uint32) {
		var c int32
		for _, f := range feats {
			c += int32(m.W[f])
		}
		k := n % Window
		sum += c - ring[k]
		ring[k] = c
		starts[k] = int32(start)
		n++
		if n >= Window && sum > best {
			best = sum
			bs, be = int(starts[n%Window]), end
		}
		last = end
	})
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
