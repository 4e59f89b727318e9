// Package ahocorasick finds every occurrence of a fixed set of words in a
// text in one pass over it: an Aho-Corasick automaton compiled to a dense
// transition table, with an optional byte folding (case, look-alike
// digits) applied to the words and the text alike.
package ahocorasick

// Matcher is a compiled set of words. It is safe for concurrent use.
type Matcher struct {
	// class maps each (folded) byte to its column in next; 0 is every
	// byte no word uses.
	class  [256]uint8
	nclass int
	// next holds, per state and class, the next state premultiplied by
	// nclass, so the loop needs no multiplication.
	next []uint32
	// out lists, per state (premultiplied index / nclass), the words
	// ending there.
	out [][]int32
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
	m.next = make([]uint32, len(next))
	for i, s := range next {
		m.next[i] = uint32(s * nc)
	}
	m.out = make([][]int32, len(nodes))
	for s := range nodes {
		m.out[s] = nodes[s].out
	}
	return m
}

// Scan calls hit(word, end) for every occurrence of a word in text, in
// the order their ends appear (words ending at the same byte: longest
// first); word indexes the words given to New and end is the index just
// past the occurrence.
func (m *Matcher) Scan(text []byte, hit func(word, end int)) {
	var s uint32
	nc := uint32(m.nclass)
	for i, b := range text {
		s = m.next[s+uint32(m.class[b])]
		for _, w := range m.out[s/nc] {
			hit(int(w), i+1)
		}
	}
}
