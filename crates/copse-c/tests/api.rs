//! The C API called from Rust: batch queries answer as single ones at every thread count,
//! concurrent queries on one index from many threads answer as one thread does, and results
//! match the Rust API's on the same index. (The C and C++ programs under tests/ check the
//! error paths and the same answers from C; `cargo xtask c-api` runs them.)

use std::ptr;

use copse::{Element, Index, IndexBuilder, Metric};
use copse_c::*;

const DIMS: usize = 16;

fn vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n * DIMS)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// An index built through the C API (ids 5i), and the same built through the Rust API.
fn build(metric: u32, rust_metric: Metric) -> (*mut CopseIndex, Index, Vec<u64>) {
    build_as(metric, rust_metric, COPSE_DTYPE_FLOAT32, Element::F32)
}

/// [`build`] with rows stored as `dtype` (C code) and `element` (Rust).
fn build_as(
    metric: u32,
    rust_metric: Metric,
    dtype: u32,
    element: Element,
) -> (*mut CopseIndex, Index, Vec<u64>) {
    let rows = vectors(1500, 7);
    let ids: Vec<u64> = (0..1500u64).map(|i| 5 * i).collect();
    let mut builder = ptr::null_mut();
    // SAFETY: every pointer is valid for the lengths given.
    unsafe {
        assert_eq!(
            copse_builder_new(DIMS, metric, &mut builder),
            CopseStatus::Ok
        );
        assert_eq!(copse_builder_set_seed(builder, 3), CopseStatus::Ok);
        if dtype != COPSE_DTYPE_FLOAT32 {
            assert_eq!(copse_builder_set_dtype(builder, dtype), CopseStatus::Ok);
        }
        assert_eq!(
            copse_builder_add_items(builder, ids.as_ptr(), rows.as_ptr(), ids.len(), DIMS),
            CopseStatus::Ok
        );
        let mut index = ptr::null_mut();
        assert_eq!(
            copse_builder_build(builder, 12, 2, &mut index),
            CopseStatus::Ok
        );
        assert_eq!(copse_builder_free(builder), CopseStatus::Ok);
        let mut rust = IndexBuilder::new(DIMS, rust_metric)
            .unwrap()
            .seed(3)
            .dtype(element)
            .unwrap();
        for (id, row) in ids.iter().zip(rows.chunks_exact(DIMS)) {
            rust.add_item(*id, row).unwrap();
        }
        (index, rust.build_with_threads(12, 2).unwrap(), ids)
    }
}

/// One query through the C API: (ids, distances) of what it found.
fn query(
    index: *const CopseIndex,
    q: &[f32],
    n: usize,
    filter: *const CopseFilter,
) -> (Vec<u64>, Vec<f32>) {
    let mut ids = vec![0u64; n];
    let mut distances = vec![0f32; n];
    let mut found = usize::MAX;
    // SAFETY: the buffers hold `n` slots and `q` its length.
    let status = unsafe {
        copse_index_nns_by_vector(
            index,
            q.as_ptr(),
            q.len(),
            n,
            COPSE_SEARCH_K_DEFAULT,
            filter,
            ids.as_mut_ptr(),
            distances.as_mut_ptr(),
            &mut found,
        )
    };
    assert_eq!(status, CopseStatus::Ok);
    assert!(found <= n);
    assert!(ids[found..].iter().all(|&id| id == COPSE_NO_ITEM));
    assert!(distances[found..].iter().all(|d| d.is_nan()));
    ids.truncate(found);
    distances.truncate(found);
    (ids, distances)
}

/// Each of `queries` (rows of `DIMS`) finds the same ids at the same distances through the C
/// API's `index` as through `rust`.
fn answers_as_rust(index: *const CopseIndex, rust: &Index, queries: &[f32]) {
    for q in queries.chunks_exact(DIMS) {
        let (ids, distances) = query(index, q, 10, ptr::null());
        let expected = rust.nns_by_vector(q, 10, None).unwrap();
        assert_eq!(ids, expected.iter().map(|n| n.id).collect::<Vec<_>>());
        assert_eq!(
            distances,
            expected.iter().map(|n| n.distance).collect::<Vec<_>>()
        );
    }
}

#[test]
fn answers_match_the_rust_api() {
    for (code, metric) in [
        (COPSE_METRIC_ANGULAR, Metric::Angular),
        (COPSE_METRIC_EUCLIDEAN, Metric::Euclidean),
        (COPSE_METRIC_MANHATTAN, Metric::Manhattan),
        (COPSE_METRIC_DOT, Metric::Dot),
    ] {
        let (index, rust, _) = build(code, metric);
        answers_as_rust(index, &rust, &vectors(30, 99));
        // SAFETY: a live handle.
        assert_eq!(unsafe { copse_index_free(index) }, CopseStatus::Ok);
    }
}

/// Row types chosen through the C API give the index the Rust API builds with the same type:
/// the same answers and stored vectors, and `copse_index_dtype` names the type.
#[test]
fn row_types_match_the_rust_api() {
    for (code, metric, dtype, element) in [
        (
            COPSE_METRIC_ANGULAR,
            Metric::Angular,
            COPSE_DTYPE_FLOAT16,
            Element::F16,
        ),
        (
            COPSE_METRIC_EUCLIDEAN,
            Metric::Euclidean,
            COPSE_DTYPE_BFLOAT16,
            Element::Bf16,
        ),
        (COPSE_METRIC_DOT, Metric::Dot, COPSE_DTYPE_INT8, Element::I8),
    ] {
        let (index, rust, ids) = build_as(code, metric, dtype, element);
        let mut got = u32::MAX;
        // SAFETY: a live handle and a writable u32.
        let status = unsafe { copse_index_dtype(index, &mut got) };
        assert_eq!(status, CopseStatus::Ok);
        assert_eq!(got, dtype);
        for q in vectors(20, 98).chunks_exact(DIMS) {
            let (found, distances) = query(index, q, 10, ptr::null());
            let expected = rust.nns_by_vector(q, 10, None).unwrap();
            assert_eq!(found, expected.iter().map(|n| n.id).collect::<Vec<_>>());
            assert_eq!(
                distances,
                expected.iter().map(|n| n.distance).collect::<Vec<_>>()
            );
        }
        for &id in ids.iter().step_by(97) {
            let mut v = vec![0f32; DIMS];
            // SAFETY: `v` holds DIMS floats.
            let status = unsafe { copse_index_item_vector(index, id, v.as_mut_ptr(), DIMS) };
            assert_eq!(status, CopseStatus::Ok);
            assert_eq!(v, rust.item_vector(id).unwrap());
        }
        // SAFETY: a live handle.
        assert_eq!(unsafe { copse_index_free(index) }, CopseStatus::Ok);
    }
    // Refused: an unknown code, a type the metric cannot store, a type set after items.
    // SAFETY: handles made and freed here; pointers valid for the lengths given.
    unsafe {
        let mut builder = ptr::null_mut();
        assert_eq!(
            copse_builder_new(64, COPSE_METRIC_HAMMING, &mut builder),
            CopseStatus::Ok
        );
        assert_ne!(
            copse_builder_set_dtype(builder, COPSE_DTYPE_FLOAT16),
            CopseStatus::Ok
        );
        let message = std::ffi::CStr::from_ptr(copse_last_error()).to_string_lossy();
        assert!(message.contains("float16"), "{message}");
        assert_eq!(
            copse_builder_set_dtype(builder, COPSE_DTYPE_BITS),
            CopseStatus::Ok
        );
        assert_eq!(copse_builder_free(builder), CopseStatus::Ok);
        assert_eq!(
            copse_builder_new(DIMS, COPSE_METRIC_EUCLIDEAN, &mut builder),
            CopseStatus::Ok
        );
        assert_eq!(
            copse_builder_set_dtype(builder, 99),
            CopseStatus::InvalidArgument
        );
        let row = vectors(1, 3);
        assert_eq!(
            copse_builder_add_item(builder, 1, row.as_ptr(), DIMS),
            CopseStatus::Ok
        );
        assert_ne!(
            copse_builder_set_dtype(builder, COPSE_DTYPE_INT8),
            CopseStatus::Ok
        );
        assert_eq!(copse_builder_free(builder), CopseStatus::Ok);
    }
}

/// The item codes chosen through the C API (0, 4 or 8 bits beside float16 rows) give the index
/// the Rust API builds with the same choice, and `copse_index_item_code_bits` says which.
#[test]
fn item_codes_match_the_rust_api() {
    let rows = vectors(1200, 8);
    for bits in [0u32, 4, 8] {
        let mut builder = ptr::null_mut();
        // SAFETY: every pointer is valid for the lengths given; handles freed here.
        let index = unsafe {
            assert_eq!(
                copse_builder_new(DIMS, COPSE_METRIC_ANGULAR, &mut builder),
                CopseStatus::Ok
            );
            assert_eq!(copse_builder_set_seed(builder, 3), CopseStatus::Ok);
            assert_eq!(
                copse_builder_set_dtype(builder, COPSE_DTYPE_FLOAT16),
                CopseStatus::Ok
            );
            assert_eq!(copse_builder_set_item_codes(builder, bits), CopseStatus::Ok);
            for (id, row) in rows.chunks_exact(DIMS).enumerate() {
                assert_eq!(
                    copse_builder_add_item(builder, id as u64, row.as_ptr(), DIMS),
                    CopseStatus::Ok
                );
            }
            let mut index = ptr::null_mut();
            assert_eq!(
                copse_builder_build(builder, 6, 2, &mut index),
                CopseStatus::Ok
            );
            assert_eq!(copse_builder_free(builder), CopseStatus::Ok);
            index
        };
        let mut got = 99;
        // SAFETY: a live handle and a local out-parameter.
        let status = unsafe { copse_index_item_code_bits(index, &mut got) };
        assert_eq!(status, CopseStatus::Ok);
        assert_eq!(got, bits);
        let mut rust = IndexBuilder::new(DIMS, Metric::Angular)
            .unwrap()
            .seed(3)
            .dtype(Element::F16)
            .unwrap();
        match bits {
            0 => rust.set_item_codes(false).unwrap(),
            _ => rust.set_item_code_bits(bits).unwrap(),
        }
        for (id, row) in rows.chunks_exact(DIMS).enumerate() {
            rust.add_item(id as u64, row).unwrap();
        }
        let rust = rust.build_with_threads(6, 2).unwrap();
        assert_eq!(rust.item_code_width().map_or(0, |w| w.bits()), bits);
        answers_as_rust(index, &rust, &vectors(20, 98));
        // SAFETY: a live handle.
        assert_eq!(unsafe { copse_index_free(index) }, CopseStatus::Ok);
    }
    // Refused: a width but 0, 4 and 8; 4 bits or none beside float32 rows; and NULL.
    // SAFETY: handles made and freed here.
    unsafe {
        let mut builder = ptr::null_mut();
        assert_eq!(
            copse_builder_new(DIMS, COPSE_METRIC_EUCLIDEAN, &mut builder),
            CopseStatus::Ok
        );
        for bits in [1, 5, 16, u32::MAX] {
            assert_eq!(
                copse_builder_set_item_codes(builder, bits),
                CopseStatus::InvalidArgument
            );
        }
        assert_eq!(copse_builder_set_item_codes(builder, 8), CopseStatus::Ok);
        assert_ne!(copse_builder_set_item_codes(builder, 4), CopseStatus::Ok);
        let message = std::ffi::CStr::from_ptr(copse_last_error()).to_string_lossy();
        assert!(message.contains("item codes"), "{message}");
        assert_ne!(copse_builder_set_item_codes(builder, 0), CopseStatus::Ok);
        assert_eq!(copse_builder_free(builder), CopseStatus::Ok);
        assert_ne!(
            copse_builder_set_item_codes(ptr::null_mut(), 4),
            CopseStatus::Ok
        );
        let mut got = 0;
        assert_ne!(
            copse_index_item_code_bits(ptr::null(), &mut got),
            CopseStatus::Ok
        );
    }
}

#[test]
fn batches_answer_as_single_queries() {
    let (index, _, ids) = build(COPSE_METRIC_EUCLIDEAN, Metric::Euclidean);
    let allowed: Vec<u64> = ids.iter().copied().filter(|id| id % 3 == 0).collect();
    let mut filter = ptr::null_mut();
    // SAFETY: valid handle and array.
    unsafe {
        assert_eq!(
            copse_filter_new(index, allowed.as_ptr(), allowed.len(), &mut filter),
            CopseStatus::Ok
        );
    }
    let queries = vectors(37, 5);
    let n_queries = queries.len() / DIMS;
    for n in [0usize, 1, 7, 2000] {
        for threads in [0usize, 1, 2, 3, 64] {
            for with_filter in [false, true] {
                let f = if with_filter {
                    filter.cast_const()
                } else {
                    ptr::null()
                };
                let mut out_ids = vec![0u64; n_queries * n];
                let mut out_distances = vec![0f32; n_queries * n];
                let mut found = vec![usize::MAX; n_queries];
                // SAFETY: buffers of n_queries * n slots, n_queries counts.
                let status = unsafe {
                    copse_index_nns_by_vectors(
                        index,
                        queries.as_ptr(),
                        n_queries,
                        DIMS,
                        n,
                        COPSE_SEARCH_K_DEFAULT,
                        f,
                        threads,
                        out_ids.as_mut_ptr(),
                        out_distances.as_mut_ptr(),
                        found.as_mut_ptr(),
                    )
                };
                assert_eq!(status, CopseStatus::Ok);
                for (q, vector) in queries.chunks_exact(DIMS).enumerate() {
                    let (ids, distances) = query(index, vector, n, f);
                    assert_eq!(found[q], ids.len());
                    assert_eq!(&out_ids[q * n..q * n + ids.len()], &ids[..]);
                    assert_eq!(&out_distances[q * n..q * n + ids.len()], &distances[..]);
                    if with_filter {
                        assert!(ids.iter().all(|id| id % 3 == 0));
                    }
                }
                // Ids only: distances and counts may be NULL.
                let mut only_ids = vec![0u64; n_queries * n];
                // SAFETY: as above, with NULL for the optional outputs.
                let status = unsafe {
                    copse_index_nns_by_vectors(
                        index,
                        queries.as_ptr(),
                        n_queries,
                        DIMS,
                        n,
                        COPSE_SEARCH_K_DEFAULT,
                        f,
                        threads,
                        only_ids.as_mut_ptr(),
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                };
                assert_eq!(status, CopseStatus::Ok);
                assert_eq!(only_ids, out_ids);
            }
        }
    }
    // SAFETY: live handles, freed once.
    unsafe {
        assert_eq!(copse_filter_free(filter), CopseStatus::Ok);
        assert_eq!(copse_index_free(index), CopseStatus::Ok);
    }
}

#[test]
fn concurrent_queries_on_one_index() {
    let (index, _, _) = build(COPSE_METRIC_ANGULAR, Metric::Angular);
    let queries = vectors(40, 11);
    let expected: Vec<_> = queries
        .chunks_exact(DIMS)
        .map(|q| query(index, q, 10, ptr::null()))
        .collect();
    let shared = index as usize;
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (queries, expected) = (&queries, &expected);
            scope.spawn(move || {
                for round in 0..20 {
                    for (q, vector) in queries.chunks_exact(DIMS).enumerate() {
                        let got = query(shared as *const CopseIndex, vector, 10, ptr::null());
                        assert_eq!(got, expected[q], "thread {t} round {round} query {q}");
                    }
                    // Handles come and go on other threads meanwhile.
                    let mut builder = ptr::null_mut();
                    // SAFETY: a fresh handle, freed once.
                    unsafe {
                        assert_eq!(
                            copse_builder_new(4, COPSE_METRIC_DOT, &mut builder),
                            CopseStatus::Ok
                        );
                        assert_eq!(copse_builder_free(builder), CopseStatus::Ok);
                    }
                }
            });
        }
    });
    // SAFETY: a live handle.
    assert_eq!(unsafe { copse_index_free(index) }, CopseStatus::Ok);
}

#[test]
fn errors_are_per_thread() {
    let mut index = ptr::null_mut();
    // SAFETY: a valid path string and out pointer.
    let status = unsafe { copse_index_load(c"/nonexistent/x.copse".as_ptr(), false, &mut index) };
    assert_eq!(status, CopseStatus::Io);
    assert!(index.is_null());
    // SAFETY: the library's NUL-terminated string.
    let message = unsafe { std::ffi::CStr::from_ptr(copse_last_error()) };
    assert!(message.to_string_lossy().contains("/nonexistent/x.copse"));
    std::thread::spawn(|| {
        // SAFETY: as above.
        let other = unsafe { std::ffi::CStr::from_ptr(copse_last_error()) };
        assert!(other.is_empty());
    })
    .join()
    .unwrap();
}
