// Package ahocorasick finds every occurrence of a fixed set of words in a
// text in one pass over it: an Aho-Corasick automaton compiled to a dense
// transition table, with an optional byte folding (case, look-alike
// digits) applied to the words and the text alike.
package ahocorasick

import (
	"bytes"
	"sync"
)

// Matcher is a compiled set of words. It is safe for concurrent use.
type Matcher struct {
	// class maps each (folded) byte to its column in next; 0 is every
	// byte no word uses.
	class  [256]uint8
	nclass int
	// next holds, per state and class, the next state premultiplied by
	// nclass, so the loop needs no multiplication.
	next []uint32
	// States are numbered so that those where words end come last, from
	// firstOut (premultiplied) on: the loop tells them by one comparison.
	firstOut uint32
	// out lists the words ending at state firstOut/nclass + i.
	out [][]int32
	// maxLen is the length of the longest word: the state after any
	// text depends on its last maxLen bytes alone.
	maxLen int
}

// New compiles words. fold, when not nil, maps each byte of the words and
// of every text scanned before comparison; nil compares bytes as they are.
func New(words []string, fold func(byte) byte) *Matcher {
	if fold == nil {
		fold = func(b byte) byte { return b }
	}
	m := &Matcher{}
	// Classes: one per distinct folded byte used by a word.
	for _, w := range words {
		m.maxLen = max(m.maxLen, len(w))
		for i := 0; i < len(w); i++ {
			if f := fold(w[i]); m.class[f] == 0 {
				m.nclass++
				m.class[f] = uint8(m.nclass)
			}
		}
	}
	m.nclass++
	for b := range 256 {
		m.class[b] = m.class[fold(byte(b))]
	}
	// The trie.
	type node struct {
		child map[uint8]int
		fail  int
		out   []int32
	}
	nodes := []node{{child: map[uint8]int{}}}
	for id, w := range words {
		s := 0
		for i := 0; i < len(w); i++ {
			c := m.class[w[i]]
			nx, ok := nodes[s].child[c]
			if !ok {
				nx = len(nodes)
				nodes = append(nodes, node{child: map[uint8]int{}})
				nodes[s].child[c] = nx
			}
			s = nx
		}
		nodes[s].out = append(nodes[s].out, int32(id))
	}
	// Fail links, breadth first, and the dense table.
	nc := m.nclass
	if uint64(len(nodes))*uint64(nc) >= 1<<32 {
		panic("ahocorasick: automaton too large")
	}
	next := make([]int, len(nodes)*nc)
	var queue []int
	for c := range nc {
		if nx, ok := nodes[0].child[uint8(c)]; ok {
			next[c] = nx
			queue = append(queue, nx)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		nodes[s].out = append(nodes[s].out, nodes[f].out...)
		for c := range nc {
			if nx, ok := nodes[s].child[uint8(c)]; ok {
				nodes[nx].fail = next[f*nc+c]
				next[s*nc+c] = nx
				queue = append(queue, nx)
			} else {
				next[s*nc+c] = next[f*nc+c]
			}
		}
	}
	// Renumber: states without words first (the root stays 0), then
	// the others.
	id := make([]int, len(nodes))
	k := 0
	for s := range nodes {
		if len(nodes[s].out) == 0 {
			id[s] = k
			k++
		}
	}
	m.firstOut = uint32(k * nc)
	for s := range nodes {
		if len(nodes[s].out) > 0 {
			id[s] = k
			k++
			m.out = append(m.out, nodes[s].out)
		}
	}
	m.next = make([]uint32, len(next))
	for s := range nodes {
		for c := range nc {
			m.next[id[s]*nc+c] = uint32(id[next[s*nc+c]] * nc)
		}
	}
	return m
}

// Scan calls hit(word, end) for every occurrence of a word in text, in
// the order their ends appear (words ending at the same byte: longest
// first); word indexes the words given to New and end is the index just
// past the occurrence.
//
// A text shorter than laneMin is read in one pass, in which a long run
// of one repeated byte (padding, fill, indentation) is read
// only until the automaton settles: once the state is one that byte
// leads back to and that ends no word, the rest of the run can change
// neither the state nor what is found. API answers padded with one
// character are common, and the sidecar scans every answer.
func (m *Matcher) Scan(text []byte, hit func(word, end int)) {
	if len(text) >= laneMin {
		m.scanLanes(text, hit)
		return
	}
	var s uint32
	for i := 0; i < len(text); {
		a, b := repeatRun(text, i)
		// Up to the run and its first maxLen bytes, byte by byte; past
		// them the state has settled, if it ever does.
		stop := min(b, a+m.maxLen)
		s = m.scan(text, i, stop, s, hit)
		i = stop
		if i == len(text) {
			break
		}
		if s < m.firstOut && m.next[s+uint32(m.class[text[a]])] == s {
			i = b
			continue
		}
		s = m.scan(text, i, b, s, hit)
		i = b
	}
}

// scan runs the automaton over text[from:to] from state s and returns the
// state it ends in.
func (m *Matcher) scan(text []byte, from, to int, s uint32, hit func(word, end int)) uint32 {
	next, class, fo, nc := m.next, &m.class, m.firstOut, uint32(m.nclass)
	for i := from; i < to; i++ {
		s = next[s+uint32(class[text[i]])]
		if s >= fo {
			for _, w := range m.out[(s-fo)/nc] {
				hit(int(w), i+1)
			}
		}
	}
	return s
}

// lanes is how many parts of a long text Scan reads at once, and laneMin
// the shortest text it splits: below it, the parts' overlap costs more
// than reading them at once saves.
const (
	lanes   = 4
	laneMin = 2048
)

// scanLanes is Scan for long texts. One lookup per byte in a table far
// larger than the processor's first-level cache is slow because each
// lookup waits for the one before; scanLanes cuts the text in four parts
// and advances one state per part in the same loop, so that the lookups
// of different parts overlap. Each part but the first starts maxLen bytes
// early, which puts its state where a scan from the start would have it,
// and reports only what ends inside the part. BenchmarkGridResponseJSON4KiB
// (package detect) takes half as long again without it.
func (m *Matcher) scanLanes(text []byte, hit func(word, end int)) {
	part := len(text) / lanes
	var lo, from [lanes + 1]int // lane l reports ends in (lo[l], lo[l+1]] and reads from from[l]
	for l := range lanes {
		lo[l] = l * part
		from[l] = max(0, lo[l]-m.maxLen)
	}
	lo[lanes] = len(text)
	// What each lane finds is buffered, and reported in order at the end;
	// the buffers are reused, so that a scan allocates nothing.
	buf := laneBufs.Get().(*[lanes][][2]int)
	defer laneBufs.Put(buf)
	for l := range buf {
		buf[l] = buf[l][:0]
	}
	next, class, fo, nc := m.next, &m.class, m.firstOut, uint32(m.nclass)
	emit := func(l int, s uint32, end int) {
		if l > 0 && end <= lo[l] {
			return // in the lane's lead-in: the lane before reports it
		}
		for _, w := range m.out[(s-fo)/nc] {
			buf[l] = append(buf[l], [2]int{int(w), end})
		}
	}
	var s0, s1, s2, s3 uint32
	t0, t1, t2, t3 := text[from[0]:][:part], text[from[1]:][:part], text[from[2]:][:part], text[from[3]:][:part]
	for i := range part {
		s0 = next[s0+uint32(class[t0[i]])]
		s1 = next[s1+uint32(class[t1[i]])]
		s2 = next[s2+uint32(class[t2[i]])]
		s3 = next[s3+uint32(class[t3[i]])]
		if max(s0, s1, s2, s3) >= fo {
			for l, s := range [lanes]uint32{s0, s1, s2, s3} {
				if s >= fo {
					emit(l, s, from[l]+i+1)
				}
			}
		}
	}
	// Each lane finishes its part alone.
	for l, s := range [lanes]uint32{s0, s1, s2, s3} {
		for i := from[l] + part; i < lo[l+1]; i++ {
			s = next[s+uint32(class[text[i]])]
			if s >= fo {
				emit(l, s, i+1)
			}
		}
	}
	for l := range lanes {
		for _, h := range buf[l] {
			hit(h[0], h[1])
		}
	}
}

var laneBufs = sync.Pool{New: func() any { return new([lanes][][2]int) }}

// runMin is the shortest run of one byte Scan skips: shorter runs save
// less than looking for them costs.
const runMin = 64

// repeatRun returns the first maximal run [a, b) of at least runMin
// copies of one byte in t[from:], or a = b = len(t). Such a run holds two
// of the positions from, from+runMin/2, from+runMin, ...: only those are
// compared at first, which keeps the search from costing a pass over
// text without runs.
func repeatRun(t []byte, from int) (a, b int) {
	const stride = runMin / 2
	for k := from; k+stride < len(t); k += stride {
		c := t[k]
		if t[k+stride] != c {
			continue
		}
		a, b = k, k+1
		for a > from && t[a-1] == c {
			a--
		}
		// The run's end: whole copies of what is known of it compared
		// at once, doubling, then halving. Byte by byte, a long run (the
		// padding of a JSON body) cost as much as scanning it.
		for n := b - a; n > 0; {
			if b+n <= len(t) && bytes.Equal(t[b:b+n], t[a:a+n]) {
				b += n
				n *= 2
			} else {
				n /= 2
			}
		}
		if b-a >= runMin {
			return a, b
		}
		k = max(k, b-stride) // the next candidate is past this run
	}
	return len(t), len(t)
}
