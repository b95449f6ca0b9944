// The C++ binding test, run by `cargo xtask c-api` as `test_cpp <fixture_dir>`.
//
// Prints to stdout, through copse.hpp, every line of the fixture's expected.txt in its order
// (the format is documented in xtask/src/c_api.rs), so the runner can compare them with the
// Rust API's answers. Then exercises the wrapper's error paths, ownership and round trips,
// reporting to stderr; exits non-zero if any misbehaves.

#include <copse.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

/// Neighbours per query, as in the fixture.
constexpr size_t N = 10;

/// Checks that failed.
int failures = 0;

void fail(const std::string& what) {
    std::cerr << "FAIL: " << what << "\n";
    ++failures;
}

void pass(const std::string& what) { std::cerr << "ok: " << what << "\n"; }

/// A float's IEEE bits as 8 lowercase hex digits, so answers compare exactly.
std::string bits(float x) {
    uint32_t u = 0;
    std::memcpy(&u, &x, sizeof u);
    char text[9];
    std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(u));
    return text;
}

/// "<id>/<bits> ..." of a query's results.
std::string hits(const std::vector<uint64_t>& ids, const std::vector<float>& distances) {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) {
            out += ' ';
        }
        out += std::to_string(ids[i]) + "/" + bits(distances.at(i));
    }
    return out;
}

bool allowed(uint64_t id) { return id % 7 == 1; }

std::vector<char> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot read " + path);
    }
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const char* data, size_t len) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data, static_cast<std::streamsize>(len));
    if (!out) {
        throw std::runtime_error("cannot write " + path);
    }
}

/// The queries: little-endian f32 rows (decoded byte by byte, whatever the host's order).
std::vector<float> read_queries(const std::string& path) {
    const std::vector<char> bytes = read_file(path);
    std::vector<float> out(bytes.size() / 4);
    for (size_t i = 0; i < out.size(); ++i) {
        uint32_t u = 0;
        for (size_t b = 0; b < 4; ++b) {
            u |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[4 * i + b])) << (8 * b);
        }
        std::memcpy(&out[i], &u, sizeof u);
    }
    return out;
}

/// One index's answers in the fixture's line format: mirrors `answers` in xtask/src/c_api.rs.
std::string answers(const std::string& name, const copse::AnnoyIndex& index,
                    const std::vector<float>& queries) {
    std::ostringstream out;
    const size_t dims = static_cast<size_t>(index.get_f());
    const size_t n_queries = queries.size() / dims;
    out << name << " info: dims " << dims << " metric " << static_cast<uint32_t>(index.metric())
        << " n_items " << index.get_n_items() << " len " << index.size() << " n_trees "
        << index.get_n_trees() << " has_graph " << (index.has_graph() ? 1 : 0) << "\n";

    for (size_t q = 0; q < n_queries; ++q) {
        std::vector<uint64_t> ids;
        std::vector<float> distances;
        index.get_nns_by_vector(&queries[q * dims], N, -1, &ids, &distances);
        out << name << " vector " << q << ": " << hits(ids, distances) << "\n";
    }

    const copse::BatchResult batch = index.get_nns_by_vectors(queries, N, -1, 2);
    for (size_t q = 0; q < batch.n_queries(); ++q) {
        out << name << " batch " << q << ": " << hits(batch.ids_of(q), batch.distances_of(q))
            << "\n";
    }

    std::vector<uint64_t> allow;
    for (uint64_t id : index.ids()) {
        if (allowed(id)) {
            allow.push_back(id);
        }
    }
    const copse::Filter filter = index.make_filter(allow);
    for (size_t q = 0; q < n_queries; ++q) {
        std::vector<uint64_t> ids;
        std::vector<float> distances;
        index.get_nns_by_vector(&queries[q * dims], N, -1, filter, &ids, &distances);
        out << name << " filtered " << q << ": " << hits(ids, distances) << "\n";
    }

    for (size_t q = 0; q < n_queries; ++q) {
        std::vector<uint64_t> ids;
        std::vector<float> distances;
        index.get_nns_by_vector(&queries[q * dims], N, 40, &ids, &distances);
        out << name << " search_k " << q << ": " << hits(ids, distances) << "\n";
    }

    std::vector<uint64_t> ids = index.ids();
    ids.resize(std::min<size_t>(ids.size(), 20));
    for (uint64_t id : ids) {
        std::vector<uint64_t> found;
        std::vector<float> distances;
        index.get_nns_by_item(id, N, -1, &found, &distances);
        out << name << " item " << id << ": " << hits(found, distances) << "\n";
    }
    for (size_t i = 0; i + 1 < 10; ++i) {
        out << name << " distance " << ids.at(i) << " " << ids.at(i + 1) << ": "
            << bits(index.get_distance(ids.at(i), ids.at(i + 1))) << "\n";
    }
    for (size_t i = 0; i < 3; ++i) {
        out << name << " item_vector " << ids.at(i) << ":";
        for (float x : index.get_item_vector(ids.at(i))) {
            out << " " << bits(x);
        }
        out << "\n";
    }
    for (size_t i = 0; i < 12; ++i) {
        out << name << " label " << ids.at(i) << ": " << index.label(ids.at(i)).value_or("-")
            << "\n";
    }
    return out.str();
}

/// Runs `body`, which must throw copse::Error with `status`.
void expect_error(const std::string& what, CopseStatus status, const std::function<void()>& body) {
    try {
        body();
    } catch (const copse::Error& e) {
        if (e.status() != status) {
            fail(what + ": expected " + copse_status_name(status) + ", got " + e.status_name() +
                 " (" + e.what() + ")");
        } else if (std::strlen(e.what()) == 0) {
            fail(what + ": " + e.status_name() + " with an empty message");
        } else {
            pass(what + ": " + e.status_name() + ": " + e.what());
        }
        return;
    } catch (const std::exception& e) {
        fail(what + ": expected copse::Error " + copse_status_name(status) +
             ", got another exception: " + e.what());
        return;
    }
    fail(what + ": expected " + copse_status_name(status) + ", but nothing was thrown");
}

/// Runs `body`, which must not throw.
void expect_ok(const std::string& what, const std::function<void()>& body) {
    try {
        body();
        pass(what);
    } catch (const std::exception& e) {
        fail(what + ": threw " + e.what());
    }
}

void expect_true(const std::string& what, bool condition) {
    if (condition) {
        pass(what);
    } else {
        fail(what);
    }
}

/// A private temporary directory under /tmp, removed with its files at the end.
struct TempDir {
    std::string path;
    std::vector<std::string> files;

    TempDir() {
        char name[] = "/tmp/copse-cpp-test-XXXXXX";
        if (mkdtemp(name) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path = name;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string file(const std::string& name) {
        files.push_back(path + "/" + name);
        return files.back();
    }

    ~TempDir() {
        for (const std::string& f : files) {
            (void)std::remove(f.c_str());
        }
        (void)rmdir(path.c_str());
    }
};

/// A copy of `source` made through the builder: every item, vector and label, same seed and
/// tree count as the fixture's forest.
copse::AnnoyIndex rebuild(const copse::AnnoyIndex& source, uint64_t seed, int n_trees) {
    copse::AnnoyIndex out(source.get_f(), source.metric());
    out.set_seed(seed);
    const std::vector<uint64_t> ids = source.ids();
    // Half one at a time (pointer and vector forms), half in one add_items call.
    const size_t half = ids.size() / 2;
    std::vector<float> row(static_cast<size_t>(source.get_f()));
    for (size_t i = 0; i < half; ++i) {
        if (i % 2 == 0) {
            source.get_item(ids[i], row.data());
            out.add_item(ids[i], row.data());
        } else {
            out.add_item(ids[i], source.get_item_vector(ids[i]));
        }
    }
    std::vector<uint64_t> rest(ids.begin() + static_cast<std::ptrdiff_t>(half), ids.end());
    std::vector<float> rows;
    for (uint64_t id : rest) {
        const std::vector<float> v = source.get_item_vector(id);
        rows.insert(rows.end(), v.begin(), v.end());
    }
    out.add_items(rest, rows);
    for (uint64_t id : ids) {
        if (std::optional<std::string> label = source.label(id)) {
            out.set_label(id, *label);
        }
    }
    out.build(n_trees, 2);
    return out;
}

void error_paths(const std::string& dir, const std::vector<float>& queries, TempDir& temp) {
    copse::AnnoyIndex forest = copse::AnnoyIndex::open(dir + "/forest.copse", true);
    copse::AnnoyIndex graph = copse::AnnoyIndex::open(dir + "/graph.copse");
    const size_t dims = static_cast<size_t>(forest.get_f());
    const std::vector<float> query(queries.begin(), queries.begin() + static_cast<std::ptrdiff_t>(dims));
    std::vector<uint64_t> ids;
    std::vector<float> distances;

    expect_true(std::string("version ") + copse::version() + " is not empty", !copse::version().empty());
    expect_ok("verify forest.copse", [&] { forest.verify(); });
    expect_ok("verify graph.copse", [&] { graph.verify(); });
    expect_true("forest is loaded, open", forest.is_loaded() && forest.is_open());

    // Vectors of the wrong length or with NaN.
    expect_error("query of dims - 1 floats", COPSE_STATUS_WRONG_DIMENSIONS, [&] {
        forest.get_nns_by_vector(std::vector<float>(dims - 1, 0.5f), N, -1, &ids, &distances);
    });
    expect_error("batch of rows not a multiple of dims", COPSE_STATUS_WRONG_DIMENSIONS,
                 [&] { forest.get_nns_by_vectors(std::vector<float>(dims + 1, 0.5f), N); });
    std::vector<float> nan_query = query;
    nan_query[3] = std::numeric_limits<float>::quiet_NaN();
    expect_error("query holding NaN", COPSE_STATUS_NOT_FINITE,
                 [&] { forest.get_nns_by_vector(nan_query, N, -1, &ids, &distances); });
    expect_error("graph query holding NaN", COPSE_STATUS_NOT_FINITE,
                 [&] { graph.get_nns_by_vector(nan_query.data(), N, -1, &ids, &distances); });
    std::vector<float> rows = queries;
    rows[5 * dims + 1] = std::numeric_limits<float>::infinity();
    expect_error("batch with an infinity in row 5", COPSE_STATUS_NOT_FINITE,
                 [&] { forest.get_nns_by_vectors(rows, N, -1, 2); });
    expect_true("failed queries left the outputs alone", ids.empty() && distances.empty());

    // Ids out of range and missing.
    const uint64_t past = forest.get_n_items();
    expect_error("nns of an id past the largest", COPSE_STATUS_ITEM_OUT_OF_RANGE,
                 [&] { forest.get_nns_by_item(past + 10, N, -1, &ids, &distances); });
    expect_error("vector of an id past the largest", COPSE_STATUS_ITEM_OUT_OF_RANGE,
                 [&] { forest.get_item_vector(past); });
    expect_error("distance to an id past the largest", COPSE_STATUS_ITEM_OUT_OF_RANGE,
                 [&] { forest.get_distance(1, UINT64_MAX); });
    expect_true("gap id 2 is not contained, 1 is", !forest.contains(2) && forest.contains(1));
    expect_error("nns of gap id 2", COPSE_STATUS_ITEM_MISSING,
                 [&] { forest.get_nns_by_item(2, N, -1, &ids, &distances); });
    expect_error("vector of gap id 2", COPSE_STATUS_ITEM_MISSING, [&] { forest.get_item_vector(2); });
    expect_error("distance to gap id 2", COPSE_STATUS_ITEM_MISSING, [&] { forest.get_distance(1, 2); });
    expect_error("search_k -2", COPSE_STATUS_INVALID_ARGUMENT,
                 [&] { forest.get_nns_by_item(1, N, -2, &ids, &distances); });
    expect_error("batch on -2 threads", COPSE_STATUS_INVALID_ARGUMENT,
                 [&] { forest.get_nns_by_vectors(queries, N, -1, -2); });

    // Labels.
    expect_true("label of item 10 is item-10", forest.label(10) == std::optional<std::string>("item-10"));
    expect_true("item 1 has no label", !forest.label(1).has_value());
    expect_true("id_by_label(item-40) is 40", forest.id_by_label("item-40") == std::optional<uint64_t>(40));
    expect_true("id_by_label(nothing) is nullopt", !forest.id_by_label("nothing").has_value());
    expect_true("id_by_label with a NUL is nullopt",
                !forest.id_by_label(std::string("item-40\0x", 9)).has_value());

    // Filters: their own index only; results only allowed items; appended, as Annoy appends.
    const copse::Filter filter = forest.make_filter({1, 2, 4, 7, 99999});
    expect_true("filter of 1, 2, 4, 7, 99999 allows 3 items", filter.size() == 3);
    ids.assign(1, 12345);
    distances.assign(1, -1.0f);
    forest.get_nns_by_item(1, N, -1, filter, &ids, &distances);
    bool only_allowed = ids.size() >= 2 && ids.size() <= 4 && distances.size() == ids.size() &&
                        ids[0] == 12345 && distances[0] == -1.0f && ids[1] == 1;
    for (size_t i = 2; i < ids.size(); ++i) {
        only_allowed = only_allowed && (ids[i] == 4 || ids[i] == 7);
    }
    expect_true("filtered nns appended item 1 and then only allowed items (" +
                    std::to_string(ids.size() - 1) + " of 3)",
                only_allowed);
    const size_t before = ids.size();
    forest.get_nns_by_item(1, N, -1, &ids, nullptr);
    expect_true("nns with no distances wanted appends ids only",
                ids.size() == before + N && distances.size() == before);
    expect_error("forest's filter on graph", COPSE_STATUS_WRONG_KIND,
                 [&] { graph.get_nns_by_item(1, N, -1, filter, &ids, &distances); });

    // Loading: missing, truncated, mismatched files.
    expect_error("open a missing file", COPSE_STATUS_IO,
                 [&] { copse::AnnoyIndex::open(dir + "/no-such-file.copse"); });
    {
        copse::AnnoyIndex index(static_cast<int>(dims), copse::Metric::Angular);
        expect_error("load a missing file", COPSE_STATUS_IO, [&] { index.load(temp.path + "/missing.copse"); });
        expect_error("load_annoy a missing file", COPSE_STATUS_IO,
                     [&] { index.load_annoy(temp.path + "/missing.ann"); });
        expect_error("a path holding a NUL", COPSE_STATUS_INVALID_ARGUMENT,
                     [&] { index.load(std::string("forest.copse\0x", 14)); });
        const std::vector<char> bytes = read_file(dir + "/forest.copse");
        const std::string truncated = temp.file("truncated.copse");
        write_file(truncated, bytes.data(), bytes.size() / 2);
        expect_error("load a truncated forest.copse", COPSE_STATUS_FORMAT, [&] { index.load(truncated); });
        expect_error("open a truncated forest.copse", COPSE_STATUS_FORMAT,
                     [&] { copse::AnnoyIndex::open(truncated); });
        expect_error("from_bytes of half forest.copse", COPSE_STATUS_FORMAT,
                     [&] { index.from_bytes(bytes.data(), bytes.size() / 2); });
        expect_error("load graph.copse (euclidean) as angular", COPSE_STATUS_MISMATCH,
                     [&] { index.load(dir + "/graph.copse"); });
        expect_true("failed loads left no index", !index.is_open());
        expect_error("query after failed loads", COPSE_STATUS_INVALID_HANDLE,
                     [&] { index.get_nns_by_item(1, N, -1, &ids, &distances); });
        expect_ok("from_bytes of forest.copse", [&] { index.from_bytes(bytes.data(), bytes.size()); });
        expect_true("from_bytes answers as the file does",
                    answers("forest", index, queries) == answers("forest", forest, queries));
        copse::AnnoyIndex by_bytes = copse::AnnoyIndex::open_bytes(bytes.data(), bytes.size());
        expect_true("open_bytes has 2000 items", by_bytes.size() == 2000);
        expect_error("add_item to a loaded index", COPSE_STATUS_ALREADY_BUILT,
                     [&] { index.add_item(5, query); });
        expect_error("unbuild a loaded index", COPSE_STATUS_ALREADY_BUILT, [&] { index.unbuild(); });
        expect_ok("unload", [&] { index.unload(); });
        expect_error("query after unload", COPSE_STATUS_INVALID_HANDLE, [&] { index.get_n_trees(); });
        expect_ok("add_item after unload", [&] { index.add_item(5, query); });
    }

    // Queries before build or load.
    {
        copse::AnnoyIndex index(static_cast<int>(dims), copse::Metric::Euclidean);
        expect_error("get_nns_by_vector before build", COPSE_STATUS_INVALID_HANDLE,
                     [&] { index.get_nns_by_vector(query, N, -1, &ids, &distances); });
        expect_error("get_n_items before build", COPSE_STATUS_INVALID_HANDLE, [&] { index.get_n_items(); });
        expect_error("save before build", COPSE_STATUS_INVALID_HANDLE,
                     [&] { index.save(temp.path + "/never.copse"); });
        expect_error("make_filter before build", COPSE_STATUS_INVALID_HANDLE, [&] { index.make_filter({1}); });
        expect_true("get_f and metric before build",
                    index.get_f() == static_cast<int>(dims) && index.metric() == copse::Metric::Euclidean);
        expect_error("add_item of dims + 1 floats", COPSE_STATUS_WRONG_DIMENSIONS,
                     [&] { index.add_item(1, std::vector<float>(dims + 1, 0.5f)); });
        expect_error("add_item holding NaN", COPSE_STATUS_NOT_FINITE, [&] { index.add_item(1, nan_query); });
        expect_error("add_items with too few floats", COPSE_STATUS_WRONG_DIMENSIONS,
                     [&] { index.add_items({1, 2}, query); });
        expect_error("label an item never added", COPSE_STATUS_ITEM_MISSING, [&] { index.set_label(1, "one"); });
        expect_error("negative dimensions", COPSE_STATUS_INVALID_ARGUMENT,
                     [&] { copse::AnnoyIndex bad(-3); });
        expect_error("build with -1 trees", COPSE_STATUS_INVALID_ARGUMENT, [&] { index.build(-1); });
    }

    // Building: ALREADY_BUILT after build, unbuild keeps items, labels longer than a buffer.
    {
        copse::AnnoyIndex index(static_cast<int>(dims), copse::Metric::Euclidean);
        index.set_seed(3);
        for (uint64_t i = 0; i < 50; ++i) {
            index.add_item(i * 2, &queries[(i % 40) * dims]);
        }
        const std::string long_label(300, 'x');
        index.set_label(4, long_label);
        index.set_label(6, "six");
        expect_error("a duplicate label", COPSE_STATUS_DUPLICATE_LABEL, [&] { index.set_label(8, "six"); });
        expect_true("builder_len is 50", index.builder_len() == 50);
        expect_ok("build 5 trees on all cores", [&] { index.build(5); });
        expect_true("built: 50 items, n_items 99, 5 trees, not loaded",
                    index.size() == 50 && index.get_n_items() == 99 && index.get_n_trees() == 5 &&
                        !index.is_loaded());
        expect_true("a 300-byte label comes back whole", index.label(4) == long_label);
        expect_true("id_by_label(six) is 6", index.id_by_label("six") == std::optional<uint64_t>(6));
        expect_error("add_item after build", COPSE_STATUS_ALREADY_BUILT, [&] { index.add_item(200, query); });
        expect_error("add_items after build", COPSE_STATUS_ALREADY_BUILT, [&] { index.add_items({200}, query); });
        expect_error("build twice", COPSE_STATUS_ALREADY_BUILT, [&] { index.build(5); });
        expect_ok("unbuild", [&] { index.unbuild(); });
        expect_error("query after unbuild", COPSE_STATUS_INVALID_HANDLE, [&] { index.size(); });
        std::vector<float> far = query;
        for (float& x : far) {
            x += 5.0f;
        }
        expect_ok("add_item after unbuild", [&] { index.add_item(200, far); });
        expect_ok("build again with a graph",
                  [&] {
                      CopseGraphOptions options = copse::AnnoyIndex::graph_options_default();
                      options.degree = 8;
                      options.candidates = 16;
                      index.set_graph(options);
                      index.build(3, 1);
                  });
        expect_true("rebuilt: 51 items, n_items 201, graph",
                    index.size() == 51 && index.get_n_items() == 201 && index.has_graph());
        ids.clear();
        distances.clear();
        index.get_nns_by_item(200, 1, -1, &ids, &distances);
        expect_true("the new item is nearest itself", ids.size() == 1 && ids[0] == 200 && distances[0] == 0.0f);
    }

    // Row types: float16 rows hold the rounded values; the type is chosen before items.
    {
        copse::AnnoyIndex index(static_cast<int>(dims), copse::Metric::Euclidean);
        index.set_dtype(copse::Dtype::Float16);
        expect_error("item codes of 5 bits", COPSE_STATUS_INVALID_ARGUMENT, [&] { index.set_item_codes(5); });
        index.set_item_codes(4);
        std::vector<float> third(dims, 1.0f / 3.0f);
        std::vector<float> huge(dims, 70000.0f);
        index.add_item(1, third);
        expect_error("a value float16 cannot hold", COPSE_STATUS_BUILD, [&] { index.add_item(2, huge); });
        expect_error("set_dtype after add_item", COPSE_STATUS_WRONG_KIND,
                     [&] { index.set_dtype(copse::Dtype::Int8); });
        index.build(2);
        expect_true("dtype() is Float16", index.dtype() == copse::Dtype::Float16);
        expect_true("4-bit item codes", index.item_code_bits() == 4);
        const std::vector<float> stored = index.get_item_vector(1);
        expect_true("float16 rows hold 1/3 rounded to 1365/4096",
                    stored.size() == dims && stored[0] == 1365.0f / 4096.0f);
    }

    // Round trip: rebuild forest through the builder, save, load: same answers.
    {
        copse::AnnoyIndex built = rebuild(forest, 7, 20);
        const std::string in_memory = answers("forest", built, queries);
        const std::string path = temp.file("roundtrip.copse");
        built.save(path);
        copse::AnnoyIndex loaded(forest.get_f(), forest.metric());
        loaded.load(path);
        expect_true("saved and loaded index answers as the in-memory one",
                    answers("forest", loaded, queries) == in_memory);
        expect_ok("verify the saved index", [&] { loaded.verify(); });
        // Same seed and items as the fixture's forest: the same index, so the same answers.
        expect_true("rebuilt forest (seed 7, 20 trees) answers as forest.copse",
                    in_memory == answers("forest", forest, queries));

        // Built on disk: the same again, and the file is left at the path.
        const std::string disk_path = temp.file("on_disk.copse");
        copse::AnnoyIndex on_disk(forest.get_f(), forest.metric());
        on_disk.on_disk_build(disk_path);
        on_disk.set_seed(7);
        for (uint64_t id : forest.ids()) {
            on_disk.add_item(id, forest.get_item_vector(id));
            if (std::optional<std::string> label = forest.label(id)) {
                on_disk.set_label(id, *label);
            }
        }
        on_disk.build(20, 2);
        expect_true("on-disk build answers as the in-memory one",
                    answers("forest", on_disk, queries) == in_memory);
        expect_true("on-disk build left its file", copse::AnnoyIndex::open(disk_path).size() == 2000);
    }

    // Moves: the moved-from object refuses everything; nothing is freed twice (ASan, and the
    // C API's handle registry, would catch a double free).
    {
        copse::AnnoyIndex a = copse::AnnoyIndex::open(dir + "/graph.copse");
        copse::AnnoyIndex b(std::move(a));
        expect_true("moved-to object answers", b.size() == 2000 && b.has_graph());
        expect_error("moved-from get_n_items", COPSE_STATUS_INVALID_HANDLE, [&] { a.get_n_items(); });
        expect_error("moved-from get_nns_by_vector", COPSE_STATUS_INVALID_HANDLE,
                     [&] { a.get_nns_by_vector(query, N, -1, &ids, &distances); });
        expect_error("moved-from add_item", COPSE_STATUS_INVALID_HANDLE, [&] { a.add_item(1, query); });
        expect_error("moved-from load", COPSE_STATUS_INVALID_HANDLE, [&] { a.load(dir + "/graph.copse"); });
        expect_error("moved-from unload", COPSE_STATUS_INVALID_HANDLE, [&] { a.unload(); });
        copse::AnnoyIndex c(static_cast<int>(dims));
        c.add_item(1, query);
        c = std::move(b);  // frees c's builder
        expect_true("move-assigned object answers", c.size() == 2000);
        expect_error("moved-from (assigned) size", COPSE_STATUS_INVALID_HANDLE, [&] { b.size(); });
        a = std::move(c);  // a moved-from object can be assigned to again
        expect_true("re-assigned moved-from object answers", a.size() == 2000);

        copse::Filter f1 = a.make_filter({1, 4});
        copse::Filter f2(std::move(f1));
        expect_true("moved filter allows 2", f2.size() == 2);
        expect_error("moved-from filter size", COPSE_STATUS_INVALID_HANDLE, [&] { f1.size(); });
        expect_error("search with a moved-from filter", COPSE_STATUS_INVALID_HANDLE,
                     [&] { a.get_nns_by_item(1, N, -1, f1, &ids, &distances); });
        f1 = a.make_filter({7});
        f2 = std::move(f1);  // frees the old f2
        expect_true("move-assigned filter allows 1", f2.size() == 1);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " <fixture_dir>\n";
        return 2;
    }
    const std::string dir = argv[1];
    try {
        const std::vector<float> queries = read_queries(dir + "/queries.f32");
        std::string out;
        for (const char* name : {"forest", "graph"}) {
            const copse::AnnoyIndex index = copse::AnnoyIndex::open(dir + "/" + name + ".copse");
            out += answers(name, index, queries);
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);

        TempDir temp;
        error_paths(dir, queries, temp);
    } catch (const copse::Error& e) {
        std::cerr << "FAIL: unexpected copse::Error " << e.status_name() << ": " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "FAIL: unexpected exception: " << e.what() << "\n";
        return 1;
    }
    if (failures > 0) {
        std::cerr << failures << " check(s) failed\n";
        return 1;
    }
    std::cerr << "all C++ checks passed\n";
    return 0;
}
