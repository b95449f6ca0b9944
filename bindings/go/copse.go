// Package copse is the Go binding of copse, approximate nearest-neighbour search over static,
// memory-mapped index files in the lineage of Spotify's Annoy.
//
// It wraps the C API (copse.h, libcopse_c) through cgo and finds it with pkg-config:
//
//	PKG_CONFIG_PATH=<prefix>/lib/pkgconfig LD_LIBRARY_PATH=<prefix>/lib go test ./...
//
// Build an index with a Builder, or open a file with Load; query it with NnsByVector and
// NnsByItem (nearest first, Annoy's distances). Every call that can fail returns an error,
// a *Error carrying the C API's status code and message.
//
// Handles: a Builder, Index or Filter owns a C handle. Close frees it (a second Close does
// nothing); a finalizer frees a handle that is never closed, but closing explicitly returns the
// memory (and, for an Index, the file mapping) at a known time. An Index and a Filter may be
// used from any number of goroutines at once; Close must not run concurrently with other
// calls on the same value.
package copse

/*
#cgo pkg-config: copse
#include <stdlib.h>
#include "copse.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Status codes of the C API (an Error's Status).
const (
	StatusOK              = int(C.COPSE_STATUS_OK)
	StatusNullPointer     = int(C.COPSE_STATUS_NULL_POINTER)
	StatusInvalidHandle   = int(C.COPSE_STATUS_INVALID_HANDLE)
	StatusInvalidArgument = int(C.COPSE_STATUS_INVALID_ARGUMENT)
	StatusWrongDimensions = int(C.COPSE_STATUS_WRONG_DIMENSIONS)
	StatusNotFinite       = int(C.COPSE_STATUS_NOT_FINITE)
	StatusItemOutOfRange  = int(C.COPSE_STATUS_ITEM_OUT_OF_RANGE)
	StatusItemMissing     = int(C.COPSE_STATUS_ITEM_MISSING)
	StatusDuplicateLabel  = int(C.COPSE_STATUS_DUPLICATE_LABEL)
	StatusAlreadyBuilt    = int(C.COPSE_STATUS_ALREADY_BUILT)
	StatusWrongKind       = int(C.COPSE_STATUS_WRONG_KIND)
	StatusMismatch        = int(C.COPSE_STATUS_MISMATCH)
	StatusIO              = int(C.COPSE_STATUS_IO)
	StatusFormat          = int(C.COPSE_STATUS_FORMAT)
	StatusBuild           = int(C.COPSE_STATUS_BUILD)
	StatusQuery           = int(C.COPSE_STATUS_QUERY)
	StatusBufferTooSmall  = int(C.COPSE_STATUS_BUFFER_TOO_SMALL)
	StatusInternal        = int(C.COPSE_STATUS_INTERNAL)
	StatusOther           = int(C.COPSE_STATUS_OTHER)
)

// SearchKDefault, passed as searchK, gathers n times the number of trees candidates, as Annoy.
const SearchKDefault = int(C.COPSE_SEARCH_K_DEFAULT)

// Error is a failed call: the C API's status code (one of the Status constants) and its
// message.
type Error struct {
	Status  int
	Message string
}

// StatusName is the name of the error's status, e.g. "COPSE_STATUS_WRONG_DIMENSIONS".
func (e *Error) StatusName() string {
	return StatusName(e.Status)
}

// Error formats the error as "copse: <STATUS_NAME>: <message>".
func (e *Error) Error() string {
	return fmt.Sprintf("copse: %s: %s", e.StatusName(), e.Message)
}

// Is makes errors.Is(err, &copse.Error{Status: copse.StatusIO}) match any error of that
// status (a target with a message matches only the same message).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// StatusName is the name of a status code ("COPSE_STATUS_OK", ...), or
// "COPSE_STATUS_UNKNOWN".
func StatusName(status int) string {
	return C.GoString(C.copse_status_name(C.int32_t(status)))
}

// Version is the C library's version, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.copse_version())
}

// call runs one C call and turns its status into an error. The C library keeps the message of
// a failure per OS thread, so the goroutine stays on one thread from the call to the read of
// the message.
func call(f func() C.enum_CopseStatus) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	status := f()
	if status == C.COPSE_STATUS_OK {
		return nil
	}
	return &Error{Status: int(status), Message: C.GoString(C.copse_last_error())}
}

// closedError is the error of a call on a closed handle.
func closedError(what string) error {
	return &Error{Status: StatusInvalidHandle, Message: what + " is closed"}
}

// Metric is how distances are measured.
type Metric uint32

// The metrics.
const (
	// Angular is sqrt(2 - 2 cos), Annoy's "angular".
	Angular Metric = C.COPSE_METRIC_ANGULAR
	// Euclidean is the euclidean distance.
	Euclidean Metric = C.COPSE_METRIC_EUCLIDEAN
	// Manhattan is the L1 distance.
	Manhattan Metric = C.COPSE_METRIC_MANHATTAN
	// Dot is the inner product: larger is closer, and the distance reported is the product.
	Dot Metric = C.COPSE_METRIC_DOT
	// Hamming is the hamming distance over 0/1 vectors.
	Hamming Metric = C.COPSE_METRIC_HAMMING
)

// String is the metric's name as Annoy spells it ("angular", ...).
func (m Metric) String() string {
	switch m {
	case Angular:
		return "angular"
	case Euclidean:
		return "euclidean"
	case Manhattan:
		return "manhattan"
	case Dot:
		return "dot"
	case Hamming:
		return "hamming"
	}
	return fmt.Sprintf("Metric(%d)", uint32(m))
}

// Dtype is how an index stores item rows (Builder.SetDtype).
type Dtype uint32

// The row types.
const (
	// Float32 rows: 4 bytes a value (the default for every metric but hamming).
	Float32 Dtype = C.COPSE_DTYPE_FLOAT32
	// Float16 rows: IEEE half precision, half the bytes; values beyond 65504 are refused.
	Float16 Dtype = C.COPSE_DTYPE_FLOAT16
	// Bfloat16 rows: half the bytes, float32's range, 8 bits of precision.
	Bfloat16 Dtype = C.COPSE_DTYPE_BFLOAT16
	// Int8 rows: a byte a value and a float scale a row (angular keeps the direction only).
	Int8 Dtype = C.COPSE_DTYPE_INT8
	// Bits rows: packed bits, hamming's only type.
	Bits Dtype = C.COPSE_DTYPE_BITS
)

// String is the row type's name as numpy spells it ("float16", ...).
func (d Dtype) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Bfloat16:
		return "bfloat16"
	case Int8:
		return "int8"
	case Bits:
		return "bits"
	}
	return fmt.Sprintf("Dtype(%d)", uint32(d))
}

// floatPtr is a pointer to a slice's first float, or nil for an empty slice (the C API takes
// NULL with a length of 0). Go memory without Go pointers may be passed to C for the call.
func floatPtr(v []float32) *C.float {
	if len(v) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&v[0]))
}

// idPtr is floatPtr for ids.
func idPtr(ids []uint64) *C.uint64_t {
	if len(ids) == 0 {
		return nil
	}
	return (*C.uint64_t)(unsafe.Pointer(&ids[0]))
}

// sizePtr is floatPtr for counts.
func sizePtr(s []C.size_t) *C.size_t {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// size converts a non-negative int to size_t, or fails naming the argument.
func size(n int, what string) (C.size_t, error) {
	if n < 0 {
		return 0, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("%s is %d; it must be at least 0", what, n)}
	}
	return C.size_t(n), nil
}
