//go:build linux

package audit

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// mappedRSS is the resident size of this process's mappings of path, from
// /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[len(fields)-1] == path
			continue
		}
		if in && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// Every releaseEvery records the writer drops the file's map from the
// resident set; the records stay readable and the chain verifies. One
// record per commit, as under moderate load, makes every commit rewrite
// the tail pages somewhere new, so without the release the map's RSS
// grows with the file.
func TestReleaseMappedKeepsRSSDown(t *testing.T) {
	withJournal(t, walSize, walApplyEvery, 1) // every record into the file at once
	l, path := openTest(t, Options{})
	const every = 256
	l.releaseEvery = every
	ctx := context.Background()
	appendN(t, l, every-1, "a")
	before := mappedRSS(t, path)
	appendN(t, l, 1, "a") // crosses the threshold
	after := mappedRSS(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if before < st.Size()/4 {
		t.Skipf("map RSS %d of a %d-byte file before release: pages not touched on this system", before, st.Size())
	}
	if after > before/4 {
		t.Fatalf("map RSS %d bytes after release, %d before, file %d bytes", after, before, st.Size())
	}
	rep, err := l.Verify(ctx, nil)
	if err != nil || rep.Records != every {
		t.Fatalf("verify after release: %+v, %v", rep, err)
	}
}
