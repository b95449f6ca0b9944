--- copse: approximate nearest-neighbour search over static, memory-mapped index files.
-- The LuaJIT FFI binding of copse's C API (copse.h, libcopse_c), in the style of Annoy's Lua
-- binding. See README.md.
--
--   local copse = require("copse")          -- loads $COPSE_LIB, else "copse_c" from the
--                                           -- dynamic linker's path
--   local index = copse.load("items.copse")
--   local ids, dists = index:get_nns_by_vector({0.1, 0.2, 0.3}, 10, -1, true)
--
-- Ids are 0-based like Annoy's and come back as Lua numbers, exact up to 2^53. Ids may be any
-- 64-bit value: for an index with larger ids call index:set_cdata_ids(true) to get uint64_t
-- cdata (e.g. 18446744073709551615ULL) instead; ids are accepted as numbers or cdata.
--
-- Failures raise Lua errors whose message is "copse: <STATUS_NAME>: <message>", e.g.
-- "copse: COPSE_STATUS_WRONG_DIMENSIONS: ...", with the C API's status names.

local ffi = require("ffi")
local bit = require("bit")

-- The C API, declared by hand from copse.h (LuaJIT cannot parse its #define and #ifdef lines).
-- test.lua checks that every declaration here is in the installed copse.h.
local CDEF = [[
typedef enum CopseStatus {
  COPSE_STATUS_OK = 0,
  COPSE_STATUS_NULL_POINTER = 1,
  COPSE_STATUS_INVALID_HANDLE = 2,
  COPSE_STATUS_INVALID_ARGUMENT = 3,
  COPSE_STATUS_WRONG_DIMENSIONS = 4,
  COPSE_STATUS_NOT_FINITE = 5,
  COPSE_STATUS_ITEM_OUT_OF_RANGE = 6,
  COPSE_STATUS_ITEM_MISSING = 7,
  COPSE_STATUS_DUPLICATE_LABEL = 8,
  COPSE_STATUS_ALREADY_BUILT = 9,
  COPSE_STATUS_WRONG_KIND = 10,
  COPSE_STATUS_MISMATCH = 11,
  COPSE_STATUS_IO = 12,
  COPSE_STATUS_FORMAT = 13,
  COPSE_STATUS_BUILD = 14,
  COPSE_STATUS_QUERY = 15,
  COPSE_STATUS_BUFFER_TOO_SMALL = 16,
  COPSE_STATUS_INTERNAL = 17,
  COPSE_STATUS_OTHER = 18,
} CopseStatus;

typedef struct CopseBuilder CopseBuilder;
typedef struct CopseFilter CopseFilter;
typedef struct CopseIndex CopseIndex;

typedef struct CopseGraphOptions {
  size_t degree;
  size_t candidates;
  size_t rounds;
  float alpha;
  size_t search_beam;
} CopseGraphOptions;

const char *copse_last_error(void);
const char *copse_status_name(int32_t status);
const char *copse_version(void);

enum CopseStatus copse_builder_new(size_t dims, uint32_t metric, struct CopseBuilder **out);
enum CopseStatus copse_builder_free(struct CopseBuilder *builder);
enum CopseStatus copse_builder_set_seed(struct CopseBuilder *builder, uint64_t seed);
enum CopseStatus copse_builder_set_dtype(struct CopseBuilder *builder, uint32_t dtype);
enum CopseStatus copse_builder_set_item_codes(struct CopseBuilder *builder, uint32_t bits);
enum CopseStatus copse_graph_options_default(struct CopseGraphOptions *out);
enum CopseStatus copse_builder_set_graph(struct CopseBuilder *builder,
                                         const struct CopseGraphOptions *options);
enum CopseStatus copse_builder_on_disk_build(struct CopseBuilder *builder, const char *path);
enum CopseStatus copse_builder_add_item(struct CopseBuilder *builder,
                                        uint64_t id,
                                        const float *vector,
                                        size_t dims);
enum CopseStatus copse_builder_add_items(struct CopseBuilder *builder,
                                         const uint64_t *ids,
                                         const float *vectors,
                                         size_t n,
                                         size_t dims);
enum CopseStatus copse_builder_set_label(struct CopseBuilder *builder,
                                         uint64_t id,
                                         const char *label);
enum CopseStatus copse_builder_len(struct CopseBuilder *builder, uint64_t *out);
enum CopseStatus copse_builder_build(struct CopseBuilder *builder,
                                     size_t n_trees,
                                     size_t n_threads,
                                     struct CopseIndex **out);
enum CopseStatus copse_builder_unbuild(struct CopseBuilder *builder);

enum CopseStatus copse_index_load(const char *path, bool populate, struct CopseIndex **out);
enum CopseStatus copse_index_load_annoy(const char *path,
                                        size_t dims,
                                        uint32_t metric,
                                        bool populate,
                                        struct CopseIndex **out);
enum CopseStatus copse_index_from_bytes(const uint8_t *bytes, size_t len, struct CopseIndex **out);
enum CopseStatus copse_index_free(struct CopseIndex *index);
enum CopseStatus copse_index_save(const struct CopseIndex *index, const char *path);
enum CopseStatus copse_index_dims(const struct CopseIndex *index, size_t *out);
enum CopseStatus copse_index_metric(const struct CopseIndex *index, uint32_t *out);
enum CopseStatus copse_index_dtype(const struct CopseIndex *index, uint32_t *out);
enum CopseStatus copse_index_item_code_bits(const struct CopseIndex *index, uint32_t *out);
enum CopseStatus copse_index_n_items(const struct CopseIndex *index, uint64_t *out);
enum CopseStatus copse_index_len(const struct CopseIndex *index, uint64_t *out);
enum CopseStatus copse_index_n_trees(const struct CopseIndex *index, size_t *out);
enum CopseStatus copse_index_has_graph(const struct CopseIndex *index, bool *out);
enum CopseStatus copse_index_contains(const struct CopseIndex *index, uint64_t id, bool *out);
enum CopseStatus copse_index_verify(const struct CopseIndex *index);
enum CopseStatus copse_index_nns_by_item(const struct CopseIndex *index,
                                         uint64_t id,
                                         size_t n,
                                         int64_t search_k,
                                         const struct CopseFilter *filter,
                                         uint64_t *ids,
                                         float *distances,
                                         size_t *found);
enum CopseStatus copse_index_nns_by_vector(const struct CopseIndex *index,
                                           const float *vector,
                                           size_t dims,
                                           size_t n,
                                           int64_t search_k,
                                           const struct CopseFilter *filter,
                                           uint64_t *ids,
                                           float *distances,
                                           size_t *found);
enum CopseStatus copse_index_nns_by_vectors(const struct CopseIndex *index,
                                            const float *vectors,
                                            size_t n_queries,
                                            size_t dims,
                                            size_t n,
                                            int64_t search_k,
                                            const struct CopseFilter *filter,
                                            size_t n_threads,
                                            uint64_t *ids,
                                            float *distances,
                                            size_t *found);
enum CopseStatus copse_index_item_vector(const struct CopseIndex *index,
                                         uint64_t id,
                                         float *out,
                                         size_t capacity);
enum CopseStatus copse_index_distance(const struct CopseIndex *index,
                                      uint64_t a,
                                      uint64_t b,
                                      float *out);
enum CopseStatus copse_index_label(const struct CopseIndex *index,
                                   uint64_t id,
                                   char *buffer,
                                   size_t capacity,
                                   size_t *length);
enum CopseStatus copse_index_has_label(const struct CopseIndex *index, uint64_t id, bool *out);
enum CopseStatus copse_index_id_by_label(const struct CopseIndex *index,
                                         const char *label,
                                         uint64_t *id,
                                         bool *found);
enum CopseStatus copse_index_ids(const struct CopseIndex *index,
                                 uint64_t *out,
                                 size_t capacity,
                                 uint64_t *count);

enum CopseStatus copse_filter_new(const struct CopseIndex *index,
                                  const uint64_t *ids,
                                  size_t n,
                                  struct CopseFilter **out);
enum CopseStatus copse_filter_len(const struct CopseFilter *filter, size_t *out);
enum CopseStatus copse_filter_free(struct CopseFilter *filter);
]]

ffi.cdef(CDEF)

local lib = ffi.load(os.getenv("COPSE_LIB") or "copse_c")

local M = {
  --- The declarations given to ffi.cdef (test.lua compares them with copse.h).
  cdef = CDEF,
  --- The loaded C library, for calls this module does not wrap.
  lib = lib,
  --- Metric codes (COPSE_METRIC_*), by Annoy's names; "cosine" is angular.
  metrics = { angular = 0, euclidean = 1, manhattan = 2, dot = 3, hamming = 4, cosine = 0 },
  --- Row type codes (COPSE_DTYPE_*), by numpy's names.
  dtypes = { float32 = 0, float16 = 1, bfloat16 = 2, int8 = 3, bits = 4 },
  --- search_k for the default: n times the number of trees (COPSE_SEARCH_K_DEFAULT).
  SEARCH_K_DEFAULT = -1,
  --- The id of an unfilled result slot (COPSE_NO_ITEM), as uint64_t cdata.
  NO_ITEM = 0xffffffffffffffffULL,
}

--- The name of a status code, e.g. "COPSE_STATUS_IO".
function M.status_name(status)
  return ffi.string(lib.copse_status_name(status))
end

--- The C library's version, e.g. "0.1.0".
function M.version()
  return ffi.string(lib.copse_version())
end

-- Raises the error "copse: <STATUS_NAME>: <message>" (level 0: no position prefix, so the
-- message starts with "copse:").
local function fail(status, message)
  error(("copse: %s: %s"):format(M.status_name(status), message), 0)
end

-- Raises the C library's error for a failed status.
local function check(status)
  if status ~= 0 then
    fail(status, ffi.string(lib.copse_last_error()))
  end
end

local INVALID_ARGUMENT = 3
local INVALID_HANDLE = 2
local BUFFER_TOO_SMALL = 16
local WRONG_DIMENSIONS = 4
local TWO_53 = 2 ^ 53

-- A caller's id (number or cdata) as uint64_t.
local function id_arg(id, what)
  if type(id) == "number" then
    if id < 0 or id % 1 ~= 0 or id > TWO_53 then
      fail(INVALID_ARGUMENT, ("%s %s is not an integer in [0, 2^53]; pass larger ids as uint64_t cdata"):format(what or "id", tostring(id)))
    end
    return id
  elseif type(id) == "cdata" then
    return ffi.cast("uint64_t", id)
  end
  fail(INVALID_ARGUMENT, ("%s must be a number or uint64_t cdata, not %s"):format(what or "id", type(id)))
end

-- A non-negative integer count.
local function count_arg(n, what)
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then
    fail(INVALID_ARGUMENT, ("%s must be a non-negative integer, not %s"):format(what, tostring(n)))
  end
  return n
end

-- A table of numbers as a float array and its length.
local function floats(v, what)
  if type(v) ~= "table" then
    fail(INVALID_ARGUMENT, ("%s must be a table of numbers, not %s"):format(what or "vector", type(v)))
  end
  local len = #v
  local buf = ffi.new("float[?]", len)
  for i = 1, len do
    buf[i - 1] = v[i]
  end
  return buf, len
end

-- A table of ids as a uint64_t array and its length.
local function id_array(ids)
  local len = #ids
  local buf = ffi.new("uint64_t[?]", len)
  for i = 1, len do
    buf[i - 1] = id_arg(ids[i])
  end
  return buf, len
end

local function metric_arg(metric)
  if type(metric) == "string" then
    local code = M.metrics[metric]
    if not code then
      fail(INVALID_ARGUMENT, ("unknown metric %q (angular, euclidean, manhattan, dot, hamming)"):format(metric))
    end
    return code
  end
  return metric
end

--------------------------------------------------------------------------------------------
-- Index
--------------------------------------------------------------------------------------------

local Index = {}
Index.__index = Index

local function free_index(ptr)
  lib.copse_index_free(ptr)
end

local function new_index(ptr)
  return setmetatable({ ptr = ffi.gc(ptr, free_index), cdata_ids = false }, Index)
end

-- The index's handle, or an error once freed.
local function handle(self)
  local ptr = self.ptr
  if ptr == nil then
    fail(INVALID_HANDLE, "the index was freed")
  end
  return ptr
end

--- Returns ids as uint64_t cdata (true) or as Lua numbers (false, the default; an id above
-- 2^53 then raises an error rather than come back rounded).
function Index:set_cdata_ids(flag)
  self.cdata_ids = flag and true or false
  return self
end

-- An id the library returned, as the caller asked for it.
function Index:_id(id)
  if self.cdata_ids then
    return ffi.new("uint64_t", id)
  end
  if id > 9007199254740992ULL then
    fail(INVALID_ARGUMENT, ("id %s does not fit a Lua number exactly; call index:set_cdata_ids(true)")
      :format(tostring(id):gsub("ULL$", "")))
  end
  return tonumber(id)
end

--- Frees the index and unmaps its file (also done by the garbage collector). Idempotent.
function Index:free()
  local ptr = self.ptr
  if ptr ~= nil then
    self.ptr = nil
    check(lib.copse_index_free(ffi.gc(ptr, nil)))
  end
end
Index.unload = Index.free

--- Saves the index to path (atomically: the old file stays until the new one is complete).
function Index:save(path)
  check(lib.copse_index_save(handle(self), path))
  return true
end

local function fact(self, ctype, fn)
  local out = ffi.new(ctype)
  check(fn(handle(self), out))
  return out[0]
end

--- The dimension of the index's vectors.
function Index:get_dims()
  return tonumber(fact(self, "size_t[1]", lib.copse_index_dims))
end

--- The metric code (see copse.metrics).
function Index:get_metric()
  return tonumber(fact(self, "uint32_t[1]", lib.copse_index_metric))
end

--- Bits of the item codes the index scores candidates from (8 or 4; 0: from the rows).
function Index:get_item_code_bits()
  return tonumber(fact(self, "uint32_t[1]", lib.copse_index_item_code_bits))
end

--- How the index stores its rows: a name from copse.dtypes ("float32", "float16", ...).
function Index:get_dtype()
  local code = tonumber(fact(self, "uint32_t[1]", lib.copse_index_dtype))
  for name, c in pairs(M.dtypes) do
    if c == code then
      return name
    end
  end
  return code
end

--- The largest id plus one (Annoy's get_n_items): a number, or uint64_t cdata as ids are
-- (see set_cdata_ids).
function Index:get_n_items()
  return self:_id(fact(self, "uint64_t[1]", lib.copse_index_n_items))
end

--- The number of items (fewer than get_n_items when ids have gaps).
function Index:get_len()
  return tonumber(fact(self, "uint64_t[1]", lib.copse_index_len))
end

--- The number of trees.
function Index:get_n_trees()
  return tonumber(fact(self, "size_t[1]", lib.copse_index_n_trees))
end

--- Whether the index holds a graph.
function Index:has_graph()
  return fact(self, "bool[1]", lib.copse_index_has_graph)
end

--- Whether id is an item of the index.
function Index:contains(id)
  local out = ffi.new("bool[1]")
  check(lib.copse_index_contains(handle(self), id_arg(id), out))
  return out[0]
end

--- Checks every checksum of the file; raises a FORMAT error naming the damaged part.
function Index:verify()
  check(lib.copse_index_verify(handle(self)))
  return true
end

-- Results as Lua tables: ids (and distances when asked for).
function Index:_results(ids, dists, offset, found, include_distances)
  local out_ids, out_dists = {}, include_distances and {} or nil
  for i = 0, found - 1 do
    out_ids[i + 1] = self:_id(ids[offset + i])
    if out_dists then
      out_dists[i + 1] = tonumber(dists[offset + i])
    end
  end
  return out_ids, out_dists
end

local function filter_arg(filter)
  if filter == nil then
    return nil
  end
  if filter.ptr == nil then
    fail(INVALID_HANDLE, "the filter was freed")
  end
  return filter.ptr
end

--- The n items nearest to vector v (a table of numbers), nearest first. search_k is the
-- candidates to gather (-1 or nil: n times the trees, as Annoy). Returns a table of ids, and a
-- table of distances as well when include_distances is true. filter (from index:filter)
-- restricts the results to the items it allows.
function Index:get_nns_by_vector(v, n, search_k, include_distances, filter)
  local ptr = handle(self)
  local vec, dims = floats(v)
  n = count_arg(n, "n")
  local ids = ffi.new("uint64_t[?]", n)
  local dists = include_distances and ffi.new("float[?]", n) or nil
  local found = ffi.new("size_t[1]")
  check(lib.copse_index_nns_by_vector(ptr, vec, dims, n, search_k or -1, filter_arg(filter),
    ids, dists, found))
  return self:_results(ids, dists, 0, tonumber(found[0]), include_distances)
end

--- The n items nearest to item id (itself first), as get_nns_by_vector.
function Index:get_nns_by_item(id, n, search_k, include_distances, filter)
  local ptr = handle(self)
  n = count_arg(n, "n")
  local ids = ffi.new("uint64_t[?]", n)
  local dists = include_distances and ffi.new("float[?]", n) or nil
  local found = ffi.new("size_t[1]")
  check(lib.copse_index_nns_by_item(ptr, id_arg(id), n, search_k or -1, filter_arg(filter),
    ids, dists, found))
  return self:_results(ids, dists, 0, tonumber(found[0]), include_distances)
end

--- Many queries at once on n_threads threads (0 or nil: one per core): vs is a table of
-- vectors; returns a table of id tables (and one of distance tables), one per query.
function Index:get_nns_by_vectors(vs, n, search_k, include_distances, n_threads, filter)
  local ptr = handle(self)
  n = count_arg(n, "n")
  local q = #vs
  local dims = q > 0 and #vs[1] or 0
  local flat = ffi.new("float[?]", q * dims)
  for r = 1, q do
    local row = vs[r]
    if #row ~= dims then
      fail(WRONG_DIMENSIONS, ("vector %d has %d floats; vector 1 has %d"):format(r, #row, dims))
    end
    for i = 1, dims do
      flat[(r - 1) * dims + i - 1] = row[i]
    end
  end
  local ids = ffi.new("uint64_t[?]", q * n)
  local dists = include_distances and ffi.new("float[?]", q * n) or nil
  local found = ffi.new("size_t[?]", q)
  check(lib.copse_index_nns_by_vectors(ptr, flat, q, dims, n, search_k or -1, filter_arg(filter),
    count_arg(n_threads or 0, "n_threads"), ids, dists, found))
  local all_ids, all_dists = {}, include_distances and {} or nil
  for r = 0, q - 1 do
    local i, d = self:_results(ids, dists, r * n, tonumber(found[r]), include_distances)
    all_ids[r + 1] = i
    if all_dists then
      all_dists[r + 1] = d
    end
  end
  return all_ids, all_dists
end

--- The vector of item id, as a table of numbers.
function Index:get_item_vector(id)
  local ptr = handle(self)
  local dims = self:get_dims()
  local buf = ffi.new("float[?]", dims)
  check(lib.copse_index_item_vector(ptr, id_arg(id), buf, dims))
  local v = {}
  for i = 1, dims do
    v[i] = tonumber(buf[i - 1])
  end
  return v
end

--- The distance between items a and b, in Annoy's convention for the metric.
function Index:get_distance(a, b)
  local out = ffi.new("float[1]")
  check(lib.copse_index_distance(handle(self), id_arg(a, "a"), id_arg(b, "b"), out))
  return tonumber(out[0])
end

--- Item id's label (possibly ""), or nil if it has none.
function Index:get_label(id)
  local ptr = handle(self)
  local length = ffi.new("size_t[1]")
  local capacity = 64
  while true do
    local buf = ffi.new("char[?]", capacity)
    local status = lib.copse_index_label(ptr, id_arg(id), buf, capacity, length)
    if status == BUFFER_TOO_SMALL and tonumber(length[0]) >= capacity then
      capacity = tonumber(length[0]) + 1
    else
      check(status)
      if length[0] == 0 and not self:has_label(id) then
        return nil
      end
      return ffi.string(buf, length[0])
    end
  end
end

--- Whether item id has a label (an empty one counts).
function Index:has_label(id)
  local out = ffi.new("bool[1]")
  check(lib.copse_index_has_label(handle(self), id_arg(id), out))
  return out[0]
end

--- The id of the item labelled label, or nil if there is none.
function Index:get_id_by_label(label)
  local id = ffi.new("uint64_t[1]")
  local found = ffi.new("bool[1]")
  check(lib.copse_index_id_by_label(handle(self), label, id, found))
  if not found[0] then
    return nil
  end
  return self:_id(id[0])
end

--- The ids of all items, ascending, as a table.
function Index:get_ids()
  local ptr = handle(self)
  local len = self:get_len()
  local buf = ffi.new("uint64_t[?]", len)
  local count = ffi.new("uint64_t[1]")
  check(lib.copse_index_ids(ptr, buf, len, count))
  local ids = {}
  for i = 1, tonumber(count[0]) do
    ids[i] = self:_id(buf[i - 1])
  end
  return ids
end

--------------------------------------------------------------------------------------------
-- Filter
--------------------------------------------------------------------------------------------

local Filter = {}
Filter.__index = Filter

local function free_filter(ptr)
  lib.copse_filter_free(ptr)
end

--- An allow-list of this index's items from a table of ids (ids that are not items are left
-- out), for this index's filtered searches.
function Index:filter(ids)
  local buf, len = id_array(ids)
  local out = ffi.new("CopseFilter *[1]")
  check(lib.copse_filter_new(handle(self), buf, len, out))
  return setmetatable({ ptr = ffi.gc(out[0], free_filter) }, Filter)
end

--- The number of items the filter allows.
function Filter:len()
  if self.ptr == nil then
    fail(INVALID_HANDLE, "the filter was freed")
  end
  local out = ffi.new("size_t[1]")
  check(lib.copse_filter_len(self.ptr, out))
  return tonumber(out[0])
end

--- Frees the filter (also done by the garbage collector). Idempotent.
function Filter:free()
  local ptr = self.ptr
  if ptr ~= nil then
    self.ptr = nil
    check(lib.copse_filter_free(ffi.gc(ptr, nil)))
  end
end

--------------------------------------------------------------------------------------------
-- Builder
--------------------------------------------------------------------------------------------

local Builder = {}
Builder.__index = Builder

local function free_builder(ptr)
  lib.copse_builder_free(ptr)
end

local function builder_handle(self)
  local ptr = self.ptr
  if ptr == nil then
    fail(INVALID_HANDLE, "the builder was freed")
  end
  return ptr
end

--- A builder of dims-dimensional vectors under metric (a name from copse.metrics, or a code).
function M.builder(dims, metric)
  local out = ffi.new("CopseBuilder *[1]")
  check(lib.copse_builder_new(count_arg(dims, "dims"), metric_arg(metric or "angular"), out))
  return setmetatable({ ptr = ffi.gc(out[0], free_builder), dims = dims }, Builder)
end

--- Adds item id with vector v (a table of numbers); an id given twice keeps the last vector.
function Builder:add_item(id, v)
  local vec, dims = floats(v)
  check(lib.copse_builder_add_item(builder_handle(self), id_arg(id), vec, dims))
end

--- Sets the seed: the same seed and items give a byte-identical index.
function Builder:set_seed(seed)
  check(lib.copse_builder_set_seed(builder_handle(self), id_arg(seed, "seed")))
end

--- Stores item rows as dtype (a name from copse.dtypes, or a code), before any add_item:
-- "float16" and "bfloat16" halve the rows, "int8" quarters them; the index holds, searches and
-- returns the rounded values.
function Builder:set_dtype(dtype)
  local code = dtype
  if type(dtype) == "string" then
    code = M.dtypes[dtype]
    if not code then
      fail(INVALID_ARGUMENT, ("unknown dtype %q (float32, float16, bfloat16, int8)"):format(dtype))
    end
  end
  check(lib.copse_builder_set_dtype(builder_handle(self), code))
end

--- With "float16" or "bfloat16" rows (after set_dtype), the item codes candidates are scored
-- from: 8 or 4 bits a value (4: a smaller file and half the bytes a candidate; the default from
-- 256 dimensions up), or 0 for none (scored from the rows).
function Builder:set_item_codes(bits)
  check(lib.copse_builder_set_item_codes(builder_handle(self), bits))
end

--- Gives item id a label (unique in the index), saved in the file.
function Builder:set_label(id, label)
  check(lib.copse_builder_set_label(builder_handle(self), id_arg(id), label))
end

--- Makes the build add a graph beside the trees: options is true (the defaults), a table
-- overriding some of degree, candidates, rounds, alpha, search_beam, or false/nil (trees only).
function Builder:set_graph(options)
  local ptr = builder_handle(self)
  if not options then
    check(lib.copse_builder_set_graph(ptr, nil))
    return
  end
  local o = ffi.new("CopseGraphOptions[1]")
  check(lib.copse_graph_options_default(o))
  if type(options) == "table" then
    for _, k in ipairs({ "degree", "candidates", "rounds", "alpha", "search_beam" }) do
      if options[k] ~= nil then
        o[0][k] = options[k]
      end
    end
  end
  check(lib.copse_builder_set_graph(ptr, o))
end

--- Builds in the file at path instead of in memory (Annoy's on_disk_build).
function Builder:on_disk_build(path)
  check(lib.copse_builder_on_disk_build(builder_handle(self), path))
  return true
end

--- The number of items added so far.
function Builder:get_n_items()
  local out = ffi.new("uint64_t[1]")
  check(lib.copse_builder_len(builder_handle(self), out))
  return tonumber(out[0])
end

--- Builds n_trees trees (at least 1) on n_threads threads (0 or nil: one per core) and
-- returns the index. The builder then refuses new items until unbuild.
function Builder:build(n_trees, n_threads)
  local out = ffi.new("CopseIndex *[1]")
  check(lib.copse_builder_build(builder_handle(self), count_arg(n_trees, "n_trees"),
    count_arg(n_threads or 0, "n_threads"), out))
  return new_index(out[0])
end

--- Lets a built builder take items and build again; its items are kept.
function Builder:unbuild()
  check(lib.copse_builder_unbuild(builder_handle(self)))
end

--- Frees the builder (also done by the garbage collector); built indexes stay valid.
function Builder:free()
  local ptr = self.ptr
  if ptr ~= nil then
    self.ptr = nil
    check(lib.copse_builder_free(ffi.gc(ptr, nil)))
  end
end

--------------------------------------------------------------------------------------------
-- Opening indexes
--------------------------------------------------------------------------------------------

--- Memory-maps the copse index file at path; populate reads every page in now (Annoy's
-- prefault). A missing file raises an IO error, a corrupt one a FORMAT error.
function M.load(path, populate)
  local out = ffi.new("CopseIndex *[1]")
  check(lib.copse_index_load(path, populate and true or false, out))
  return new_index(out[0])
end

--- Memory-maps an index file written by Annoy: give its dimension and metric.
function M.load_annoy(path, dims, metric, populate)
  local out = ffi.new("CopseIndex *[1]")
  check(lib.copse_index_load_annoy(path, count_arg(dims, "dims"), metric_arg(metric),
    populate and true or false, out))
  return new_index(out[0])
end

--- Opens an index from a copse file's contents (a Lua string), which are copied.
function M.from_bytes(bytes)
  local out = ffi.new("CopseIndex *[1]")
  check(lib.copse_index_from_bytes(ffi.cast("const uint8_t *", bytes), #bytes, out))
  return new_index(out[0])
end

M.Index, M.Builder, M.Filter = Index, Builder, Filter

return M
