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
// A long run of one repeated byte (padding, fill, indentation) is read
// only until the automaton settles: once the state is one that byte
// leads back to and that ends no word, the rest of the run can change
// neither the state nor what is found. API answers padded with one
// character are common, and the sidecar scans every answer.
func (m *Matcher) Scan(text []byte, hit func(word, end int)) {
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
		for b < len(t) && t[b] == c {
			b++
		}
		if b-a >= runMin {
			return a, b
		}
		k = max(k, b-stride) // the next candidate is past this run
	}
	return len(t), len(t)
}
