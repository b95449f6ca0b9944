//! An argument fuzz of the public API: every builder and index method with extreme sizes, ids,
//! counts and values (0, 1, 2^31, 2^32, 2^64 - 1, NaN, infinities, -0.0, subnormals, wrong
//! lengths). Each call must return (a result or an error), never panic or abort, and what it
//! returns must be sane (no more neighbours than asked for or than exist, sorted, no NaN).

mod common;

use common::{METRICS, gaussian, rng};
use copse::{Index, IndexBuilder, Metric};
use proptest::prelude::*;
use std::sync::OnceLock;

const DIMS: usize = 8;
const ITEMS: usize = 50;

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        0..70usize,
        Just(1usize << 31),
        Just(u32::MAX as usize),
        Just(1usize << 32),
        Just(usize::MAX / 2),
        Just(usize::MAX),
    ]
}

fn ids() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..60u64,
        Just(u64::from(u32::MAX)),
        Just(1u64 << 32),
        Just(1u64 << 63),
        Just(u64::MAX),
    ]
}

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -3.0f32..3.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(-0.0f32),
        1 => Just(f32::MAX),
        1 => Just(f32::MIN_POSITIVE / 4.0),
        1 => Just(1e19f32),
    ]
}

/// Vectors mostly of the right length, sometimes not.
fn vector() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        4 => prop::collection::vec(value(), DIMS),
        1 => prop::collection::vec(value(), 0..20),
    ]
}

fn metric() -> impl Strategy<Value = Metric> {
    prop::sample::select(METRICS.to_vec())
}

/// One built index per metric, shared by the cases.
fn index(metric: Metric) -> &'static Index {
    static INDEXES: OnceLock<Vec<Index>> = OnceLock::new();
    let all = INDEXES.get_or_init(|| {
        METRICS
            .iter()
            .map(|&m| {
                let mut b = IndexBuilder::new(DIMS, m).unwrap().seed(3);
                for (id, v) in gaussian(&mut rng(5), ITEMS, DIMS).iter().enumerate() {
                    let v: Vec<f32> = if m == Metric::Hamming {
                        v.iter().map(|x| f32::from(*x > 0.0)).collect()
                    } else {
                        v.clone()
                    };
                    // Holes too: every fifth id is left out.
                    if id % 5 != 4 {
                        b.add_item(id as u64, &v).unwrap();
                    }
                }
                b.build(3).unwrap()
            })
            .collect()
    });
    &all[METRICS.iter().position(|&m| m == metric).unwrap()]
}

/// At most `n` results, present items, no NaN, best first (dot reports the inner product, so
/// its best is the largest).
fn check_neighbours(found: &[copse::Neighbor], n: usize, index: &Index) {
    assert!(found.len() <= n);
    assert!(found.len() as u64 <= index.n_items());
    for pair in found.windows(2) {
        let ordered = if index.metric() == Metric::Dot {
            pair[0].distance >= pair[1].distance
        } else {
            pair[0].distance <= pair[1].distance
        };
        assert!(ordered, "{:?} not best first: {pair:?}", index.metric());
    }
    for nb in found {
        assert!(!nb.distance.is_nan(), "{found:?}");
        assert!(index.contains(nb.id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn queries_never_panic(
        metric in metric(),
        id in ids(),
        other in ids(),
        n in sizes(),
        search_k in prop::option::of(sizes()),
        v in vector(),
        words in prop::collection::vec(any::<u64>(), 0..3),
    ) {
        let index = index(metric);
        if let Ok(found) = index.nns_by_item(id, n, search_k) {
            check_neighbours(&found, n, index);
        }
        if let Ok(found) = index.nns_by_vector(&v, n, search_k) {
            check_neighbours(&found, n, index);
            prop_assert!(v.iter().all(|x| x.is_finite()));
        }
        if let Ok(found) = index.nns_by_bits(&words, n, search_k) {
            check_neighbours(&found, n, index);
        }
        let mut out = Vec::new();
        let _ = index.nns_by_vector_into(&v, n, search_k, &mut out);
        if let Ok(d) = index.distance(id, other) {
            prop_assert!(!d.is_nan());
            if metric == Metric::Angular {
                prop_assert!((0.0..=2.0).contains(&d));
            }
        }
        if let Ok(row) = index.item_vector(id) {
            prop_assert_eq!(row.len(), DIMS);
        }
        let _ = index.item_bits(id);
        prop_assert_eq!(index.contains(id), id < ITEMS as u64 && id % 5 != 4);
    }

    #[test]
    fn building_never_panics(
        metric in metric(),
        dims in prop_oneof![0..10usize, Just(1usize << 31), Just(usize::MAX)],
        items in prop::collection::vec((prop_oneof![0..20u64, Just(u64::from(u32::MAX)), Just(1u64 << 31), Just(1u64 << 40), Just(u64::MAX)], vector()), 0..8),
        n_trees in sizes(),
        threads in prop_oneof![8 => 0..4usize, 1 => Just(usize::MAX)],
        seed in any::<u64>(),
    ) {
        let Ok(builder) = IndexBuilder::new(dims, metric) else {
            return Ok(());
        };
        let mut builder = builder.seed(seed);
        for (id, v) in &items {
            let _ = builder.add_item(*id, v);
        }
        // Keep the successful builds small: huge tree counts must fail, small ones may build.
        if let Ok(index) = builder.build_with_threads(n_trees, threads) {
            prop_assert!(n_trees >= 1);
            prop_assert!(index.n_trees() == n_trees);
            index.verify().unwrap();
        }
    }
}

/// Found by the fuzz: finite values whose squared norm overflows f32 made dot products
/// `inf - inf = NaN`. Angular and dot refuse such queries, as the builder refuses such items.
#[test]
fn queries_whose_norm_overflows_are_refused_for_angular_and_dot() {
    let huge = [1e20f32, -1e20, 3e38, -3e38, 0.0, 1.0, -1.0, 2.0];
    for metric in [Metric::Angular, Metric::Dot] {
        let err = index(metric).nns_by_vector(&huge, 5, None).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
    }
    for metric in [Metric::Euclidean, Metric::Manhattan] {
        let found = index(metric).nns_by_vector(&huge, 5, None).unwrap();
        check_neighbours(&found, 5, index(metric));
    }
}
