/*
 * The C API's test, run by `cargo xtask c-api` as `test_c <fixture-dir>` (and again under
 * valgrind). It prints the answers of the fixture's indexes in the line format of
 * xtask/src/c_api.rs, which xtask compares with the Rust API's answers, and checks every error
 * path itself: any check that fails is reported on stderr and makes the exit status 1.
 */
#include "copse.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 10

static int failures = 0;

/* Records a failed check. */
static void fail(const char *what, int line) {
    fprintf(stderr, "test_copse.c:%d: FAILED: %s (last error: %s)\n", line, what,
            copse_last_error());
    failures++;
}

#define CHECK(cond) \
    do { \
        if (!(cond)) fail(#cond, __LINE__); \
    } while (0)

/* A call that must succeed; the test stops if it does not (later lines depend on it). */
#define MUST(call) \
    do { \
        enum CopseStatus must_status = (call); \
        if (must_status != COPSE_STATUS_OK) { \
            fprintf(stderr, "test_copse.c:%d: %s failed: %s: %s\n", __LINE__, #call, \
                    copse_status_name(must_status), copse_last_error()); \
            exit(1); \
        } \
    } while (0)

/* A call that must fail with `expected` and leave a message. */
#define EXPECT_STATUS(call, expected) \
    do { \
        enum CopseStatus got_status = (call); \
        if (got_status != (expected)) { \
            fprintf(stderr, "test_copse.c:%d: %s gave %s, expected %s (%s)\n", __LINE__, #call, \
                    copse_status_name(got_status), copse_status_name(expected), \
                    copse_last_error()); \
            failures++; \
        } else if (strlen(copse_last_error()) == 0) { \
            fprintf(stderr, "test_copse.c:%d: %s failed without a message\n", __LINE__, #call); \
            failures++; \
        } \
    } while (0)

static uint32_t bits(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static void print_hits(const char *name, const char *kind, unsigned long long key,
                       const uint64_t *ids, const float *dists, size_t found) {
    printf("%s %s %llu:", name, kind, key);
    for (size_t i = 0; i < found; i++) {
        printf(" %llu/%08x", (unsigned long long)ids[i], (unsigned)bits(dists[i]));
    }
    printf("\n");
}

/* Reads a whole file; NULL if it cannot. */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size > 0 ? (size_t)size : 1);
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* Prints one index's answers, in the order of xtask's `answers`. */
static void answers(const char *dir, const char *name, const float *queries, size_t n_bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.copse", dir, name);
    CopseIndex *index = NULL;
    MUST(copse_index_load(path, false, &index));

    size_t dims = 0, n_trees = 0;
    uint32_t metric = 99;
    uint64_t n_items = 0, len = 0;
    bool has_graph = false;
    MUST(copse_index_dims(index, &dims));
    MUST(copse_index_metric(index, &metric));
    MUST(copse_index_n_items(index, &n_items));
    MUST(copse_index_len(index, &len));
    MUST(copse_index_n_trees(index, &n_trees));
    MUST(copse_index_has_graph(index, &has_graph));
    printf("%s info: dims %zu metric %u n_items %llu len %llu n_trees %zu has_graph %d\n", name,
           dims, (unsigned)metric, (unsigned long long)n_items, (unsigned long long)len, n_trees,
           has_graph ? 1 : 0);

    size_t n_queries = n_bytes / (sizeof(float) * dims);
    uint64_t ids[N];
    float dists[N];
    size_t found = 0;
    for (size_t q = 0; q < n_queries; q++) {
        MUST(copse_index_nns_by_vector(index, queries + q * dims, dims, N, COPSE_SEARCH_K_DEFAULT,
                                       NULL, ids, dists, &found));
        print_hits(name, "vector", q, ids, dists, found);
    }

    uint64_t *batch_ids = malloc(n_queries * N * sizeof *batch_ids);
    float *batch_dists = malloc(n_queries * N * sizeof *batch_dists);
    size_t *batch_found = malloc(n_queries * sizeof *batch_found);
    MUST(copse_index_nns_by_vectors(index, queries, n_queries, dims, N, COPSE_SEARCH_K_DEFAULT,
                                    NULL, 2, batch_ids, batch_dists, batch_found));
    for (size_t q = 0; q < n_queries; q++) {
        print_hits(name, "batch", q, batch_ids + q * N, batch_dists + q * N, batch_found[q]);
    }
    free(batch_ids);
    free(batch_dists);
    free(batch_found);

    uint64_t *all = malloc(len * sizeof *all);
    uint64_t count = 0;
    MUST(copse_index_ids(index, all, len, &count));
    CHECK(count == len);
    uint64_t *allowed = malloc(len * sizeof *allowed);
    size_t n_allowed = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (all[i] % 7 == 1) allowed[n_allowed++] = all[i];
    }
    CopseFilter *filter = NULL;
    MUST(copse_filter_new(index, allowed, n_allowed, &filter));
    size_t filter_len = 0;
    MUST(copse_filter_len(filter, &filter_len));
    CHECK(filter_len == n_allowed);
    for (size_t q = 0; q < n_queries; q++) {
        MUST(copse_index_nns_by_vector(index, queries + q * dims, dims, N, COPSE_SEARCH_K_DEFAULT,
                                       filter, ids, dists, &found));
        for (size_t i = 0; i < found; i++) CHECK(ids[i] % 7 == 1);
        print_hits(name, "filtered", q, ids, dists, found);
    }
    MUST(copse_filter_free(filter));
    free(allowed);

    for (size_t q = 0; q < n_queries; q++) {
        MUST(copse_index_nns_by_vector(index, queries + q * dims, dims, N, 40, NULL, ids, dists,
                                       &found));
        print_hits(name, "search_k", q, ids, dists, found);
    }
    for (size_t i = 0; i < 20 && i < count; i++) {
        MUST(copse_index_nns_by_item(index, all[i], N, COPSE_SEARCH_K_DEFAULT, NULL, ids, dists,
                                     &found));
        print_hits(name, "item", all[i], ids, dists, found);
    }
    for (size_t i = 0; i + 1 < 10 && i + 1 < count; i++) {
        float d = 0;
        MUST(copse_index_distance(index, all[i], all[i + 1], &d));
        printf("%s distance %llu %llu: %08x\n", name, (unsigned long long)all[i],
               (unsigned long long)all[i + 1], (unsigned)bits(d));
    }
    float *vector = malloc(dims * sizeof *vector);
    for (size_t i = 0; i < 3 && i < count; i++) {
        MUST(copse_index_item_vector(index, all[i], vector, dims));
        printf("%s item_vector %llu:", name, (unsigned long long)all[i]);
        for (size_t j = 0; j < dims; j++) printf(" %08x", (unsigned)bits(vector[j]));
        printf("\n");
    }
    free(vector);
    for (size_t i = 0; i < 12 && i < count; i++) {
        char label[64];
        size_t label_len = 0;
        MUST(copse_index_label(index, all[i], label, sizeof label, &label_len));
        printf("%s label %llu: %s\n", name, (unsigned long long)all[i],
               label_len ? label : "-");
        bool has_label = !label_len;
        MUST(copse_index_has_label(index, all[i], &has_label));
        CHECK(has_label == (label_len > 0));
        if (label_len) {
            uint64_t back = 0;
            bool hit = false;
            MUST(copse_index_id_by_label(index, label, &back, &hit));
            CHECK(hit && back == all[i]);
        }
    }
    free(all);
    MUST(copse_index_free(index));
}

/* Every error path: status, message, and nothing written on failure. */
static void errors(const char *dir, const float *query) {
    char path[4096];
    snprintf(path, sizeof path, "%s/forest.copse", dir);
    CopseIndex *index = NULL;
    MUST(copse_index_load(path, true, &index));
    size_t dims = 0;
    MUST(copse_index_dims(index, &dims));
    uint64_t ids[N];
    float dists[N];
    size_t found = 12345;

    /* NULL pointers and handles. */
    EXPECT_STATUS(copse_index_load(NULL, false, &index), COPSE_STATUS_NULL_POINTER);
    EXPECT_STATUS(copse_index_load(path, false, NULL), COPSE_STATUS_NULL_POINTER);
    EXPECT_STATUS(copse_index_dims(NULL, &dims), COPSE_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(copse_index_dims(index, NULL), COPSE_STATUS_NULL_POINTER);
    EXPECT_STATUS(copse_index_nns_by_vector(index, NULL, dims, N, -1, NULL, ids, dists, &found),
                  COPSE_STATUS_NULL_POINTER);
    EXPECT_STATUS(copse_index_nns_by_vector(index, query, dims, N, -1, NULL, NULL, dists, &found),
                  COPSE_STATUS_NULL_POINTER);
    CHECK(found == 12345);

    /* Pointers that are not handles: a stack address, a handle of another type. */
    int not_a_handle = 0;
    EXPECT_STATUS(copse_index_dims((const CopseIndex *)&not_a_handle, &dims),
                  COPSE_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(copse_index_free((CopseIndex *)&not_a_handle), COPSE_STATUS_INVALID_HANDLE);
    CopseBuilder *builder = NULL;
    MUST(copse_builder_new(dims, COPSE_METRIC_ANGULAR, &builder));
    EXPECT_STATUS(copse_index_dims((const CopseIndex *)builder, &dims),
                  COPSE_STATUS_INVALID_HANDLE);

    /* Arguments out of range. */
    EXPECT_STATUS(copse_builder_new(4, 77, &builder), COPSE_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(copse_index_nns_by_vector(index, query, dims, N, -2, NULL, ids, dists, &found),
                  COPSE_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(copse_index_nns_by_vector(index, query, dims - 1, N, -1, NULL, ids, dists,
                                            &found),
                  COPSE_STATUS_WRONG_DIMENSIONS);
    EXPECT_STATUS(copse_index_nns_by_vector(index, query, SIZE_MAX, N, -1, NULL, ids, dists,
                                            &found),
                  COPSE_STATUS_INVALID_ARGUMENT);
    float *nan_query = malloc(dims * sizeof *nan_query);
    memcpy(nan_query, query, dims * sizeof *nan_query);
    nan_query[3] = NAN;
    EXPECT_STATUS(copse_index_nns_by_vector(index, nan_query, dims, N, -1, NULL, ids, dists,
                                            &found),
                  COPSE_STATUS_NOT_FINITE);
    EXPECT_STATUS(copse_index_nns_by_vectors(index, nan_query, 1, dims, N, -1, NULL, 1, ids,
                                             dists, NULL),
                  COPSE_STATUS_NOT_FINITE);
    CHECK(strstr(copse_last_error(), "query 0") != NULL);
    /* A misaligned float array. */
    unsigned char *raw = malloc(dims * sizeof(float) + 1);
    memcpy(raw + 1, query, dims * sizeof(float));
    EXPECT_STATUS(copse_index_nns_by_vector(index, (const float *)(const void *)(raw + 1), dims,
                                            N, -1, NULL, ids, dists, &found),
                  COPSE_STATUS_INVALID_ARGUMENT);
    free(raw);

    /* Ids out of range and missing (the fixture's ids are 3i + 1). */
    uint64_t n_items = 0;
    MUST(copse_index_n_items(index, &n_items));
    EXPECT_STATUS(copse_index_nns_by_item(index, n_items + 5, N, -1, NULL, ids, dists, &found),
                  COPSE_STATUS_ITEM_OUT_OF_RANGE);
    EXPECT_STATUS(copse_index_nns_by_item(index, 2, N, -1, NULL, ids, dists, &found),
                  COPSE_STATUS_ITEM_MISSING);
    float d = -1;
    EXPECT_STATUS(copse_index_distance(index, 1, UINT64_MAX, &d), COPSE_STATUS_ITEM_OUT_OF_RANGE);
    CHECK(d == -1);
    bool contains = true;
    MUST(copse_index_contains(index, 2, &contains));
    CHECK(!contains);

    /* Output buffers too small. */
    float small[2];
    EXPECT_STATUS(copse_index_item_vector(index, 1, small, 2), COPSE_STATUS_BUFFER_TOO_SMALL);
    char label[4];
    size_t label_len = 0;
    EXPECT_STATUS(copse_index_label(index, 10, label, sizeof label, &label_len),
                  COPSE_STATUS_BUFFER_TOO_SMALL);
    CHECK(label_len == strlen("item-10"));
    uint64_t some[3];
    uint64_t count = 0;
    EXPECT_STATUS(copse_index_ids(index, some, 3, &count), COPSE_STATUS_BUFFER_TOO_SMALL);
    CHECK(count == 2000);
    bool hit = true;
    uint64_t id = 0;
    MUST(copse_index_id_by_label(index, "no such label", &id, &hit));
    CHECK(!hit);

    /* A filter made for another index. */
    snprintf(path, sizeof path, "%s/graph.copse", dir);
    CopseIndex *other = NULL;
    MUST(copse_index_load(path, false, &other));
    uint64_t one = 1;
    CopseFilter *filter = NULL;
    MUST(copse_filter_new(other, &one, 1, &filter));
    EXPECT_STATUS(copse_index_nns_by_vector(index, query, dims, N, -1, filter, ids, dists, &found),
                  COPSE_STATUS_WRONG_KIND);
    EXPECT_STATUS(copse_filter_len((const CopseFilter *)index, &found),
                  COPSE_STATUS_INVALID_HANDLE);
    MUST(copse_filter_free(filter));
    EXPECT_STATUS(copse_filter_free(filter), COPSE_STATUS_INVALID_HANDLE);
    MUST(copse_index_free(other));
    EXPECT_STATUS(copse_index_n_items(other, &n_items), COPSE_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(copse_index_free(other), COPSE_STATUS_INVALID_HANDLE);
    MUST(copse_index_free(NULL));

    /* Files: missing, truncated, corrupted, foreign; from memory. */
    CopseIndex *bad = NULL;
    EXPECT_STATUS(copse_index_load("/nonexistent/copse/index.copse", false, &bad),
                  COPSE_STATUS_IO);
    CHECK(bad == NULL);
    snprintf(path, sizeof path, "%s/forest.copse", dir);
    size_t len = 0;
    unsigned char *bytes = read_file(path, &len);
    CHECK(bytes != NULL && len > 4096);
    if (bytes) {
        EXPECT_STATUS(copse_index_from_bytes(bytes, len / 2, &bad), COPSE_STATUS_FORMAT);
        EXPECT_STATUS(copse_index_from_bytes(bytes, 7, &bad), COPSE_STATUS_FORMAT);
        CopseIndex *copy = NULL;
        MUST(copse_index_from_bytes(bytes, len, &copy));
        /* The copy answers as the mapped file does, after the caller's bytes are gone. */
        bytes[len / 2] ^= 0x55;
        MUST(copse_index_nns_by_vector(copy, query, dims, N, -1, NULL, ids, dists, &found));
        uint64_t ids2[N];
        float dists2[N];
        size_t found2 = 0;
        MUST(copse_index_nns_by_vector(index, query, dims, N, -1, NULL, ids2, dists2, &found2));
        CHECK(found == found2 && memcmp(ids, ids2, found * sizeof *ids) == 0);
        MUST(copse_index_free(copy));
        /* A flipped byte in the items: opening is cheap, verify finds it. */
        CopseIndex *damaged = NULL;
        if (copse_index_from_bytes(bytes, len, &damaged) == COPSE_STATUS_OK) {
            EXPECT_STATUS(copse_index_verify(damaged), COPSE_STATUS_FORMAT);
            MUST(copse_index_free(damaged));
        }
        bytes[0] ^= 0xff;
        EXPECT_STATUS(copse_index_from_bytes(bytes, len, &bad), COPSE_STATUS_FORMAT);
        free(bytes);
    }
    MUST(copse_index_verify(index));
    EXPECT_STATUS(copse_index_from_bytes(NULL, 10, &bad), COPSE_STATUS_NULL_POINTER);

    /* Builder errors and a build through the C API. */
    float v[3] = {1, 0, 0};
    CopseBuilder *small_builder = NULL;
    MUST(copse_builder_new(3, COPSE_METRIC_EUCLIDEAN, &small_builder));
    EXPECT_STATUS(copse_builder_add_item(small_builder, 0, v, 2), COPSE_STATUS_WRONG_DIMENSIONS);
    v[1] = INFINITY;
    EXPECT_STATUS(copse_builder_add_item(small_builder, 0, v, 3), COPSE_STATUS_NOT_FINITE);
    v[1] = 0;
    uint64_t batch_ids[3] = {10, 11, 12};
    float batch[9] = {1, 0, 0, 0, 1, 0, 0, 0, NAN};
    EXPECT_STATUS(copse_builder_add_items(small_builder, batch_ids, batch, 3, 3),
                  COPSE_STATUS_NOT_FINITE);
    uint64_t added = 99;
    MUST(copse_builder_len(small_builder, &added));
    CHECK(added == 0); /* a failed batch adds nothing */
    batch[8] = 1;
    MUST(copse_builder_add_items(small_builder, batch_ids, batch, 3, 3));
    MUST(copse_builder_set_label(small_builder, 10, "ten"));
    MUST(copse_builder_set_label(small_builder, 12, ""));
    EXPECT_STATUS(copse_builder_set_label(small_builder, 11, "ten"), COPSE_STATUS_DUPLICATE_LABEL);
    EXPECT_STATUS(copse_builder_build(small_builder, 0, 1, &bad), COPSE_STATUS_BUILD);
    CopseIndex *built = NULL;
    MUST(copse_builder_build(small_builder, 4, 1, &built));
    EXPECT_STATUS(copse_builder_add_item(small_builder, 1, v, 3), COPSE_STATUS_ALREADY_BUILT);
    MUST(copse_index_nns_by_vector(built, batch + 3, 3, 3, -1, NULL, ids, dists, &found));
    CHECK(found == 3 && ids[0] == 11 && dists[0] == 0.0f);
    bool has_label = false;
    char empty[8] = "x";
    size_t empty_len = 99;
    MUST(copse_index_label(built, 12, empty, sizeof empty, &empty_len));
    MUST(copse_index_has_label(built, 12, &has_label));
    CHECK(has_label && empty_len == 0 && empty[0] == 0);
    MUST(copse_index_has_label(built, 11, &has_label));
    CHECK(!has_label);
    /* Slots past the found ones are marked. */
    MUST(copse_index_nns_by_vector(built, batch + 3, 3, 5, -1, NULL, ids, dists, &found));
    CHECK(found == 3 && ids[3] == COPSE_NO_ITEM && isnan(dists[4]));
    MUST(copse_builder_unbuild(small_builder));
    MUST(copse_builder_add_item(small_builder, 1, v, 3));
    snprintf(path, sizeof path, "/nonexistent/dir/x.copse");
    EXPECT_STATUS(copse_index_save(built, path), COPSE_STATUS_IO);
    MUST(copse_index_free(built));
    MUST(copse_builder_free(small_builder));
    EXPECT_STATUS(copse_builder_free(small_builder), COPSE_STATUS_INVALID_HANDLE);
    MUST(copse_builder_free(builder));

    /* Status names. */
    CHECK(strcmp(copse_status_name(COPSE_STATUS_ITEM_MISSING), "COPSE_STATUS_ITEM_MISSING") == 0);
    CHECK(strcmp(copse_status_name(-5), "COPSE_STATUS_UNKNOWN") == 0);
    CHECK(strlen(copse_version()) > 0);

    free(nan_query);
    MUST(copse_index_free(index));
}

/* Row types: float16 rows hold each value rounded to the nearest half (1/3 -> 1365 / 4096), the
 * type is chosen before items, and a value float16 cannot hold is refused; beside them, 4-bit
 * item codes. */
static void row_types(void) {
    const size_t dims = 4;
    CopseBuilder *builder = NULL;
    MUST(copse_builder_new(dims, COPSE_METRIC_EUCLIDEAN, &builder));
    EXPECT_STATUS(copse_builder_set_dtype(builder, 17), COPSE_STATUS_INVALID_ARGUMENT);
    MUST(copse_builder_set_dtype(builder, COPSE_DTYPE_FLOAT16));
    EXPECT_STATUS(copse_builder_set_item_codes(builder, 5), COPSE_STATUS_INVALID_ARGUMENT);
    MUST(copse_builder_set_item_codes(builder, 4));
    const float third[4] = {1.0f / 3.0f, 1.0f / 3.0f, -1.0f / 3.0f, 0.0f};
    const float huge[4] = {1.0f, 70000.0f, 0.0f, 0.0f};
    MUST(copse_builder_add_item(builder, 7, third, dims));
    EXPECT_STATUS(copse_builder_add_item(builder, 8, huge, dims), COPSE_STATUS_BUILD);
    EXPECT_STATUS(copse_builder_set_dtype(builder, COPSE_DTYPE_INT8), COPSE_STATUS_WRONG_KIND);
    CopseIndex *index = NULL;
    MUST(copse_builder_build(builder, 2, 1, &index));
    uint32_t dtype = 99;
    MUST(copse_index_dtype(index, &dtype));
    CHECK(dtype == COPSE_DTYPE_FLOAT16);
    uint32_t code_bits = 99;
    MUST(copse_index_item_code_bits(index, &code_bits));
    CHECK(code_bits == 4);
    float stored[4];
    MUST(copse_index_item_vector(index, 7, stored, dims));
    CHECK(stored[0] == 1365.0f / 4096.0f && stored[2] == -1365.0f / 4096.0f && stored[3] == 0.0f);
    uint64_t len = 0;
    MUST(copse_index_len(index, &len));
    CHECK(len == 1);
    MUST(copse_index_free(index));
    MUST(copse_builder_free(builder));
}

/* A build on disk, saved, loaded again, with a graph: the loaded index answers as the built one. */
static void round_trip(const char *dir) {
    const size_t dims = 8, items = 300;
    CopseBuilder *builder = NULL;
    MUST(copse_builder_new(dims, COPSE_METRIC_MANHATTAN, &builder));
    MUST(copse_builder_set_seed(builder, 5));
    CopseGraphOptions graph;
    MUST(copse_graph_options_default(&graph));
    CHECK(graph.degree > 0 && graph.alpha >= 1.0f);
    graph.degree = 16;
    MUST(copse_builder_set_graph(builder, &graph));
    char path[4096];
    snprintf(path, sizeof path, "%s/c-round-trip.copse", dir);
    MUST(copse_builder_on_disk_build(builder, path));
    float *rows = malloc(items * dims * sizeof *rows);
    uint64_t *ids = malloc(items * sizeof *ids);
    unsigned state = 12345;
    for (size_t i = 0; i < items * dims; i++) {
        state = state * 1103515245u + 12345u;
        rows[i] = (float)((state >> 8) % 1000) / 100.0f;
    }
    for (size_t i = 0; i < items; i++) ids[i] = (uint64_t)i * 1000000007ull;
    MUST(copse_builder_add_items(builder, ids, rows, items, dims));
    CopseIndex *built = NULL;
    MUST(copse_builder_build(builder, 5, 0, &built));
    bool has_graph = false;
    MUST(copse_index_has_graph(built, &has_graph));
    CHECK(has_graph);
    CopseIndex *loaded = NULL;
    MUST(copse_index_load(path, false, &loaded));
    for (size_t q = 0; q < items; q += 37) {
        uint64_t a[N], b[N];
        float da[N], db[N];
        size_t fa = 0, fb = 0;
        MUST(copse_index_nns_by_item(built, ids[q], N, -1, NULL, a, da, &fa));
        MUST(copse_index_nns_by_vector(loaded, rows + q * dims, dims, N, -1, NULL, b, db, &fb));
        CHECK(fa == N && fb == N);
        CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(da, db, sizeof da) == 0);
        CHECK(a[0] == ids[q] && da[0] == 0.0f);
    }
    MUST(copse_index_free(loaded));
    MUST(copse_index_free(built));
    MUST(copse_builder_free(builder));
    remove(path);
    free(rows);
    free(ids);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <fixture-dir>\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    char path[4096];
    snprintf(path, sizeof path, "%s/queries.f32", dir);
    size_t n_bytes = 0;
    float *queries = (float *)read_file(path, &n_bytes);
    if (!queries) {
        fprintf(stderr, "cannot read %s\n", path);
        return 2;
    }
    answers(dir, "forest", queries, n_bytes);
    answers(dir, "graph", queries, n_bytes);
    errors(dir, queries);
    row_types();
    round_trip(dir);
    free(queries);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    fprintf(stderr, "test_copse.c: all checks passed\n");
    return 0;
}
