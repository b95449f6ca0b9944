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

// Index is an open index: memory-mapped from a file, copied from bytes, or just built. Any
// number of goroutines may query one index at once.
type Index struct {
	ptr *C.CopseIndex
}

func newIndex(ptr *C.CopseIndex) *Index {
	ix := &Index{ptr: ptr}
	runtime.SetFinalizer(ix, (*Index).Close)
	return ix
}

// Load memory-maps the copse index file at path. Opening checks the header and costs the same
// for any size. A missing file is a StatusIO error; a truncated, corrupt or foreign one is
// StatusFormat.
func Load(path string) (*Index, error) {
	return load(path, false)
}

// LoadPopulate is Load, reading every page in now (Annoy's prefault).
func LoadPopulate(path string) (*Index, error) {
	return load(path, true)
}

func load(path string, populate bool) (*Index, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var ptr *C.CopseIndex
	if err := call(func() C.enum_CopseStatus { return C.copse_index_load(cp, C.bool(populate), &ptr) }); err != nil {
		return nil, err
	}
	return newIndex(ptr), nil
}

// LoadAnnoy memory-maps an index file written by Annoy, which has no header: give the
// dimensions and metric it was built with.
func LoadAnnoy(path string, dims int, metric Metric) (*Index, error) {
	d, err := size(dims, "dims")
	if err != nil {
		return nil, err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var ptr *C.CopseIndex
	if err := call(func() C.enum_CopseStatus {
		return C.copse_index_load_annoy(cp, d, C.uint32_t(metric), false, &ptr)
	}); err != nil {
		return nil, err
	}
	return newIndex(ptr), nil
}

// FromBytes opens an index from a copse file's contents, which are copied.
func FromBytes(b []byte) (*Index, error) {
	var p *C.uint8_t
	if len(b) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&b[0]))
	}
	var ptr *C.CopseIndex
	if err := call(func() C.enum_CopseStatus { return C.copse_index_from_bytes(p, C.size_t(len(b)), &ptr) }); err != nil {
		return nil, err
	}
	return newIndex(ptr), nil
}

// Close frees the index and unmaps its file. A second Close does nothing.
func (ix *Index) Close() {
	if ix.ptr == nil {
		return
	}
	ptr := ix.ptr
	ix.ptr = nil
	runtime.SetFinalizer(ix, nil)
	C.copse_index_free(ptr)
}

func (ix *Index) handle() (*C.CopseIndex, error) {
	if ix == nil || ix.ptr == nil {
		return nil, closedError("index")
	}
	return ix.ptr, nil
}

// do runs one C call on the index's handle through call, keeping the index alive until it
// returns; a closed index fails with closedError and f does not run.
func (ix *Index) do(f func(p *C.CopseIndex) C.enum_CopseStatus) error {
	defer runtime.KeepAlive(ix)
	p, err := ix.handle()
	if err != nil {
		return err
	}
	return call(func() C.enum_CopseStatus { return f(p) })
}

// Save writes the index to path, replacing any file there only once the new one is complete.
func (ix *Index) Save(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_save(p, cp) })
}

// Dims is the dimension of the index's vectors (0 once closed).
func (ix *Index) Dims() int {
	var d C.size_t
	if ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_dims(p, &d) }) != nil {
		return 0
	}
	return int(d)
}

// Metric is the index's metric.
func (ix *Index) Metric() (Metric, error) {
	var m C.uint32_t
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_metric(p, &m) })
	return Metric(m), err
}

// Dtype is how the index stores its rows.
func (ix *Index) Dtype() (Dtype, error) {
	var d C.uint32_t
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_dtype(p, &d) })
	return Dtype(d), err
}

// ItemCodeBits is the width of the item codes the index scores candidates from (8 or 4; 0:
// from the rows).
func (ix *Index) ItemCodeBits() (uint32, error) {
	var bits C.uint32_t
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_item_code_bits(p, &bits) })
	return uint32(bits), err
}

// NItems is the largest id plus one (Annoy's get_n_items; 0 once closed).
func (ix *Index) NItems() uint64 {
	var n C.uint64_t
	if ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_n_items(p, &n) }) != nil {
		return 0
	}
	return uint64(n)
}

// Len is the number of items (fewer than NItems when ids have gaps; 0 once closed).
func (ix *Index) Len() uint64 {
	var n C.uint64_t
	if ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_len(p, &n) }) != nil {
		return 0
	}
	return uint64(n)
}

// NTrees is the number of trees (0 once closed).
func (ix *Index) NTrees() int {
	var n C.size_t
	if ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_n_trees(p, &n) }) != nil {
		return 0
	}
	return int(n)
}

// HasGraph tells whether the index holds a graph (searched instead of the trees).
func (ix *Index) HasGraph() bool {
	var g C.bool
	if ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_has_graph(p, &g) }) != nil {
		return false
	}
	return bool(g)
}

// Contains tells whether id is an item of the index.
func (ix *Index) Contains(id uint64) bool {
	var c C.bool
	if ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_contains(p, C.uint64_t(id), &c) }) != nil {
		return false
	}
	return bool(c)
}

// Verify checks every checksum of the file (reading all of it); a StatusFormat error names the
// damaged part.
func (ix *Index) Verify() error {
	return ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_verify(p) })
}

// NnsByVector finds the n items nearest to v, nearest first, with their distances. searchK is
// the number of candidates to gather (SearchKDefault: n times the number of trees). Fewer than
// n results come back when the index has fewer items.
func (ix *Index) NnsByVector(v []float32, n int, searchK int) (ids []uint64, dists []float32, err error) {
	return ix.NnsByVectorFiltered(v, n, searchK, nil)
}

// NnsByVectorFiltered is NnsByVector among the items filter allows (nil: all).
func (ix *Index) NnsByVectorFiltered(v []float32, n int, searchK int, filter *Filter) (ids []uint64, dists []float32, err error) {
	defer runtime.KeepAlive(filter)
	fp, cn, err := ix.searchArgs(n, filter)
	if err != nil {
		return nil, nil, err
	}
	ids = make([]uint64, n)
	dists = make([]float32, n)
	var found C.size_t
	err = ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_index_nns_by_vector(p, floatPtr(v), C.size_t(len(v)), cn, C.int64_t(searchK), fp,
			idPtr(ids), floatPtr(dists), &found)
	})
	if err != nil {
		return nil, nil, err
	}
	return ids[:found], dists[:found], nil
}

// NnsByItem finds the n items nearest to item id (itself first), as NnsByVector.
func (ix *Index) NnsByItem(id uint64, n int, searchK int) (ids []uint64, dists []float32, err error) {
	return ix.NnsByItemFiltered(id, n, searchK, nil)
}

// NnsByItemFiltered is NnsByItem among the items filter allows (nil: all).
func (ix *Index) NnsByItemFiltered(id uint64, n int, searchK int, filter *Filter) (ids []uint64, dists []float32, err error) {
	defer runtime.KeepAlive(filter)
	fp, cn, err := ix.searchArgs(n, filter)
	if err != nil {
		return nil, nil, err
	}
	ids = make([]uint64, n)
	dists = make([]float32, n)
	var found C.size_t
	err = ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_index_nns_by_item(p, C.uint64_t(id), cn, C.int64_t(searchK), fp,
			idPtr(ids), floatPtr(dists), &found)
	})
	if err != nil {
		return nil, nil, err
	}
	return ids[:found], dists[:found], nil
}

// NnsByVectors answers many queries at once on nThreads threads (0: one per core): ids[q] and
// dists[q] are what NnsByVector(vectors[q], n, searchK) gives. If any query fails, the call
// fails with the first failing query's error.
func (ix *Index) NnsByVectors(vectors [][]float32, n int, searchK int, nThreads int) (ids [][]uint64, dists [][]float32, err error) {
	return ix.NnsByVectorsFiltered(vectors, n, searchK, nThreads, nil)
}

// NnsByVectorsFiltered is NnsByVectors among the items filter allows (nil: all).
func (ix *Index) NnsByVectorsFiltered(vectors [][]float32, n int, searchK int, nThreads int, filter *Filter) (ids [][]uint64, dists [][]float32, err error) {
	defer runtime.KeepAlive(filter)
	fp, cn, err := ix.searchArgs(n, filter)
	if err != nil {
		return nil, nil, err
	}
	th, err := size(nThreads, "nThreads")
	if err != nil {
		return nil, nil, err
	}
	dims := 0
	if len(vectors) > 0 {
		dims = len(vectors[0])
	}
	flat, err := flatten(vectors, dims, fmt.Sprintf("vector 0 has %d", dims))
	if err != nil {
		return nil, nil, err
	}
	q := len(vectors)
	allIDs := make([]uint64, q*n)
	allDists := make([]float32, q*n)
	found := make([]C.size_t, q)
	err = ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_index_nns_by_vectors(p, floatPtr(flat), C.size_t(q), C.size_t(dims), cn,
			C.int64_t(searchK), fp, th, idPtr(allIDs), floatPtr(allDists), sizePtr(found))
	})
	if err != nil {
		return nil, nil, err
	}
	ids = make([][]uint64, q)
	dists = make([][]float32, q)
	for i := range vectors {
		row := allIDs[i*n : (i+1)*n : (i+1)*n]
		drow := allDists[i*n : (i+1)*n : (i+1)*n]
		ids[i], dists[i] = row[:found[i]], drow[:found[i]]
	}
	return ids, dists, nil
}

// searchArgs checks a search's index, filter and count, in that order, and gives the filter's
// handle (nil for no filter) and the count.
func (ix *Index) searchArgs(n int, filter *Filter) (*C.CopseFilter, C.size_t, error) {
	if _, err := ix.handle(); err != nil {
		return nil, 0, err
	}
	var fp *C.CopseFilter
	if filter != nil {
		var err error
		if fp, err = filter.handle(); err != nil {
			return nil, 0, err
		}
	}
	cn, err := size(n, "n")
	return fp, cn, err
}

// flatten lays rows of dims floats out one after another, failing if a row has another length
// (why dims is expected: the message's end).
func flatten(rows [][]float32, dims int, why string) ([]float32, error) {
	flat := make([]float32, 0, len(rows)*dims)
	for i, r := range rows {
		if len(r) != dims {
			return nil, &Error{
				Status:  StatusWrongDimensions,
				Message: fmt.Sprintf("vector %d has %d floats; %s", i, len(r), why),
			}
		}
		flat = append(flat, r...)
	}
	return flat, nil
}

// ItemVector is the vector of item id.
func (ix *Index) ItemVector(id uint64) ([]float32, error) {
	v := make([]float32, ix.Dims())
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_index_item_vector(p, C.uint64_t(id), floatPtr(v), C.size_t(len(v)))
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Distance is the distance between items a and b, in Annoy's convention for the metric.
func (ix *Index) Distance(a, b uint64) (float32, error) {
	var d C.float
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_index_distance(p, C.uint64_t(a), C.uint64_t(b), &d)
	})
	return float32(d), err
}

// Label is item id's label, "" if it has none (HasLabel tells an empty label from none).
func (ix *Index) Label(id uint64) (string, error) {
	buf := make([]byte, 64)
	for {
		var length C.size_t
		err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
			return C.copse_index_label(p, C.uint64_t(id), (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &length)
		})
		if e, ok := err.(*Error); ok && e.Status == StatusBufferTooSmall && int(length) >= len(buf) {
			buf = make([]byte, int(length)+1)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:length]), nil
	}
}

// HasLabel tells whether item id has a label (an empty one counts), which Label's "" leaves
// open.
func (ix *Index) HasLabel(id uint64) (bool, error) {
	var out C.bool
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_has_label(p, C.uint64_t(id), &out) })
	return bool(out), err
}

// IDByLabel is the id of the item labelled label, and whether there is one.
func (ix *Index) IDByLabel(label string) (id uint64, found bool, err error) {
	cl := C.CString(label)
	defer C.free(unsafe.Pointer(cl))
	var cid C.uint64_t
	var cf C.bool
	err = ix.do(func(p *C.CopseIndex) C.enum_CopseStatus { return C.copse_index_id_by_label(p, cl, &cid, &cf) })
	if err != nil || !bool(cf) {
		return 0, false, err
	}
	return uint64(cid), true, nil
}

// IDs are the ids of all items, ascending.
func (ix *Index) IDs() ([]uint64, error) {
	ids := make([]uint64, ix.Len())
	var count C.uint64_t
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_index_ids(p, idPtr(ids), C.size_t(len(ids)), &count)
	})
	if err != nil {
		return nil, err
	}
	return ids[:count], nil
}

// Filter is an allow-list of items of one index, for that index's filtered searches. It is
// immutable: any number of goroutines may use one at once.
type Filter struct {
	ptr *C.CopseFilter
}

// NewFilter makes an allow-list of the index's items from ids (ids that are not items are left
// out). It is refused by any other index.
func (ix *Index) NewFilter(ids []uint64) (*Filter, error) {
	var ptr *C.CopseFilter
	err := ix.do(func(p *C.CopseIndex) C.enum_CopseStatus {
		return C.copse_filter_new(p, idPtr(ids), C.size_t(len(ids)), &ptr)
	})
	if err != nil {
		return nil, err
	}
	f := &Filter{ptr: ptr}
	runtime.SetFinalizer(f, (*Filter).Close)
	return f, nil
}

func (f *Filter) handle() (*C.CopseFilter, error) {
	if f == nil || f.ptr == nil {
		return nil, closedError("filter")
	}
	return f.ptr, nil
}

// do is Index.do for a filter.
func (f *Filter) do(fn func(p *C.CopseFilter) C.enum_CopseStatus) error {
	defer runtime.KeepAlive(f)
	p, err := f.handle()
	if err != nil {
		return err
	}
	return call(func() C.enum_CopseStatus { return fn(p) })
}

// Len is the number of items the filter allows (0 once closed).
func (f *Filter) Len() int {
	var n C.size_t
	if f.do(func(p *C.CopseFilter) C.enum_CopseStatus { return C.copse_filter_len(p, &n) }) != nil {
		return 0
	}
	return int(n)
}

// Close frees the filter. A second Close does nothing.
func (f *Filter) Close() {
	if f.ptr == nil {
		return
	}
	ptr := f.ptr
	f.ptr = nil
	runtime.SetFinalizer(f, nil)
	C.copse_filter_free(ptr)
}
