/*
 * copse.hpp: a header-only C++17 wrapper over copse.h, the C API of copse (approximate
 * nearest-neighbour search over static, memory-mapped index files).
 *
 * The wrapper adds three things to the C API and nothing else:
 * - ownership: every C handle is owned by a move-only object whose destructor frees it, so no
 *   handle leaks when a call throws and none is freed twice;
 * - errors as exceptions: a failed call throws copse::Error with the C status and message;
 * - std::vector outputs, and Annoy's C++ method names (copse::AnnoyIndex mirrors Annoy's
 *   AnnoyIndex: one object that is first a builder, then an index).
 *
 * Thread safety is the C API's: the const methods of an AnnoyIndex (the queries) and a Filter
 * may be called from any number of threads at once; the non-const ones must not run
 * concurrently with any other call on the same object.
 *
 * Link with libcopse_c (pkg-config: copse).
 */

#ifndef COPSE_HPP
#define COPSE_HPP

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "copse.h"

/// The C++ API of copse.
namespace copse {

/// A failed copse call: `what()` is the library's message, `status()` says what kind of
/// failure it was, so callers can branch on the kind without parsing text.
class Error : public std::runtime_error {
public:
    /// An error of kind `status` with `message` (normally `copse_last_error()`'s).
    Error(CopseStatus status, const std::string& message)
        : std::runtime_error(message), status_(status) {}

    /// The C status of the failure (never COPSE_STATUS_OK).
    CopseStatus status() const noexcept { return status_; }

    /// The status's name, e.g. "COPSE_STATUS_IO", for messages and logs.
    const char* status_name() const noexcept {
        return copse_status_name(static_cast<int32_t>(status_));
    }

private:
    CopseStatus status_;
};

/// Implementation details; not part of the API.
namespace detail {

/// Throws the C call's failure as copse::Error, taking the message while it is still this
/// thread's last error.
inline void check(CopseStatus status) {
    if (status != COPSE_STATUS_OK) {
        throw Error(status, copse_last_error());
    }
}

/// Frees a builder handle (a unique_ptr deleter, so ownership is exception-safe).
struct BuilderFree {
    void operator()(CopseBuilder* builder) const noexcept { (void)copse_builder_free(builder); }
};

/// Frees an index handle.
struct IndexFree {
    void operator()(CopseIndex* index) const noexcept { (void)copse_index_free(index); }
};

/// Frees a filter handle.
struct FilterFree {
    void operator()(CopseFilter* filter) const noexcept { (void)copse_filter_free(filter); }
};

/// An owned builder handle.
using BuilderPtr = std::unique_ptr<CopseBuilder, BuilderFree>;
/// An owned index handle.
using IndexPtr = std::unique_ptr<CopseIndex, IndexFree>;
/// An owned filter handle.
using FilterPtr = std::unique_ptr<CopseFilter, FilterFree>;

/// Refuses strings that the C API would silently cut at an embedded NUL.
inline void check_no_nul(const std::string& text, const char* what) {
    if (text.find('\0') != std::string::npos) {
        throw Error(COPSE_STATUS_INVALID_ARGUMENT,
                    std::string(what) + " contains a NUL byte, which the C API cannot pass");
    }
}

/// Annoy's thread count (-1 or 0: one per core) as the C API's (0: one per core).
inline size_t threads_arg(int n_threads, const char* where) {
    if (n_threads < -1) {
        throw Error(COPSE_STATUS_INVALID_ARGUMENT,
                    std::string(where) + ": n_threads must be -1 (one per core) or at least 0, not " +
                        std::to_string(n_threads));
    }
    return n_threads <= 0 ? 0 : static_cast<size_t>(n_threads);
}

}  // namespace detail

/// The library's version, e.g. "0.1.0", to check at run time which library was linked.
inline std::string version() { return copse_version(); }

/// The distance an index measures; the values are the C API's COPSE_METRIC_* codes.
enum class Metric : uint32_t {
    /// sqrt(2 - 2 cos), Annoy's "angular": direction only, for embeddings.
    Angular = COPSE_METRIC_ANGULAR,
    /// Straight-line distance.
    Euclidean = COPSE_METRIC_EUCLIDEAN,
    /// Sum of absolute differences.
    Manhattan = COPSE_METRIC_MANHATTAN,
    /// Inner product (larger is closer; the distance reported is the product).
    Dot = COPSE_METRIC_DOT,
    /// Differing bits of 0/1 vectors.
    Hamming = COPSE_METRIC_HAMMING,
};

/// How an index stores item rows (AnnoyIndex::set_dtype).
enum class Dtype : uint32_t {
    /// 4 bytes a value (the default for every metric but hamming).
    Float32 = COPSE_DTYPE_FLOAT32,
    /// IEEE half precision: half the bytes; values beyond 65504 are refused.
    Float16 = COPSE_DTYPE_FLOAT16,
    /// bfloat16: half the bytes, float32's range, 8 bits of precision.
    Bfloat16 = COPSE_DTYPE_BFLOAT16,
    /// A byte a value and a float scale a row (angular keeps the direction only).
    Int8 = COPSE_DTYPE_INT8,
    /// Packed bits (hamming's only type).
    Bits = COPSE_DTYPE_BITS,
};

class AnnoyIndex;

/// An allow-list of items of one index, for filtered searches of that index only (another
/// index refuses it with COPSE_STATUS_WRONG_KIND). Made by AnnoyIndex::make_filter; move-only,
/// immutable, and usable from any number of threads at once. It does not keep the index alive.
class Filter {
public:
    /// Not copyable: the filter owns its C handle.
    Filter(const Filter&) = delete;
    /// Not copyable: the filter owns its C handle.
    Filter& operator=(const Filter&) = delete;
    /// Moves the filter; the moved-from one refuses every use with COPSE_STATUS_INVALID_HANDLE.
    Filter(Filter&&) noexcept = default;
    /// Moves the filter in, freeing the one held before.
    Filter& operator=(Filter&&) noexcept = default;
    /// Frees the filter.
    ~Filter() = default;

    /// How many items the filter allows (ids that were not items are not counted).
    size_t size() const {
        size_t n = 0;
        require("size");
        detail::check(copse_filter_len(handle_.get(), &n));
        return n;
    }

    /// The C handle, for calls this wrapper does not cover; still owned by this object.
    const CopseFilter* handle() const noexcept { return handle_.get(); }

private:
    friend class AnnoyIndex;

    explicit Filter(detail::FilterPtr handle) noexcept : handle_(std::move(handle)) {}

    /// Throws a clear error for a moved-from filter rather than the C API's "NULL handle".
    void require(const char* method) const {
        if (!handle_) {
            throw Error(COPSE_STATUS_INVALID_HANDLE,
                        std::string("copse::Filter::") + method + ": this filter was moved from");
        }
    }

    detail::FilterPtr handle_;
};

/// The answers of many queries at once (AnnoyIndex::get_nns_by_vectors): query `q`'s results
/// are `ids[q * n ..]` and `distances[q * n ..]`, of which the first `found[q]` are filled
/// (nearest first); the rest hold COPSE_NO_ITEM and NaN.
struct BatchResult {
    /// Result slots per query (the `n` asked for).
    size_t n = 0;
    /// n_queries x n ids, row-major.
    std::vector<uint64_t> ids;
    /// n_queries x n distances, row-major.
    std::vector<float> distances;
    /// How many results each query found (at most `n`).
    std::vector<size_t> found;

    /// The number of queries answered.
    size_t n_queries() const noexcept { return found.size(); }
    /// The ids query `q` found, nearest first.
    std::vector<uint64_t> ids_of(size_t q) const {
        const auto count = static_cast<std::ptrdiff_t>(found.at(q));
        const auto first = ids.begin() + static_cast<std::ptrdiff_t>(q * n);
        return std::vector<uint64_t>(first, first + count);
    }
    /// The distances of query `q`'s results, nearest first.
    std::vector<float> distances_of(size_t q) const {
        const auto count = static_cast<std::ptrdiff_t>(found.at(q));
        const auto first = distances.begin() + static_cast<std::ptrdiff_t>(q * n);
        return std::vector<float>(first, first + count);
    }
};

/// An index as in Annoy's C++ AnnoyIndex: one object that is first a builder (add_item, then
/// build) and then an index (get_nns_by_*), or that loads a saved index. Move-only; the
/// moved-from object throws COPSE_STATUS_INVALID_HANDLE on every call but the destructor.
///
/// States, and what calls in the wrong one throw:
/// - building (after construction, unbuild() or unload()): builder calls work; index calls
///   throw COPSE_STATUS_INVALID_HANDLE ("no index yet") since there is no index handle.
/// - built (after build()): index calls work; builder calls throw the C API's
///   COPSE_STATUS_ALREADY_BUILT until unbuild(), which keeps the items (as in Annoy).
/// - loaded (after load(), load_annoy(), from_bytes() or open()): index calls work; builder
///   calls and unbuild() throw COPSE_STATUS_ALREADY_BUILT until unload().
///
/// Ids are any 64-bit values (Annoy's are 0..n-1); get_n_items() is the largest id plus one
/// and size() the number of items, which differ when ids have gaps.
class AnnoyIndex {
public:
    /// A builder of `f`-dimensional vectors under `metric` (Annoy's constructor). Throws
    /// COPSE_STATUS_INVALID_ARGUMENT for a negative `f`, and what the C API says of the rest.
    explicit AnnoyIndex(int f, Metric metric = Metric::Angular)
        : builder_(new_builder(f, metric)), f_(f), metric_(metric) {}

    /// Opens the copse index file at `path` whatever its dimensions and metric (they become
    /// get_f() and metric()), for programs that do not know them beforehand. `prefault`
    /// reads every page in now (Annoy's prefault).
    static AnnoyIndex open(const std::string& path, bool prefault = false) {
        detail::check_no_nul(path, "path");
        CopseIndex* raw = nullptr;
        detail::check(copse_index_load(path.c_str(), prefault, &raw));
        return adopt(detail::IndexPtr(raw));
    }

    /// Opens an index from `len` bytes of a copse file's contents (copied: the caller may free
    /// them afterwards), whatever its dimensions and metric, as open() does for a file.
    static AnnoyIndex open_bytes(const void* data, size_t len) {
        CopseIndex* raw = nullptr;
        detail::check(copse_index_from_bytes(static_cast<const uint8_t*>(data), len, &raw));
        return adopt(detail::IndexPtr(raw));
    }

    /// Not copyable: the object owns its C handles (save() and open() make a second one).
    AnnoyIndex(const AnnoyIndex&) = delete;
    /// Not copyable: the object owns its C handles.
    AnnoyIndex& operator=(const AnnoyIndex&) = delete;
    /// Moves the builder and index; the moved-from object refuses every call.
    AnnoyIndex(AnnoyIndex&&) noexcept = default;
    /// Moves another object in, freeing this one's builder and index.
    AnnoyIndex& operator=(AnnoyIndex&&) noexcept = default;
    /// Frees the builder and the index (unmapping its file).
    ~AnnoyIndex() = default;

    // ---- Building ------------------------------------------------------------------------

    /// Adds item `item` with the get_f() floats at `w` (0/1 values for hamming), as Annoy's
    /// add_item. An id given twice keeps the last vector.
    void add_item(uint64_t item, const float* w) {
        detail::check(copse_builder_add_item(builder("add_item"), item, w, dims()));
    }

    /// Adds item `item` with vector `w`, whose length is checked (COPSE_STATUS_WRONG_DIMENSIONS).
    void add_item(uint64_t item, const std::vector<float>& w) {
        detail::check(copse_builder_add_item(builder("add_item"), item, w.data(), w.size()));
    }

    /// Adds `ids.size()` items with the row-major vectors `rows` (ids.size() x get_f() floats).
    /// All rows are checked before any is added, so a failed call adds nothing.
    void add_items(const std::vector<uint64_t>& ids, const std::vector<float>& rows) {
        CopseBuilder* b = builder("add_items");
        if (rows.size() != ids.size() * dims()) {
            throw Error(COPSE_STATUS_WRONG_DIMENSIONS,
                        "copse::AnnoyIndex::add_items: " + std::to_string(ids.size()) +
                            " ids need " + std::to_string(ids.size() * dims()) +
                            " floats (" + std::to_string(f_) + " per row), but rows holds " +
                            std::to_string(rows.size()));
        }
        detail::check(copse_builder_add_items(b, ids.data(), rows.data(), ids.size(), dims()));
    }

    /// Labels added item `item` with `label` (UTF-8, unique in the index): saved in the file
    /// and found again by id_by_label(), so callers need no side table of names.
    void set_label(uint64_t item, const std::string& label) {
        CopseBuilder* b = builder("set_label");
        detail::check_no_nul(label, "label");
        detail::check(copse_builder_set_label(b, item, label.c_str()));
    }

    /// Sets the build's seed: the same seed and items give a byte-identical index whatever the
    /// thread count (Annoy's set_seed).
    void set_seed(uint64_t seed) { detail::check(copse_builder_set_seed(builder("set_seed"), seed)); }

    /// Stores item rows as `dtype`, before any add_item: Float16 and Bfloat16 halve the rows,
    /// Int8 quarters them. Vectors are rounded as they are added; the index searches and
    /// returns (get_item) the stored values.
    void set_dtype(Dtype dtype) {
        detail::check(copse_builder_set_dtype(builder("set_dtype"), static_cast<uint32_t>(dtype)));
    }

    /// With Float16 or Bfloat16 rows (after set_dtype), the item codes candidates are scored
    /// from: 8 or 4 bits a value (4: a smaller file and half the bytes a candidate; the default
    /// from 256 dimensions up), or 0 for none (scored from the rows: smaller, slower).
    void set_item_codes(uint32_t bits) {
        detail::check(copse_builder_set_item_codes(builder("set_item_codes"), bits));
    }

    /// The default graph settings, to adjust before set_graph().
    static CopseGraphOptions graph_options_default() {
        CopseGraphOptions options{};
        detail::check(copse_graph_options_default(&options));
        return options;
    }

    /// Makes build() add a graph beside the trees: far faster answers at high recall on dense
    /// embeddings, for a longer build.
    void set_graph(const CopseGraphOptions& options) {
        detail::check(copse_builder_set_graph(builder("set_graph"), &options));
    }

    /// Undoes set_graph(): build() makes trees only (the default).
    void clear_graph() { detail::check(copse_builder_set_graph(builder("clear_graph"), nullptr)); }

    /// Builds in the file at `path` instead of in memory (Annoy's on_disk_build), for indexes
    /// larger than memory: vectors go to a file beside `path` as they are added, and build()
    /// leaves the finished index at `path`, mapped.
    void on_disk_build(const std::string& path) {
        CopseBuilder* b = builder("on_disk_build");
        detail::check_no_nul(path, "path");
        detail::check(copse_builder_on_disk_build(b, path.c_str()));
    }

    /// The number of items added so far (while building; size() counts an index's items).
    uint64_t builder_len() {
        uint64_t n = 0;
        detail::check(copse_builder_len(builder("builder_len"), &n));
        return n;
    }

    /// Builds `n_trees` trees (at least 1; Annoy's -1, "as many as fit", is refused with
    /// COPSE_STATUS_INVALID_ARGUMENT), and the graph if set_graph() asked for one, on
    /// `n_threads` threads (-1, as in Annoy, or 0: one per core). The object then answers
    /// queries; builder calls throw COPSE_STATUS_ALREADY_BUILT until unbuild().
    void build(int n_trees, int n_threads = -1) {
        CopseBuilder* b = builder("build");
        if (n_trees < 0) {
            throw Error(COPSE_STATUS_INVALID_ARGUMENT,
                        "copse::AnnoyIndex::build: n_trees must be at least 1, not " +
                            std::to_string(n_trees) + " (copse has no automatic tree count)");
        }
        const size_t threads = detail::threads_arg(n_threads, "copse::AnnoyIndex::build");
        CopseIndex* raw = nullptr;
        detail::check(copse_builder_build(b, static_cast<size_t>(n_trees), threads, &raw));
        index_.reset(raw);
    }

    /// Lets a built object take items and build again, keeping its items (Annoy's unbuild);
    /// the built index is dropped, so queries throw until the next build().
    void unbuild() {
        CopseBuilder* b = builder("unbuild");
        detail::check(copse_builder_unbuild(b));
        index_.reset();
    }

    // ---- Saving and loading --------------------------------------------------------------

    /// Saves the index to `path`, replacing any file there only once the new one is complete.
    /// Unlike Annoy's save, the object stays as it was (a built index can still unbuild()).
    void save(const std::string& path) const {
        const CopseIndex* i = index("save");
        detail::check_no_nul(path, "path");
        detail::check(copse_index_save(i, path.c_str()));
    }

    /// Memory-maps the copse index file at `path` (Annoy's load), replacing any index this
    /// object held. The file must have this object's dimensions and metric, else
    /// COPSE_STATUS_MISMATCH (AnnoyIndex::open takes any). A truncated, corrupt or foreign file
    /// is COPSE_STATUS_FORMAT, a missing one COPSE_STATUS_IO. On failure nothing changes.
    void load(const std::string& path, bool prefault = false) {
        live_builder("load");
        detail::check_no_nul(path, "path");
        CopseIndex* raw = nullptr;
        detail::check(copse_index_load(path.c_str(), prefault, &raw));
        install_checked(detail::IndexPtr(raw), "file " + path);
    }

    /// Memory-maps an Annoy index file, which has no header: it is read as this object's
    /// dimensions and metric, as Annoy would. Filtered search is refused on it
    /// (COPSE_STATUS_WRONG_KIND). On failure nothing changes.
    void load_annoy(const std::string& path, bool prefault = false) {
        live_builder("load_annoy");
        detail::check_no_nul(path, "path");
        CopseIndex* raw = nullptr;
        detail::check(copse_index_load_annoy(path.c_str(), dims(), static_cast<uint32_t>(metric_),
                                             prefault, &raw));
        index_.reset(raw);
        loaded_ = true;
    }

    /// Opens an index from `len` bytes of a copse file's contents (copied), replacing any
    /// index held; checked as load() checks a file.
    void from_bytes(const void* data, size_t len) {
        live_builder("from_bytes");
        CopseIndex* raw = nullptr;
        detail::check(copse_index_from_bytes(static_cast<const uint8_t*>(data), len, &raw));
        install_checked(detail::IndexPtr(raw), "the bytes");
    }

    /// Returns the object to its freshly constructed state (as Annoy's unload): the index is
    /// closed (its file unmapped) and the items, labels, seed, row type and graph settings
    /// added while building are dropped; the dimensions and metric stay.
    void unload() {
        live_builder("unload");
        detail::BuilderPtr fresh = new_builder(f_, metric_);  // may throw: nothing changed yet
        index_.reset();
        builder_ = std::move(fresh);
        loaded_ = false;
    }

    // ---- Queries (Annoy's shapes) ---------------------------------------------------------

    /// Appends to `*result` the up-to-`n` items nearest to item `item` (itself first), nearest
    /// first, and their distances to `*distances` unless it is null, as Annoy does.
    /// `search_k` is the candidates to gather: -1 for the default, n times the trees.
    void get_nns_by_item(uint64_t item, size_t n, int64_t search_k, std::vector<uint64_t>* result,
                         std::vector<float>* distances) const {
        nns_by_item(item, n, search_k, nullptr, result, distances, "get_nns_by_item");
    }

    /// get_nns_by_item among the items `filter` allows only.
    void get_nns_by_item(uint64_t item, size_t n, int64_t search_k, const Filter& filter,
                         std::vector<uint64_t>* result, std::vector<float>* distances) const {
        nns_by_item(item, n, search_k, filter_handle(filter, "get_nns_by_item"), result, distances,
                    "get_nns_by_item");
    }

    /// Appends to `*result` the up-to-`n` items nearest to the get_f() floats at `w`, nearest
    /// first, and their distances to `*distances` unless null (Annoy's get_nns_by_vector).
    void get_nns_by_vector(const float* w, size_t n, int64_t search_k,
                           std::vector<uint64_t>* result, std::vector<float>* distances) const {
        nns_by_vector(w, dims(), n, search_k, nullptr, result, distances, "get_nns_by_vector");
    }

    /// get_nns_by_vector among the items `filter` allows only.
    void get_nns_by_vector(const float* w, size_t n, int64_t search_k, const Filter& filter,
                           std::vector<uint64_t>* result, std::vector<float>* distances) const {
        nns_by_vector(w, dims(), n, search_k, filter_handle(filter, "get_nns_by_vector"), result,
                      distances, "get_nns_by_vector");
    }

    /// get_nns_by_vector with a vector whose length is checked
    /// (COPSE_STATUS_WRONG_DIMENSIONS).
    void get_nns_by_vector(const std::vector<float>& w, size_t n, int64_t search_k,
                           std::vector<uint64_t>* result, std::vector<float>* distances) const {
        nns_by_vector(w.data(), w.size(), n, search_k, nullptr, result, distances,
                      "get_nns_by_vector");
    }

    /// The checked-length get_nns_by_vector among the items `filter` allows only.
    void get_nns_by_vector(const std::vector<float>& w, size_t n, int64_t search_k,
                           const Filter& filter, std::vector<uint64_t>* result,
                           std::vector<float>* distances) const {
        nns_by_vector(w.data(), w.size(), n, search_k, filter_handle(filter, "get_nns_by_vector"),
                      result, distances, "get_nns_by_vector");
    }

    /// Answers `n_queries` queries, the row-major n_queries x get_f() floats at `rows`, in one
    /// call on `n_threads` threads (-1 or 0: one per core): far cheaper than a loop for many
    /// queries. Each is answered as get_nns_by_vector would; if any fails, the call throws the
    /// first failing query's error.
    BatchResult get_nns_by_vectors(const float* rows, size_t n_queries, size_t n,
                                   int64_t search_k = COPSE_SEARCH_K_DEFAULT,
                                   int n_threads = -1) const {
        return nns_by_vectors(rows, n_queries, n, search_k, nullptr, n_threads);
    }

    /// get_nns_by_vectors among the items `filter` allows only.
    BatchResult get_nns_by_vectors(const float* rows, size_t n_queries, size_t n,
                                   int64_t search_k, const Filter& filter,
                                   int n_threads = -1) const {
        return nns_by_vectors(rows, n_queries, n, search_k,
                              filter_handle(filter, "get_nns_by_vectors"), n_threads);
    }

    /// get_nns_by_vectors over `rows`, whose length must be a multiple of get_f()
    /// (COPSE_STATUS_WRONG_DIMENSIONS otherwise).
    BatchResult get_nns_by_vectors(const std::vector<float>& rows, size_t n,
                                   int64_t search_k = COPSE_SEARCH_K_DEFAULT,
                                   int n_threads = -1) const {
        return nns_by_vectors(rows.data(), row_count(rows), n, search_k, nullptr, n_threads);
    }

    /// get_nns_by_vectors over `rows` among the items `filter` allows only.
    BatchResult get_nns_by_vectors(const std::vector<float>& rows, size_t n, int64_t search_k,
                                   const Filter& filter, int n_threads = -1) const {
        return nns_by_vectors(rows.data(), row_count(rows), n, search_k,
                              filter_handle(filter, "get_nns_by_vectors"), n_threads);
    }

    // ---- Items ---------------------------------------------------------------------------

    /// Writes item `item`'s vector into the get_f() floats at `v` (Annoy's get_item).
    void get_item(uint64_t item, float* v) const {
        detail::check(copse_index_item_vector(index("get_item"), item, v, dims()));
    }

    /// Item `item`'s vector (0/1 values for hamming).
    std::vector<float> get_item_vector(uint64_t item) const {
        const CopseIndex* i = index("get_item_vector");
        std::vector<float> v(dims());
        detail::check(copse_index_item_vector(i, item, v.data(), v.size()));
        return v;
    }

    /// The distance between items `i` and `j`, in Annoy's convention for the metric.
    float get_distance(uint64_t i, uint64_t j) const {
        float d = 0.0f;
        detail::check(copse_index_distance(index("get_distance"), i, j, &d));
        return d;
    }

    /// The largest id plus one (Annoy's get_n_items); see size() for the count.
    uint64_t get_n_items() const {
        uint64_t n = 0;
        detail::check(copse_index_n_items(index("get_n_items"), &n));
        return n;
    }

    /// The number of items (less than get_n_items() when ids have gaps).
    uint64_t size() const {
        uint64_t n = 0;
        detail::check(copse_index_len(index("size"), &n));
        return n;
    }

    /// The number of items, as size().
    uint64_t len() const { return size(); }

    /// The number of trees (Annoy's get_n_trees).
    size_t get_n_trees() const {
        size_t n = 0;
        detail::check(copse_index_n_trees(index("get_n_trees"), &n));
        return n;
    }

    /// The vectors' dimensions (Annoy's get_f): the constructor's, or the file's after open().
    int get_f() const noexcept { return f_; }

    /// The metric: the constructor's, or the file's after open().
    Metric metric() const noexcept { return metric_; }

    /// How the built or opened index stores its rows.
    Dtype dtype() const {
        uint32_t code = 0;
        detail::check(copse_index_dtype(index("dtype"), &code));
        return static_cast<Dtype>(code);
    }

    /// Bits of the item codes the index scores candidates from (8 or 4; 0: from the rows).
    uint32_t item_code_bits() const {
        uint32_t bits = 0;
        detail::check(copse_index_item_code_bits(index("item_code_bits"), &bits));
        return bits;
    }

    /// Whether the index holds a graph, which queries search instead of the trees.
    bool has_graph() const {
        bool has = false;
        detail::check(copse_index_has_graph(index("has_graph"), &has));
        return has;
    }

    /// Whether `item` is an item of the index (ids may have gaps).
    bool contains(uint64_t item) const {
        bool has = false;
        detail::check(copse_index_contains(index("contains"), item, &has));
        return has;
    }

    /// Checks every checksum of the index (reads it all); throws COPSE_STATUS_FORMAT naming
    /// the damaged part. Opening checks only the header, so call this to trust a file fully.
    void verify() const { detail::check(copse_index_verify(index("verify"))); }

    /// Item `item`'s label (possibly empty), or nullopt if it has none.
    std::optional<std::string> label(uint64_t item) const {
        const CopseIndex* i = index("label");
        std::string buffer(64, '\0');
        size_t length = 0;
        CopseStatus status = copse_index_label(i, item, &buffer[0], buffer.size(), &length);
        if (status == COPSE_STATUS_BUFFER_TOO_SMALL) {
            buffer.assign(length + 1, '\0');
            status = copse_index_label(i, item, &buffer[0], buffer.size(), &length);
        }
        detail::check(status);
        if (length == 0) {
            bool has = false;
            detail::check(copse_index_has_label(i, item, &has));
            if (!has) {
                return std::nullopt;
            }
        }
        buffer.resize(length);
        return buffer;
    }

    /// The id of the item labelled `label`, or nullopt if none is.
    std::optional<uint64_t> id_by_label(const std::string& label) const {
        const CopseIndex* i = index("id_by_label");
        if (label.find('\0') != std::string::npos) {
            return std::nullopt;  // no label set through the C API can hold a NUL
        }
        uint64_t id = 0;
        bool found = false;
        detail::check(copse_index_id_by_label(i, label.c_str(), &id, &found));
        if (!found) {
            return std::nullopt;
        }
        return id;
    }

    /// The ids of all items, ascending.
    std::vector<uint64_t> ids() const {
        const CopseIndex* i = index("ids");
        std::vector<uint64_t> out(static_cast<size_t>(size()));
        uint64_t count = 0;
        detail::check(copse_index_ids(i, out.data(), out.size(), &count));
        out.resize(static_cast<size_t>(count));
        return out;
    }

    /// An allow-list of this index's items from `ids` (ids that are not items are left out),
    /// for the filtered queries of this index.
    Filter make_filter(const std::vector<uint64_t>& ids) const {
        const CopseIndex* i = index("make_filter");
        CopseFilter* raw = nullptr;
        detail::check(copse_filter_new(i, ids.data(), ids.size(), &raw));
        return Filter(detail::FilterPtr(raw));
    }

    // ---- State ---------------------------------------------------------------------------

    /// Whether the object holds an index to query (after build, load or open).
    bool is_open() const noexcept { return static_cast<bool>(index_); }

    /// Whether the index was loaded (or opened) rather than built here.
    bool is_loaded() const noexcept { return index_ && loaded_; }

    /// The C index handle (null before build or load), for calls this wrapper does not cover;
    /// still owned by this object.
    const CopseIndex* index_handle() const noexcept { return index_.get(); }

private:
    /// An object around an opened index, with the index's dimensions and metric.
    AnnoyIndex(detail::BuilderPtr builder, detail::IndexPtr index, int f, Metric metric) noexcept
        : builder_(std::move(builder)), index_(std::move(index)), f_(f), metric_(metric),
          loaded_(true) {}

    static detail::BuilderPtr new_builder(int f, Metric metric) {
        if (f < 0) {
            throw Error(COPSE_STATUS_INVALID_ARGUMENT,
                        "copse::AnnoyIndex: f (the dimensions) must not be negative, not " +
                            std::to_string(f));
        }
        CopseBuilder* raw = nullptr;
        detail::check(copse_builder_new(static_cast<size_t>(f), static_cast<uint32_t>(metric), &raw));
        return detail::BuilderPtr(raw);
    }

    /// The dimensions and metric of an opened index.
    static std::pair<size_t, Metric> facts(const CopseIndex* index) {
        size_t dims = 0;
        uint32_t metric = 0;
        detail::check(copse_index_dims(index, &dims));
        detail::check(copse_index_metric(index, &metric));
        return {dims, static_cast<Metric>(metric)};
    }

    static AnnoyIndex adopt(detail::IndexPtr index) {
        const auto [file_dims, metric] = facts(index.get());
        if (file_dims > static_cast<size_t>(std::numeric_limits<int>::max())) {
            throw Error(COPSE_STATUS_INVALID_ARGUMENT,
                        "copse::AnnoyIndex::open: the index has " + std::to_string(file_dims) +
                            " dimensions, more than get_f() can report");
        }
        const int f = static_cast<int>(file_dims);
        detail::BuilderPtr builder = new_builder(f, metric);
        return AnnoyIndex(std::move(builder), std::move(index), f, metric);
    }

    /// Takes an opened index if it has this object's dimensions and metric.
    void install_checked(detail::IndexPtr index, const std::string& what) {
        const auto [file_dims, metric] = facts(index.get());
        if (file_dims != dims() || metric != metric_) {
            throw Error(COPSE_STATUS_MISMATCH,
                        "copse::AnnoyIndex: " + what + " holds an index of " +
                            std::to_string(file_dims) + " dimensions and metric " +
                            std::to_string(static_cast<uint32_t>(metric)) +
                            "; this AnnoyIndex was made for " + std::to_string(f_) +
                            " dimensions and metric " +
                            std::to_string(static_cast<uint32_t>(metric_)) +
                            " (use AnnoyIndex::open for any index)");
        }
        index_ = std::move(index);
        loaded_ = true;
    }

    size_t dims() const noexcept { return static_cast<size_t>(f_); }

    /// The builder, refusing a moved-from object.
    CopseBuilder* live_builder(const char* method) {
        if (!builder_) {
            throw moved_from(method);
        }
        return builder_.get();
    }

    /// The builder for a builder call: refuses a moved-from object and a loaded index (whose
    /// items the builder does not hold, so building on it would mislead), as Annoy does.
    CopseBuilder* builder(const char* method) {
        CopseBuilder* b = live_builder(method);
        if (loaded_) {
            throw Error(COPSE_STATUS_ALREADY_BUILT,
                        std::string("copse::AnnoyIndex::") + method +
                            ": the index was loaded, not built here; call unload() first");
        }
        return b;
    }

    /// The index for an index call: refuses a moved-from object and one with no index yet.
    const CopseIndex* index(const char* method) const {
        if (!builder_) {
            throw moved_from(method);
        }
        if (!index_) {
            throw Error(COPSE_STATUS_INVALID_HANDLE,
                        std::string("copse::AnnoyIndex::") + method +
                            ": no index yet: call build(), load(), load_annoy() or from_bytes() "
                            "first");
        }
        return index_.get();
    }

    static Error moved_from(const char* method) {
        return Error(COPSE_STATUS_INVALID_HANDLE, std::string("copse::AnnoyIndex::") + method +
                                                      ": this AnnoyIndex was moved from");
    }

    static const CopseFilter* filter_handle(const Filter& filter, const char* method) {
        if (!filter.handle_) {
            throw Error(COPSE_STATUS_INVALID_HANDLE, std::string("copse::AnnoyIndex::") + method +
                                                         ": the filter was moved from");
        }
        return filter.handle_.get();
    }

    size_t row_count(const std::vector<float>& rows) const {
        if (rows.size() % dims() != 0) {
            throw Error(COPSE_STATUS_WRONG_DIMENSIONS,
                        "copse::AnnoyIndex::get_nns_by_vectors: rows holds " +
                            std::to_string(rows.size()) + " floats, not a multiple of the " +
                            std::to_string(f_) + " dimensions");
        }
        return rows.size() / dims();
    }

    /// Appends the first `found` of the C call's results, with the strong guarantee: on
    /// failure neither vector changes.
    static void append(const std::vector<uint64_t>& ids, const std::vector<float>& dists,
                       size_t found, std::vector<uint64_t>* result,
                       std::vector<float>* distances) {
        if (result) {
            result->reserve(result->size() + found);
        }
        if (distances) {
            distances->reserve(distances->size() + found);
        }
        if (result) {
            result->insert(result->end(), ids.begin(),
                           ids.begin() + static_cast<std::ptrdiff_t>(found));
        }
        if (distances) {
            distances->insert(distances->end(), dists.begin(),
                              dists.begin() + static_cast<std::ptrdiff_t>(found));
        }
    }

    void nns_by_item(uint64_t item, size_t n, int64_t search_k, const CopseFilter* filter,
                     std::vector<uint64_t>* result, std::vector<float>* distances,
                     const char* method) const {
        const CopseIndex* i = index(method);
        std::vector<uint64_t> ids(n);
        std::vector<float> dists(distances ? n : 0);
        size_t found = 0;
        detail::check(copse_index_nns_by_item(i, item, n, search_k, filter, ids.data(),
                                              distances ? dists.data() : nullptr, &found));
        append(ids, dists, found, result, distances);
    }

    void nns_by_vector(const float* w, size_t w_len, size_t n, int64_t search_k,
                       const CopseFilter* filter, std::vector<uint64_t>* result,
                       std::vector<float>* distances, const char* method) const {
        const CopseIndex* i = index(method);
        std::vector<uint64_t> ids(n);
        std::vector<float> dists(distances ? n : 0);
        size_t found = 0;
        detail::check(copse_index_nns_by_vector(i, w, w_len, n, search_k, filter, ids.data(),
                                                distances ? dists.data() : nullptr, &found));
        append(ids, dists, found, result, distances);
    }

    BatchResult nns_by_vectors(const float* rows, size_t n_queries, size_t n, int64_t search_k,
                               const CopseFilter* filter, int n_threads) const {
        const CopseIndex* i = index("get_nns_by_vectors");
        const size_t threads = detail::threads_arg(n_threads, "copse::AnnoyIndex::get_nns_by_vectors");
        if (n != 0 && n_queries > SIZE_MAX / n) {
            throw Error(COPSE_STATUS_INVALID_ARGUMENT,
                        "copse::AnnoyIndex::get_nns_by_vectors: " + std::to_string(n_queries) +
                            " queries of " + std::to_string(n) + " results is too many");
        }
        BatchResult out;
        out.n = n;
        out.ids.resize(n_queries * n);
        out.distances.resize(n_queries * n);
        out.found.resize(n_queries);
        detail::check(copse_index_nns_by_vectors(i, rows, n_queries, dims(), n, search_k, filter,
                                                 threads, out.ids.data(), out.distances.data(),
                                                 out.found.data()));
        return out;
    }

    detail::BuilderPtr builder_;  // null only in a moved-from object
    detail::IndexPtr index_;      // null until build() or a load
    int f_;
    Metric metric_;
    bool loaded_ = false;  // index_ came from a load, not from builder_
};

}  // namespace copse

#endif  // COPSE_HPP
