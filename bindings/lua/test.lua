-- The Lua binding's test: luajit test.lua <fixture dir>, with COPSE_LIB naming libcopse_c.so
-- and LUA_PATH finding copse.lua (see xtask/src/c_bindings.rs). Exits non-zero on any failure.
--
-- 1. The cdef in copse.lua is checked against the installed copse.h ($COPSE_HEADER, else
--    <prefix>/include/copse.h beside $COPSE_LIB's lib/): every declaration must be in it.
-- 2. Every line of the fixture's expected.txt (the Rust API's answers) is made through the
--    binding and compared exactly (float bits).
-- 3. Error paths, and a tiny index built through the builder.

local ffi = require("ffi")
local bit = require("bit")
local copse = require("copse")

local fixture = arg[1] or error("usage: luajit test.lua <fixture dir>")

local function expect(cond, fmt, ...)
  if not cond then
    error(("FAILED: " .. fmt):format(...), 2)
  end
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

---------------------------------------------------------------------------------------------
-- 1. The cdef against copse.h.
---------------------------------------------------------------------------------------------

local header_path = os.getenv("COPSE_HEADER")
if not header_path then
  local lib = os.getenv("COPSE_LIB") or error("set COPSE_LIB (or COPSE_HEADER) to find copse.h")
  local prefix = lib:gsub("/[^/]*$", ""):gsub("/[^/]*$", "")
  header_path = prefix .. "/include/copse.h"
end
local header = read(header_path)

-- Whitespace collapsed, and none around punctuation.
local function normalise(s)
  s = s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  s = s:gsub(" ?([%(%){},;%*=]) ?", "%1")
  return s
end

-- The top-level declarations of C text (split at semicolons outside braces), normalised;
-- comments, preprocessor lines and `#ifdef __cplusplus` blocks dropped.
local function declarations(text)
  text = text:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")
  local kept, skipping = {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local directive = line:match("^%s*#%s*(%a+)")
    if directive then
      if line:match("^%s*#%s*ifdef%s+__cplusplus") then
        skipping = true
      elseif skipping and directive == "endif" then
        skipping = false
      end
    elseif not skipping then
      kept[#kept + 1] = line
    end
  end
  text = table.concat(kept, "\n")
  local list, depth, start = {}, 0, 1
  for i = 1, #text do
    local c = text:sub(i, i)
    if c == "{" then
      depth = depth + 1
    elseif c == "}" then
      depth = depth - 1
    elseif c == ";" and depth == 0 then
      list[#list + 1] = normalise(text:sub(start, i))
      start = i + 1
    end
  end
  expect(normalise(text:sub(start)) == "", "trailing text after the last declaration")
  return list
end

local in_header = {}
for _, d in ipairs(declarations(header)) do
  in_header[d] = true
end
local cdef = declarations(copse.cdef)
local cdef_set, functions, stale = {}, 0, {}
for _, d in ipairs(cdef) do
  cdef_set[d] = true
  if d:find("(", 1, true) then
    functions = functions + 1
  end
  if not in_header[d] then
    stale[#stale + 1] = d
  end
end
expect(#stale == 0, "%d declarations of copse.lua's cdef are not in %s (stale cdef):\n  %s",
  #stale, header_path, table.concat(stale, "\n  "))
expect(functions >= 30, "only %d function prototypes found in the cdef", functions)
for d in pairs(in_header) do
  if not cdef_set[d] then
    print("note: copse.h declares what copse.lua does not: " .. d)
  end
end
-- The #define constants the module mirrors: every COPSE_<prefix>_<NAME> code is in `codes`
-- under its lowercase name, and there are 5 of each.
local function check_codes(prefix, codes)
  local found = 0
  for name, value in header:gmatch("#define%s+COPSE_" .. prefix .. "_(%u+%d*)%s+(%-?%d+)") do
    expect(codes[name:lower()] == tonumber(value), "%s %s is %s in copse.h", prefix, name, value)
    found = found + 1
  end
  expect(found == 5, "found %d COPSE_%s_ codes in copse.h", found, prefix)
end
check_codes("METRIC", copse.metrics)
check_codes("DTYPE", copse.dtypes)
expect(tonumber(header:match("#define%s+COPSE_SEARCH_K_DEFAULT%s+(%-?%d+)")) == copse.SEARCH_K_DEFAULT,
  "COPSE_SEARCH_K_DEFAULT differs")
expect(header:match("#define%s+COPSE_NO_ITEM%s+UINT64_MAX") and copse.NO_ITEM == 0xffffffffffffffffULL,
  "COPSE_NO_ITEM differs")

---------------------------------------------------------------------------------------------
-- 2. The fixture.
---------------------------------------------------------------------------------------------

local bits_of = ffi.new("union { float f; uint32_t u; }")
local function bits(x)
  bits_of.f = x
  return bit.tohex(bits_of.u, 8)
end

local function hits(ids, dists)
  local parts = {}
  for i = 1, #ids do
    parts[i] = ("%d/%s"):format(ids[i], bits(dists[i]))
  end
  return table.concat(parts, " ")
end

-- Little-endian f32 rows of dims floats, as tables.
local function queries(dims)
  assert(ffi.abi("le"), "the fixture's floats are little-endian")
  local raw = read(fixture .. "/queries.f32")
  local count = #raw / 4
  expect(count > 0 and count % dims == 0, "queries.f32 is not rows of %d floats", dims)
  local buf = ffi.new("float[?]", count)
  ffi.copy(buf, raw, #raw)
  local rows = {}
  for r = 0, count / dims - 1 do
    local row = {}
    for i = 1, dims do
      row[i] = buf[r * dims + i - 1]
    end
    rows[r + 1] = row
  end
  return rows
end

-- The fixture's lines for one index (see xtask/src/c_api.rs).
local function answers(name, index, out)
  local qs = queries(index:get_dims())
  local function add(fmt, ...)
    out[#out + 1] = (name .. " " .. fmt):format(...)
  end
  add("info: dims %d metric %d n_items %d len %d n_trees %d has_graph %d", index:get_dims(),
    index:get_metric(), index:get_n_items(), index:get_len(), index:get_n_trees(),
    index:has_graph() and 1 or 0)
  for q, v in ipairs(qs) do
    add("vector %d: %s", q - 1, hits(index:get_nns_by_vector(v, 10, -1, true)))
  end
  local batch_ids, batch_dists = index:get_nns_by_vectors(qs, 10, -1, true, 2)
  for q = 1, #qs do
    add("batch %d: %s", q - 1, hits(batch_ids[q], batch_dists[q]))
  end
  local all = index:get_ids()
  local allowed = {}
  for _, id in ipairs(all) do
    if id % 7 == 1 then
      allowed[#allowed + 1] = id
    end
  end
  local filter = index:filter(allowed)
  for q, v in ipairs(qs) do
    add("filtered %d: %s", q - 1, hits(index:get_nns_by_vector(v, 10, -1, true, filter)))
  end
  filter:free()
  for q, v in ipairs(qs) do
    add("search_k %d: %s", q - 1, hits(index:get_nns_by_vector(v, 10, 40, true)))
  end
  for i = 1, 20 do
    add("item %d: %s", all[i], hits(index:get_nns_by_item(all[i], 10, -1, true)))
  end
  for i = 1, 9 do
    add("distance %d %d: %s", all[i], all[i + 1], bits(index:get_distance(all[i], all[i + 1])))
  end
  for i = 1, 3 do
    local v = index:get_item_vector(all[i])
    for j = 1, #v do
      v[j] = bits(v[j])
    end
    add("item_vector %d: %s", all[i], table.concat(v, " "))
  end
  for i = 1, 12 do
    local label = index:get_label(all[i])
    if label == nil then
      expect(not index:has_label(all[i]), "has_label agrees with get_label")
    end
    add("label %d: %s", all[i], label or "-")
  end
end

local expected = {}
for line in read(fixture .. "/expected.txt"):gmatch("[^\n]+") do
  expected[#expected + 1] = line
end
local got = {}
local forest = copse.load(fixture .. "/forest.copse")
local graph = copse.load(fixture .. "/graph.copse")
answers("forest", forest, got)
answers("graph", graph, got)
local mismatches = 0
for i = 1, math.max(#expected, #got) do
  if expected[i] ~= got[i] then
    mismatches = mismatches + 1
    if mismatches <= 5 then
      io.stderr:write(("line %d:\n want %s\n got  %s\n"):format(i, tostring(expected[i]), tostring(got[i])))
    end
  end
end
expect(mismatches == 0, "%d of %d lines differ from expected.txt", mismatches, #expected)
expect(#got >= 2 * (1 + 4 * 40 + 20 + 9 + 3 + 12), "only %d lines made", #got)
expect(forest:get_id_by_label("item-10") == 10, "label item-10")
expect(forest:get_id_by_label("no such label") == nil, "a missing label")

---------------------------------------------------------------------------------------------
-- 3. Error paths and the builder.
---------------------------------------------------------------------------------------------

-- Calls f, which must raise "copse: COPSE_STATUS_<status>: <non-empty message>".
local function raises(status, f, ...)
  local ok, err = pcall(f, ...)
  expect(not ok, "no error where %s was expected", status)
  local name, message = tostring(err):match("^copse: (COPSE_STATUS_[%u_]+): (.*)$")
  expect(name == "COPSE_STATUS_" .. status and message ~= "",
    "expected a %s error with a message, got %q", status, tostring(err))
  return message
end

raises("WRONG_DIMENSIONS", forest.get_nns_by_vector, forest, { 1, 2, 3 }, 10, -1)
raises("IO", copse.load, fixture .. "/no-such-file.copse")
raises("ITEM_MISSING", forest.get_nns_by_item, forest, 2, 10, -1) -- ids are 3i+1: 2 is a gap
graph:free()
graph:free() -- idempotent
raises("INVALID_HANDLE", graph.get_nns_by_item, graph, 1, 10, -1)

local items = 12
local b = copse.builder(3, "euclidean")
b:set_seed(42)
for i = 0, items - 1 do
  b:add_item(i, { i, i * i, 1 - i })
end
b:set_label(5, "five")
raises("WRONG_DIMENSIONS", b.add_item, b, 99, { 1, 2 })
expect(b:get_n_items() == items, "builder holds %d items", b:get_n_items())
local tiny = b:build(4, 1)
b:free()
for i = 0, items - 1 do
  local ids, dists = tiny:get_nns_by_vector(tiny:get_item_vector(i), 3, -1, true)
  expect(#ids == 3 and ids[1] == i and dists[1] == 0,
    "nearest to item %d's own vector: %s at %s", i, tostring(ids[1]), tostring(dists[1]))
  expect(tiny:get_nns_by_item(i, 1)[1] == i, "nearest to item %d", i)
end
local saved = os.tmpname()
tiny:save(saved)
tiny:free()
local reopened = copse.load(saved)
os.remove(saved)
expect(reopened:get_label(5) == "five" and reopened:get_len() == items, "the saved index")
reopened:free()

-- float16 rows hold each value rounded to the nearest half: 1/3 -> 1365/4096.
local h = copse.builder(2, "euclidean")
h:set_dtype("float16")
raises("INVALID_ARGUMENT", h.set_dtype, h, "float64")
raises("INVALID_ARGUMENT", h.set_item_codes, h, 5)
h:set_item_codes(4)
h:add_item(1, { 1 / 3, -2 })
raises("WRONG_KIND", h.set_dtype, h, "int8")
local half = h:build(1)
h:free()
expect(half:get_dtype() == "float16", "dtype %s", tostring(half:get_dtype()))
expect(half:get_item_code_bits() == 4, "item code bits %s", tostring(half:get_item_code_bits()))
local stored = half:get_item_vector(1)
expect(stored[1] == 1365 / 4096 and stored[2] == -2, "stored %s, %s", stored[1], stored[2])
half:free()

-- An id above 2^53: an error as a number, exact as cdata.
local huge = 0x8000000000000005ULL
local b2 = copse.builder(2, "euclidean")
b2:add_item(7, { 0, 0 })
b2:add_item(huge, { 5, 5 })
local sparse = b2:build(1)
raises("INVALID_ARGUMENT", sparse.get_nns_by_vector, sparse, { 5, 5 }, 1)
sparse:set_cdata_ids(true)
local ids = sparse:get_nns_by_vector({ 5, 5 }, 1)
expect(type(ids[1]) == "cdata" and ids[1] == huge, "the huge id came back as %s", tostring(ids[1]))
expect(sparse:get_nns_by_item(huge, 2)[2] == 7ULL, "search from the huge id")
sparse = nil
b2 = nil
collectgarbage() -- ffi.gc frees what was not freed

print(("copse Lua binding (library %s): %d fixture lines match expected.txt; %d cdef declarations (%d functions) in copse.h; error paths and a %d-item built index OK")
  :format(copse.version(), #got, #cdef, functions, items))
