//go:build linux

package main

import (
	"os"
	"regexp"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	smaps := []byte(`00400000-0103c000 r-xp 00000000 fe:00 10006799                           /usr/bin/stack
Size:              12528 kB
Rss:               10912 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
0103c000-01e6c000 r--p 00c3c000 fe:00 10006799                           /usr/bin/stack
Size:              14528 kB
Anonymous:             0 kB
01e6c000-01f02000 rw-p 01a6c000 fe:00 10006799                           /usr/bin/stack
Anonymous:           164 kB
02000000-02001000 r--p 01b00000 fe:00 10006799                           /usr/bin/stack
Anonymous:             4 kB
7f5418331000-7f541833c000 r--p 00000000 fe:00 123                        /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f5418400000-7f5418500000 rw-p 00000000 00:00 0 
Anonymous:          1024 kB
`)
	got := readOnlyMappings(smaps, "/usr/bin/stack")
	want := []mapping{{0x400000, 0x103c000}, {0x103c000, 0x1e6c000}}
	if len(got) != len(want) {
		t.Fatalf("mappings %x, want %x (the written r--p one, the data segment and libc left alone)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %x, want %x", i, got[i], want[i])
		}
	}
}

// TestReleaseStartupMemory releases this test binary's start-up pages and
// then runs code and reads data from them again: the pages come back from
// the page cache unchanged.
func TestReleaseStartupMemory(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip(err)
	}
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	if len(readOnlyMappings(raw, exe)) == 0 {
		t.Fatalf("no read-only mapping of %s found in /proc/self/smaps", exe)
	}
	before := regexp.MustCompile(`^[a-z]+\d+$`).String()
	releaseStartupMemory()
	re := regexp.MustCompile(`^[a-z]+\d+$`)
	if re.String() != before || !re.MatchString("stack42") || re.MatchString("42stack") {
		t.Fatal("code or data read back wrong after the release")
	}
	if code := run(t.Context(), []string{"--help"}, nil, discard{}, discard{}); code != 0 {
		t.Fatalf("stack --help after the release: exit %d", code)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
