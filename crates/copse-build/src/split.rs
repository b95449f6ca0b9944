//! Choosing and applying one node's split, following Annoy: a hyperplane between two centroids
//! found by count-weighted two-means over a random sample of the node's items (angular through
//! the origin, euclidean and manhattan with an offset, dot through the Bachrach et al. (2014)
//! extra dimension that reduces it to angular), or a random bit position for hamming. Unbalanced
//! splits are retried, then replaced by a random assignment of sides.

use copse_distance::{Dot, Kernels, Rows, WithKernels};
use copse_format::{Metric, SplitNode};
use rand::RngExt;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::BuildError;

/// Two-means iterations per split, as in Annoy.
const TWO_MEANS_STEPS: usize = 200;
/// Split attempts before the imbalance check gives up on hyperplanes, as in Annoy.
const SPLIT_ATTEMPTS: usize = 3;
/// A split sending more than this share of the items to one side is retried.
const MAX_IMBALANCE: f64 = 0.95;
/// A random assignment is redrawn while one side holds more than this share.
const MAX_RANDOM_IMBALANCE: f64 = 0.99;
/// Random bit positions a hamming split tries before scanning every bit, as in Annoy.
const HAMMING_TRIES: usize = 20;
/// How many samples ahead two-means prefetches rows.
const PREFETCH_AHEAD: usize = 8;

/// What a split reads: the store's vectors, seen through the metric.
#[derive(Clone, Copy)]
pub(crate) struct Items<'a> {
    pub metric: Metric,
    pub dims: usize,
    pub rows: Rows<'a>,
    pub norms: &'a [f32],
    pub words: &'a [u64],
    pub row_len: usize,
    /// Largest norm of any item (dot): the radius of the sphere the transform maps items onto.
    pub max_norm: f32,
}

impl Items<'_> {
    /// The dot transform's extra coordinate, `sqrt(max_norm^2 - |x|^2)`.
    #[inline(always)]
    fn extra(&self, id: u32) -> f32 {
        let norm = self.norms.get(id as usize).copied().unwrap_or(0.0);
        let m = f64::from(self.max_norm);
        let n = f64::from(norm);
        (m * m - n * n).max(0.0).sqrt() as f32
    }
}

/// A chosen split: the node struct to store, the normal to store beside it (empty for
/// hamming), and where the partitioned ids change sides.
pub(crate) struct Split {
    pub node: SplitNode,
    pub normal: Vec<f32>,
    pub mid: usize,
}

/// Reusable buffers for one tree's splits.
#[derive(Default)]
pub(crate) struct Scratch {
    margins: Vec<f32>,
    sides: Vec<bool>,
    picks: Vec<u32>,
    p: Vec<f32>,
    q: Vec<f32>,
}

/// Splits `ids` (more than one item) in place: ids on the negative side first, then the
/// positive side from `mid` on. Both sides are non-empty.
pub(crate) fn split_node(
    items: &Items<'_>,
    ids: &mut [u32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<Split, BuildError> {
    let n = ids.len();
    // Dot: the transform uses the largest norm among this node's items, not the whole index's
    // (norm-ranging, Yan et al. 2018): with widely spread norms a global maximum pushes most
    // items towards the extra axis and the splits stop separating directions.
    let local;
    let items = if items.metric == Metric::Dot {
        let max_norm = ids
            .iter()
            .map(|&id| items.norms.get(id as usize).copied().unwrap_or(0.0))
            .fold(0.0f32, f32::max);
        local = Items { max_norm, ..*items };
        &local
    } else {
        items
    };
    scratch.sides.clear();
    scratch.sides.resize(n, false);
    let mut chosen = None;
    for _ in 0..SPLIT_ATTEMPTS {
        let (node, normal) = match items.metric {
            Metric::Hamming => (hamming_split(items, ids, rng), Vec::new()),
            _ => hyperplane_split(items, ids, rng, scratch)?,
        };
        assign_sides(items, ids, &node, &normal, rng, scratch)?;
        if imbalance(&scratch.sides) <= MAX_IMBALANCE {
            chosen = Some((node, normal));
            break;
        }
    }
    let (node, normal) = match chosen {
        Some(found) => found,
        None => {
            // No useful hyperplane (duplicates, or a pathological sample): random sides, and a
            // split that sends queries down both children with equal priority.
            loop {
                for side in scratch.sides.iter_mut() {
                    *side = rng.random::<bool>();
                }
                if imbalance(&scratch.sides) <= MAX_RANDOM_IMBALANCE {
                    break;
                }
            }
            let node = SplitNode {
                axis: if items.metric == Metric::Hamming {
                    SplitNode::RANDOM
                } else {
                    0
                },
                ..SplitNode::default()
            };
            let normal = match items.metric {
                Metric::Hamming => Vec::new(),
                _ => vec![0.0; items.dims],
            };
            (node, normal)
        }
    };
    let mid = partition(ids, &mut scratch.sides);
    Ok(Split { node, normal, mid })
}

/// Share of the items on the larger side.
fn imbalance(sides: &[bool]) -> f64 {
    let right = sides.iter().filter(|&&s| s).count();
    let left = sides.len() - right;
    left.max(right) as f64 / sides.len().max(1) as f64
}

/// Moves ids with side `false` before those with side `true`; returns the first `true` index.
fn partition(ids: &mut [u32], sides: &mut [bool]) -> usize {
    let (mut lo, mut hi) = (0, ids.len());
    while lo < hi {
        if sides[lo] {
            hi -= 1;
            ids.swap(lo, hi);
            sides.swap(lo, hi);
        } else {
            lo += 1;
        }
    }
    lo
}

/// Which side each id falls on. A margin of exactly zero picks a side at random, as in Annoy.
fn assign_sides(
    items: &Items<'_>,
    ids: &[u32],
    node: &SplitNode,
    normal: &[f32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<(), BuildError> {
    let sides = &mut scratch.sides;
    if items.metric == Metric::Hamming {
        for (side, &id) in sides.iter_mut().zip(ids) {
            let bit = bit_of(items, id, node.axis);
            *side = bit;
        }
        return Ok(());
    }
    let margins = &mut scratch.margins;
    margins.clear();
    margins.resize(ids.len(), 0.0);
    let (plane, extra) = normal.split_at(items.dims);
    copse_distance::dispatch(MarginsOp {
        rows: items.rows,
        normal: plane,
        ids,
        out: margins,
    })?
    .map_err(|e| BuildError::Internal(e.to_string()))?;
    let extra = extra.first().copied().unwrap_or(0.0);
    for ((side, margin), &id) in sides.iter_mut().zip(margins.iter()).zip(ids) {
        let m = match items.metric {
            Metric::Euclidean | Metric::Manhattan => margin + node.offset,
            Metric::Dot => margin + extra * items.extra(id),
            _ => *margin,
        };
        *side = if m != 0.0 {
            m > 0.0
        } else {
            rng.random::<bool>()
        };
    }
    Ok(())
}

fn bit_of(items: &Items<'_>, id: u32, axis: u32) -> bool {
    let word = id as usize * items.row_len + axis as usize / 64;
    items
        .words
        .get(word)
        .is_some_and(|w| w >> (axis % 64) & 1 == 1)
}

/// Annoy's hamming split: a random bit that some but not all items have set; failing that,
/// the first such bit; failing that (all items equal), bit 0, which the imbalance check then
/// replaces with a random split.
fn hamming_split(items: &Items<'_>, ids: &[u32], rng: &mut Xoshiro256PlusPlus) -> SplitNode {
    let splits = |axis: u32| {
        let set = ids.iter().filter(|&&id| bit_of(items, id, axis)).count();
        set > 0 && set < ids.len()
    };
    let dims = items.dims as u32;
    let tried = (0..HAMMING_TRIES)
        .map(|_| rng.random_range(0..dims))
        .find(|&a| splits(a));
    let axis = tried
        .or_else(|| (0..dims).find(|&a| splits(a)))
        .unwrap_or(0);
    SplitNode {
        axis,
        ..SplitNode::default()
    }
}

/// A two-means hyperplane for an f32 metric. Returns the split node (offset filled in) and the
/// normal: `dims` values, plus the extra coordinate's weight for dot (dropped when stored, since
/// queries have zero there).
fn hyperplane_split(
    items: &Items<'_>,
    ids: &[u32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<(SplitNode, Vec<f32>), BuildError> {
    let n = ids.len() as u32;
    let i = rng.random_range(0..n);
    let mut j = rng.random_range(0..n - 1);
    if j >= i {
        j += 1;
    }
    scratch.picks.clear();
    scratch.picks.extend([i, j]);
    scratch
        .picks
        .extend((0..TWO_MEANS_STEPS).map(|_| rng.random_range(0..n)));
    let len = items.dims + usize::from(items.metric == Metric::Dot);
    scratch.p.clear();
    scratch.p.resize(len, 0.0);
    scratch.q.clear();
    scratch.q.resize(len, 0.0);
    copse_distance::dispatch(TwoMeansOp {
        items,
        ids,
        picks: &scratch.picks,
        p: &mut scratch.p,
        q: &mut scratch.q,
    })?;
    let (p, q) = (&scratch.p, &scratch.q);
    let mut normal: Vec<f32> = p.iter().zip(q).map(|(a, b)| a - b).collect();
    normalize(&mut normal);
    let offset = match items.metric {
        Metric::Euclidean | Metric::Manhattan => {
            let mut a = 0.0f64;
            for ((nz, pz), qz) in normal.iter().zip(p).zip(q) {
                a -= f64::from(*nz) * (f64::from(*pz) + f64::from(*qz)) / 2.0;
            }
            a as f32
        }
        _ => 0.0,
    };
    Ok((
        SplitNode {
            offset,
            ..SplitNode::default()
        },
        normal,
    ))
}

/// Scales `v` to unit length (leaves a zero vector alone).
fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// `dot(normal, row)` for each id, under one dispatch.
struct MarginsOp<'a> {
    rows: Rows<'a>,
    normal: &'a [f32],
    ids: &'a [u32],
    out: &'a mut [f32],
}

impl WithKernels for MarginsOp<'_> {
    type Output = Result<(), copse_distance::DistanceError>;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        k.batch_ids(Dot, self.normal, self.rows, self.ids, self.out)
    }
}

/// Annoy's count-weighted two-means over the sampled positions `picks` of `ids` (the first two
/// seed the centroids), leaving the centroids in `p` and `q`. Angular and dot work on the unit
/// sphere (dot in the transformed space), euclidean and manhattan in the plain one.
struct TwoMeansOp<'a, 'i> {
    items: &'a Items<'i>,
    ids: &'a [u32],
    picks: &'a [u32],
    p: &'a mut [f32],
    q: &'a mut [f32],
}

impl WithKernels for TwoMeansOp<'_, '_> {
    type Output = ();

    // No closures in here: a closure is compiled as its own function without the level's target
    // features, and every kernel call in it would stop being inlined.
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) {
        let TwoMeansOp {
            items,
            ids,
            picks,
            p,
            q,
        } = self;
        let d = items.dims;
        let metric = items.metric;
        let cosine = matches!(metric, Metric::Angular | Metric::Dot);
        load_centroid(items, p, sample(ids, picks[0]));
        load_centroid(items, q, sample(ids, picks[1]));
        if cosine {
            normalize(p);
            normalize(q);
        }
        let (mut ic, mut jc) = (1.0f32, 1.0f32);
        let mut p_norm2 = k.norm_squared(p);
        let mut q_norm2 = k.norm_squared(q);
        let samples = &picks[2..];
        for (s, &pick) in samples.iter().enumerate() {
            if let Some(&ahead) = samples.get(s + PREFETCH_AHEAD) {
                copse_distance::prefetch_row(items.rows, sample(ids, ahead));
            }
            let id = sample(ids, pick);
            let Some(x) = items.rows.row(id as usize) else {
                continue;
            };
            // Angular and dot use the cosine distance `2 - 2 cos`, dot in the transformed space
            // where every item has norm `max_norm` (Annoy's two-means for both).
            let (di, dj, norm, extra) = match metric {
                Metric::Angular | Metric::Dot => {
                    let (xn, extra) = if metric == Metric::Dot {
                        (items.max_norm, items.extra(id))
                    } else {
                        (items.norms.get(id as usize).copied().unwrap_or(0.0), 0.0)
                    };
                    let xn2 = xn * xn;
                    let di = cosine_distance(k, p, p_norm2, x, xn2, extra);
                    let dj = cosine_distance(k, q, q_norm2, x, xn2, extra);
                    (di, dj, xn, extra)
                }
                Metric::Manhattan => (k.l1(&p[..d], x), k.l1(&q[..d], x), 1.0, 0.0),
                _ => (k.l2_squared(&p[..d], x), k.l2_squared(&q[..d], x), 1.0, 0.0),
            };
            let (di, dj) = (ic * di, jc * dj);
            // Skips zero norms (and NaN, which finite inputs never produce).
            if norm.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            if di < dj {
                update_centroid(p, ic, x, extra, norm);
                ic += 1.0;
                if cosine {
                    p_norm2 = k.norm_squared(p);
                }
            } else if dj < di {
                update_centroid(q, jc, x, extra, norm);
                jc += 1.0;
                if cosine {
                    q_norm2 = k.norm_squared(q);
                }
            }
        }
    }
}

/// The id at sampled position `pick` of `ids`.
#[inline(always)]
fn sample(ids: &[u32], pick: u32) -> u32 {
    ids.get(pick as usize).copied().unwrap_or(0)
}

/// Copies item `id` into a centroid (with the extra coordinate for dot).
#[inline(always)]
fn load_centroid(items: &Items<'_>, target: &mut [f32], id: u32) {
    let d = items.dims;
    let row = items.rows.row(id as usize).unwrap_or(&[]);
    let n = row.len().min(d);
    target[..n].copy_from_slice(&row[..n]);
    if items.metric == Metric::Dot {
        target[d] = items.extra(id);
    }
}

/// `2 - 2 cos` between centroid `c` (squared norm `c2`, extra coordinate last for dot) and
/// item `x` (squared norm `x2`, extra coordinate `extra`); 2 if either is zero, as Annoy.
#[inline(always)]
fn cosine_distance<K: Kernels>(k: K, c: &[f32], c2: f32, x: &[f32], x2: f32, extra: f32) -> f32 {
    let d = x.len();
    let pq = k.dot(&c[..d], x) + c.get(d).map_or(0.0, |e| e * extra);
    let ppqq = c2 * x2;
    if ppqq > 0.0 {
        2.0 - 2.0 * pq / ppqq.sqrt()
    } else {
        2.0
    }
}

/// Moves a centroid holding `count` samples towards `x / norm` (and its extra coordinate).
#[inline(always)]
fn update_centroid(c: &mut [f32], count: f32, x: &[f32], extra: f32, norm: f32) {
    let d = x.len();
    for (cz, xz) in c[..d].iter_mut().zip(x) {
        *cz = (*cz * count + xz / norm) / (count + 1.0);
    }
    if let Some(e) = c.get_mut(d) {
        *e = (*e * count + extra / norm) / (count + 1.0);
    }
}
