package copse

/*
#include <stdlib.h>
#include "copse.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Builder takes items and builds an Index (Annoy's add_item / build). Its calls are serialised
// by the C library, so it may be shared between goroutines.
type Builder struct {
	ptr  *C.CopseBuilder
	dims int
}

// GraphOptions are the settings of the graph an index may hold beside its trees (see
// DefaultGraphOptions).
type GraphOptions struct {
	// Degree is the most neighbours an item keeps (at most 255).
	Degree int
	// Candidates an item keeps while the graph is refined (at least Degree).
	Candidates int
	// Rounds is the most refinement rounds.
	Rounds int
	// Alpha is the diversity prune's alpha: 1 keeps the fewest edges, larger keeps more.
	Alpha float32
	// SearchBeam is the beam width of the search-and-prune pass (0: no such pass).
	SearchBeam int
}

// DefaultGraphOptions are the library's default graph settings.
func DefaultGraphOptions() GraphOptions {
	var o C.CopseGraphOptions
	// Cannot fail with a valid pointer; keep the zero value if it somehow does.
	_ = call(func() C.enum_CopseStatus { return C.copse_graph_options_default(&o) })
	return GraphOptions{
		Degree:     int(o.degree),
		Candidates: int(o.candidates),
		Rounds:     int(o.rounds),
		Alpha:      float32(o.alpha),
		SearchBeam: int(o.search_beam),
	}
}

// NewBuilder makes a builder of dims-dimensional vectors under metric.
func NewBuilder(dims int, metric Metric) (*Builder, error) {
	d, err := size(dims, "dims")
	if err != nil {
		return nil, err
	}
	var ptr *C.CopseBuilder
	if err := call(func() C.enum_CopseStatus { return C.copse_builder_new(d, C.uint32_t(metric), &ptr) }); err != nil {
		return nil, err
	}
	b := &Builder{ptr: ptr, dims: dims}
	runtime.SetFinalizer(b, (*Builder).Close)
	return b, nil
}

// Close frees the builder; indexes it built stay valid. A second Close does nothing.
func (b *Builder) Close() {
	if b.ptr == nil {
		return
	}
	ptr := b.ptr
	b.ptr = nil
	runtime.SetFinalizer(b, nil)
	C.copse_builder_free(ptr)
}

func (b *Builder) handle() (*C.CopseBuilder, error) {
	if b == nil || b.ptr == nil {
		return nil, closedError("builder")
	}
	return b.ptr, nil
}

// do is Index.do for a builder. Methods that check arguments in Go call handle before those
// checks, so that a closed builder is reported ahead of a bad argument.
func (b *Builder) do(f func(p *C.CopseBuilder) C.enum_CopseStatus) error {
	defer runtime.KeepAlive(b)
	p, err := b.handle()
	if err != nil {
		return err
	}
	return call(func() C.enum_CopseStatus { return f(p) })
}

// Dims is the dimension the builder was made with.
func (b *Builder) Dims() int { return b.dims }

// AddItem adds item id (any 64-bit value) with vector v (0/1 values for hamming); an id given
// twice keeps the last vector, as in Annoy.
func (b *Builder) AddItem(id uint64, v []float32) error {
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus {
		return C.copse_builder_add_item(p, C.uint64_t(id), floatPtr(v), C.size_t(len(v)))
	})
}

// AddItems adds ids[i] with vectors[i] for every i; every vector is checked before any is
// added, so a failed call adds nothing.
func (b *Builder) AddItems(ids []uint64, vectors [][]float32) error {
	if _, err := b.handle(); err != nil {
		return err
	}
	if len(ids) != len(vectors) {
		return &Error{Status: StatusInvalidArgument, Message: "AddItems needs one id per vector"}
	}
	flat, err := flatten(vectors, b.dims, fmt.Sprintf("the builder has %d dimensions", b.dims))
	if err != nil {
		return err
	}
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus {
		return C.copse_builder_add_items(p, idPtr(ids), floatPtr(flat), C.size_t(len(ids)), C.size_t(b.dims))
	})
}

// SetSeed sets the seed: the same seed and items give a byte-identical index whatever the
// thread count.
func (b *Builder) SetSeed(seed uint64) error {
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_set_seed(p, C.uint64_t(seed)) })
}

// SetDtype stores item rows as dtype, before any AddItem: Float16 and Bfloat16 halve the
// rows, Int8 quarters them. Vectors are rounded as they are added; the index searches and
// returns the stored values.
func (b *Builder) SetDtype(dtype Dtype) error {
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_set_dtype(p, C.uint32_t(dtype)) })
}

// SetItemCodes chooses, with Float16 or Bfloat16 rows (after SetDtype), the item codes
// candidates are scored from: 8 or 4 bits a value (4: a smaller file and half the bytes a
// candidate; the default from 256 dimensions up), or 0 for none (scored from the rows).
func (b *Builder) SetItemCodes(bits uint32) error {
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_set_item_codes(p, C.uint32_t(bits)) })
}

// SetLabel gives item id a label (unique in the index), saved in the file and found by
// Index.IDByLabel.
func (b *Builder) SetLabel(id uint64, label string) error {
	cl := C.CString(label)
	defer C.free(unsafe.Pointer(cl))
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_set_label(p, C.uint64_t(id), cl) })
}

// SetGraph makes the build add a graph beside the trees with the given settings (nil: trees
// only, the default).
func (b *Builder) SetGraph(options *GraphOptions) error {
	if options == nil {
		return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_set_graph(p, nil) })
	}
	_, err := b.handle()
	if err != nil {
		return err
	}
	o := C.CopseGraphOptions{alpha: C.float(options.Alpha)}
	for _, f := range []struct {
		v    int
		to   *C.size_t
		what string
	}{
		{options.Degree, &o.degree, "Degree"},
		{options.Candidates, &o.candidates, "Candidates"},
		{options.Rounds, &o.rounds, "Rounds"},
		{options.SearchBeam, &o.search_beam, "SearchBeam"},
	} {
		if *f.to, err = size(f.v, f.what); err != nil {
			return err
		}
	}
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_set_graph(p, &o) })
}

// OnDiskBuild builds in the file at path instead of in memory (Annoy's on_disk_build).
func (b *Builder) OnDiskBuild(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_on_disk_build(p, cp) })
}

// Len is the number of items added so far.
func (b *Builder) Len() (uint64, error) {
	var n C.uint64_t
	err := b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_len(p, &n) })
	return uint64(n), err
}

// Build builds nTrees trees (at least 1), and the graph if one was asked for, on nThreads
// threads (0: one per core). The builder then refuses new items until Unbuild.
func (b *Builder) Build(nTrees, nThreads int) (*Index, error) {
	if _, err := b.handle(); err != nil {
		return nil, err
	}
	t, err := size(nTrees, "nTrees")
	if err != nil {
		return nil, err
	}
	th, err := size(nThreads, "nThreads")
	if err != nil {
		return nil, err
	}
	var ptr *C.CopseIndex
	if err := b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_build(p, t, th, &ptr) }); err != nil {
		return nil, err
	}
	return newIndex(ptr), nil
}

// Unbuild lets a built builder take items and build again; its items are kept.
func (b *Builder) Unbuild() error {
	return b.do(func(p *C.CopseBuilder) C.enum_CopseStatus { return C.copse_builder_unbuild(p) })
}
