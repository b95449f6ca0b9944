/*
 * Query cost through the C API, for `cargo xtask bench-glove --c-api`, which runs the same loop
 * through the Rust API in its own process and reports the ratio:
 *
 *     bench_copse <index> <queries.f32> <n> <search_k> <passes>
 *
 * One warm-up pass, then `passes` timed passes over every query, one thread; prints the best
 * pass's seconds and a checksum of the ids found (which xtask compares with the Rust API's).
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */

#include "copse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, enum CopseStatus status) {
    fprintf(stderr, "%s: %s: %s\n", what, copse_status_name(status), copse_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s <index> <queries.f32> <n> <search_k> <passes>\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)strtoull(argv[3], NULL, 10);
    int64_t search_k = strtoll(argv[4], NULL, 10);
    int passes = atoi(argv[5]);
    CopseIndex *index = NULL;
    enum CopseStatus status = copse_index_load(argv[1], true, &index);
    if (status) die("load", status);
    size_t dims = 0;
    copse_index_dims(index, &dims);

    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t bytes = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    float *queries = malloc(bytes);
    if (!queries || fread(queries, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    size_t n_queries = bytes / (dims * sizeof(float));

    uint64_t *ids = malloc(n * sizeof *ids);
    float *distances = malloc(n * sizeof *distances);
    uint64_t checksum = 0;
    double best = 1e300;
    for (int pass = -1; pass < passes; pass++) {
        double start = now();
        uint64_t sum = 0;
        for (size_t q = 0; q < n_queries; q++) {
            size_t found = 0;
            status = copse_index_nns_by_vector(index, queries + q * dims, dims, n, search_k, NULL,
                                               ids, distances, &found);
            if (status) die("query", status);
            for (size_t i = 0; i < found; i++) sum += ids[i] * (i + 1);
        }
        double seconds = now() - start;
        if (pass >= 0 && seconds < best) best = seconds;
        checksum = sum;
    }
    printf("%.9f %llu\n", best, (unsigned long long)checksum);
    free(ids);
    free(distances);
    free(queries);
    copse_index_free(index);
    return 0;
}
