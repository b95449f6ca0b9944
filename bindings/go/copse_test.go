package copse_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	copse "github.com/copse-rs/copse/bindings/go"
)

// hits formats results as the fixture's expected.txt does: <id>/<float bits as 8 hex digits>.
func hits(ids []uint64, dists []float32) string {
	parts := make([]string, len(ids))
	for i := range ids {
		parts[i] = fmt.Sprintf("%d/%08x", ids[i], math.Float32bits(dists[i]))
	}
	return strings.Join(parts, " ")
}

// answers are the fixture's lines for one index (see xtask/src/c_api.rs), computed through the
// binding.
func answers(t *testing.T, name string, ix *copse.Index, queries [][]float32) []string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	metric, err := ix.Metric()
	must(err)
	graph := 0
	if ix.HasGraph() {
		graph = 1
	}
	out := []string{fmt.Sprintf("%s info: dims %d metric %d n_items %d len %d n_trees %d has_graph %d",
		name, ix.Dims(), metric, ix.NItems(), ix.Len(), ix.NTrees(), graph)}
	for q, v := range queries {
		ids, dists, err := ix.NnsByVector(v, 10, copse.SearchKDefault)
		must(err)
		out = append(out, fmt.Sprintf("%s vector %d: %s", name, q, hits(ids, dists)))
	}
	batchIDs, batchDists, err := ix.NnsByVectors(queries, 10, copse.SearchKDefault, 2)
	must(err)
	for q := range queries {
		out = append(out, fmt.Sprintf("%s batch %d: %s", name, q, hits(batchIDs[q], batchDists[q])))
	}
	all, err := ix.IDs()
	must(err)
	var allowed []uint64
	for _, id := range all {
		if id%7 == 1 {
			allowed = append(allowed, id)
		}
	}
	filter, err := ix.NewFilter(allowed)
	must(err)
	defer filter.Close()
	for q, v := range queries {
		ids, dists, err := ix.NnsByVectorFiltered(v, 10, copse.SearchKDefault, filter)
		must(err)
		out = append(out, fmt.Sprintf("%s filtered %d: %s", name, q, hits(ids, dists)))
	}
	for q, v := range queries {
		ids, dists, err := ix.NnsByVector(v, 10, 40)
		must(err)
		out = append(out, fmt.Sprintf("%s search_k %d: %s", name, q, hits(ids, dists)))
	}
	first := all[:20]
	for _, id := range first {
		ids, dists, err := ix.NnsByItem(id, 10, copse.SearchKDefault)
		must(err)
		out = append(out, fmt.Sprintf("%s item %d: %s", name, id, hits(ids, dists)))
	}
	for i := 0; i+1 < 10; i++ {
		d, err := ix.Distance(first[i], first[i+1])
		must(err)
		out = append(out, fmt.Sprintf("%s distance %d %d: %08x", name, first[i], first[i+1], math.Float32bits(d)))
	}
	for _, id := range first[:3] {
		v, err := ix.ItemVector(id)
		must(err)
		bits := make([]string, len(v))
		for i, x := range v {
			bits[i] = fmt.Sprintf("%08x", math.Float32bits(x))
		}
		out = append(out, fmt.Sprintf("%s item_vector %d: %s", name, id, strings.Join(bits, " ")))
	}
	for _, id := range first[:12] {
		label, err := ix.Label(id)
		must(err)
		has, err := ix.HasLabel(id)
		must(err)
		if has != (label != "") {
			panic(fmt.Sprintf("HasLabel(%d) = %v with label %q", id, has, label))
		}
		if label == "" {
			label = "-"
		}
		out = append(out, fmt.Sprintf("%s label %d: %s", name, id, label))
	}
	return out
}

// readQueries reads little-endian f32 rows of dims floats.
func readQueries(t *testing.T, path string, dims int) [][]float32 {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if dims == 0 || len(raw)%(4*dims) != 0 {
		t.Fatalf("%s: %d bytes is not rows of %d floats", path, len(raw), dims)
	}
	rows := make([][]float32, len(raw)/(4*dims))
	for r := range rows {
		rows[r] = make([]float32, dims)
		for i := range rows[r] {
			rows[r][i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(r*dims+i):]))
		}
	}
	return rows
}

// statusOf is err's status, failing the test if err is not a *copse.Error with a message.
func statusOf(t *testing.T, err error) int {
	t.Helper()
	var e *copse.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *copse.Error, got %v", err)
	}
	if e.Message == "" || !strings.HasPrefix(e.Error(), "copse: COPSE_STATUS_") {
		t.Fatalf("error without a message or in another format: %q", e.Error())
	}
	return e.Status
}

func TestFixture(t *testing.T) {
	dir := os.Getenv("COPSE_FIXTURE")
	if dir == "" {
		t.Fatal("COPSE_FIXTURE is not set: run `cargo xtask c-api --prepare` and point it at target/c-api/fixture")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.txt"))
	if err != nil {
		t.Fatal(err)
	}
	expected := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")

	// Every line of expected.txt, in its order, from the binding.
	var got []string
	var forest *copse.Index
	for _, name := range []string{"forest", "graph"} {
		ix, err := copse.Load(filepath.Join(dir, name+".copse"))
		if err != nil {
			t.Fatal(err)
		}
		defer ix.Close()
		if name == "forest" {
			forest = ix
		}
		queries := readQueries(t, filepath.Join(dir, "queries.f32"), ix.Dims())
		got = append(got, answers(t, name, ix, queries)...)
	}
	mismatches := 0
	for i := 0; i < len(expected) || i < len(got); i++ {
		var want, have string
		if i < len(expected) {
			want = expected[i]
		}
		if i < len(got) {
			have = got[i]
		}
		if want != have {
			mismatches++
			if mismatches <= 5 {
				t.Errorf("line %d:\n want %q\n got  %q", i+1, want, have)
			}
		}
	}
	if mismatches > 0 || len(got) < 2*(1+4*40+20+9+3+12) {
		t.Fatalf("%d of %d lines differ from expected.txt (%d lines made)", mismatches, len(expected), len(got))
	}

	// Labels both ways, on the forest (labelled items are those whose id is a multiple of 10).
	if id, found, err := forest.IDByLabel("item-10"); err != nil || !found || id != 10 {
		t.Fatalf("IDByLabel(item-10) = %d, %v, %v", id, found, err)
	}
	if _, found, err := forest.IDByLabel("no such label"); err != nil || found {
		t.Fatalf("IDByLabel(no such label) found %v, %v", found, err)
	}

	// Error paths.
	_, _, err = forest.NnsByVector([]float32{1, 2, 3}, 10, copse.SearchKDefault)
	if s := statusOf(t, err); s != copse.StatusWrongDimensions {
		t.Fatalf("3 floats into a %d-dimensional index: %v", forest.Dims(), err)
	}
	if !errors.Is(err, &copse.Error{Status: copse.StatusWrongDimensions}) {
		t.Fatalf("errors.Is does not match the status: %v", err)
	}
	_, err = copse.Load(filepath.Join(dir, "no-such-file.copse"))
	if s := statusOf(t, err); s != copse.StatusIO {
		t.Fatalf("missing file: %v", err)
	}
	_, _, err = forest.NnsByItem(2, 10, copse.SearchKDefault) // ids are 3i+1: 2 is a gap
	if s := statusOf(t, err); s != copse.StatusItemMissing {
		t.Fatalf("missing item: %v", err)
	}

	// float16 rows hold each value rounded to the nearest half: 1/3 -> 1365/4096.
	h, err := copse.NewBuilder(2, copse.Euclidean)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.SetDtype(copse.Float16); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, h.SetItemCodes(5)); s != copse.StatusInvalidArgument {
		t.Fatalf("SetItemCodes(5) gave status %d", s)
	}
	if err := h.SetItemCodes(4); err != nil {
		t.Fatal(err)
	}
	if err := h.AddItem(1, []float32{1.0 / 3.0, -2}); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, h.SetDtype(copse.Int8)); s != copse.StatusWrongKind {
		t.Fatalf("SetDtype after AddItem gave status %d", s)
	}
	if s := statusOf(t, h.AddItem(2, []float32{70000, 0})); s != copse.StatusBuild {
		t.Fatalf("70000 into float16 rows gave status %d", s)
	}
	half, err := h.Build(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := half.Dtype(); err != nil || d != copse.Float16 || d.String() != "float16" {
		t.Fatalf("dtype %v (%v)", d, err)
	}
	if bits, err := half.ItemCodeBits(); err != nil || bits != 4 {
		t.Fatalf("item code bits %d (%v)", bits, err)
	}
	if v, err := half.ItemVector(1); err != nil || v[0] != 1365.0/4096.0 || v[1] != -2 {
		t.Fatalf("stored %v (%v)", v, err)
	}
	half.Close()

	// A tiny index through the builder: every item's own vector finds itself at distance 0.
	b, err := copse.NewBuilder(3, copse.Euclidean)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.SetSeed(42); err != nil {
		t.Fatal(err)
	}
	const items = 12
	for i := uint64(0); i < items; i++ {
		f := float32(i)
		if err := b.AddItem(i, []float32{f, f * f, 1 - f}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetLabel(5, "five"); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, b.AddItem(99, []float32{1, 2})); s != copse.StatusWrongDimensions {
		t.Fatalf("builder: 2 floats into 3 dimensions gave status %d", s)
	}
	tiny, err := b.Build(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < items; i++ {
		v, err := tiny.ItemVector(i)
		if err != nil {
			t.Fatal(err)
		}
		ids, dists, err := tiny.NnsByVector(v, 3, copse.SearchKDefault)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 3 || ids[0] != i || dists[0] != 0 {
			t.Fatalf("nearest to item %d's own vector: %v at %v", i, ids, dists)
		}
	}
	saved := filepath.Join(t.TempDir(), "tiny.copse")
	if err := tiny.Save(saved); err != nil {
		t.Fatal(err)
	}
	tiny.Close()
	tiny.Close() // idempotent
	if _, _, err := tiny.NnsByItem(0, 1, copse.SearchKDefault); statusOf(t, err) != copse.StatusInvalidHandle {
		t.Fatalf("closed index: %v", err)
	}
	reopened, err := copse.Load(saved)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if label, err := reopened.Label(5); err != nil || label != "five" || reopened.Len() != items {
		t.Fatalf("reopened: label %q (%v), len %d", label, err, reopened.Len())
	}

	fmt.Printf("copse Go binding (library %s): %d fixture lines match expected.txt; error paths and a %d-item built index OK\n",
		copse.Version(), len(got), items)
}
