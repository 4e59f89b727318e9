// Package injection scores text for prompt injection: instructions aimed
// at the model that reads the text rather than at the person who asked
// for it. The detector prompt_injection (package detect) is a thin
// adapter over Scan.
//
// # How a scan works
//
// Scan normalizes the content into views: the text itself (NFKC,
// homoglyphs folded, invisible controls dropped), the visible and the
// hidden text of its markup, its JSON string escapes decoded, its base64,
// hex and percent encodings decoded (two levels deep), Unicode tag
// characters, letters padded with separators ("i.g.n.o.r.e"). The
// scanner reads each view plainly and as leetspeak, ROT13 and reversed.
// An Aho-Corasick automaton (detect/internal/ahocorasick) finds the
// catalogue's triggers in one pass; only around a trigger does a
// pattern's prefilter, then its expression, run. The weights w of the
// distinct patterns found combine as 1 - prod(1 - w); a match found only
// in a decoded, hidden or disguised view weighs more, a quoted one less.
// The scan stops once the score is critical.
//
// # Budget
//
// A scan of 64 KiB (the default window) of plain text, JSON with escapes
// or malicious content costs no more than reading the same 64 KiB
// sixteen times a byte at a time through a table, the simplest scanner
// there is: BenchmarkBudget runs that calibration beside the scans, and
// .ci/run fails when a case's best run costs more than the calibration's
// best run in the same attempt. The budget is a ratio because a shared
// machine's speed varies with its host's load, so a fixed duration would
// pass or fail with the neighbours; on a 2-core EPYC machine the
// calibration takes about 1.3 ms and the scans 0.5 to 0.9 ms. The
// optimizations that remain (the trigger automaton, the prefilters,
// views limited to the regions where they differ from the text, searches
// that read eight bytes or one in sixteen at a time) are what keeps the
// scan within that budget; the searches that read several bytes at a
// time each have a byte-by-byte twin in the tests that they must agree
// with. Markup-heavy HTML costs about three times the budget.
//
// # Adding a pattern
//
//  1. Add an entry to catalogue (patterns.go): a Name in snake_case, a
//     Category, a Weight (0.25 for a hint, 0.75 for an unmistakable
//     order), Triggers (lower-case literals every match contains, as
//     short and as rare as the pattern allows: "exfiltrat", not "the"),
//     Before (0 when every match begins with a trigger) and the Expr, in
//     lower case, built from the shared word lists (alt) where it reads
//     one of them. After, Need and NeedWithin are optional: add them
//     only if the benchmark asks for them.
//  2. Give it Examples it must find and NonExamples it must not, from
//     the phrasing of real attacks and of the benign text closest to it;
//     go test -run TestCatalogueExamples checks them.
//  3. Run the corpus test (go test -v -run TestCorpus): recall on every
//     encoded category stays at 0.9 or more, false positives at 2% or
//     less. Tune on the development half only, never on the held-out
//     files (*-holdout.jsonl). Add labelled samples with
//     testdata/corpus/gen.go when the pattern covers a new kind of attack.
//  4. Run the budget benchmark (go test -run '^$' -bench Budget):
//     frequent triggers make every scan slower. If the pattern has a
//     hand-written prefilter (prefilters), TestPrefilters checks that it
//     passes every window the expression matches.
package injection
