//! Choosing and applying one node's split, following Annoy: a hyperplane between two centroids
//! found by count-weighted two-means over a random sample of the node's items (angular through
//! the origin, euclidean and manhattan with an offset, dot through the Bachrach et al. (2014)
//! extra dimension that reduces it to angular), or a random bit position for hamming. Unbalanced
//! splits are retried, then replaced by a random assignment of sides.

use copse_distance::{Kernels, WithKernels};
use copse_format::{Metric, SplitNode};
use rand::RngExt;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::BuildError;
use crate::codes::CodesView;

/// Two-means iterations per split, as in Annoy, but never more than the node has items: a
/// sample with replacement larger than the node adds cost and no quality (measured on GloVe:
/// same recall at every search_k, 40% less two-means time).
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
const PREFETCH_AHEAD: usize = 32;

/// What a split reads: the store's vectors, seen through the metric.
#[derive(Clone, Copy)]
pub(crate) struct Items<'a> {
    pub metric: Metric,
    pub dims: usize,
    /// The rows, quantized (f32 metrics).
    pub codes: CodesView<'a>,
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

/// A chosen split: the node struct to store, the quantized normal stored beside it (empty for
/// hamming), and where the partitioned ids change sides.
pub(crate) struct Split {
    pub node: SplitNode,
    pub normal: Vec<i8>,
    pub mid: usize,
}

/// A candidate split. For f32 metrics, `plane` is the stored normal as queries will see it
/// (quantized, then scaled back), so items are assigned to sides exactly as queries route;
/// `extra` is the weight of the dot transform's extra coordinate (not stored: queries have zero
/// there).
struct Candidate {
    node: SplitNode,
    quantized: Vec<i8>,
    /// `quantized` laid out like a whole code record: zeros over the record's header, then
    /// the normal, then zeros to the record's end (see [`SidesOp`]).
    padded: Vec<i8>,
    extra: f32,
}

/// Reusable buffers for one tree's splits.
#[derive(Default)]
pub(crate) struct Scratch {
    sides: Vec<bool>,
    picks: Vec<u32>,
    centroids: Vec<f32>,
    x: Vec<f32>,
    right: Vec<u32>,
}

/// Splits `ids` (more than one item) in place: ids on the negative side first, then the
/// positive side from `mid` on, each side in its previous order (so ids stay ascending and rows
/// are read in address order). Both sides are non-empty.
pub(crate) fn split_node(
    items: &Items<'_>,
    ids: &mut [u32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<Split, BuildError> {
    let local = items.for_node(ids);
    split_with(&local, ids, rng, scratch, None)
}

impl<'i> Items<'i> {
    /// The items as seen from a node. Dot: the transform uses the largest norm among the
    /// node's items, not the whole index's (norm-ranging, Yan et al. 2018): with widely spread
    /// norms a global maximum pushes most items towards the extra axis and the splits stop
    /// separating directions.
    fn for_node(&self, ids: &[u32]) -> Items<'i> {
        if self.metric != Metric::Dot {
            return *self;
        }
        let max_norm = ids
            .iter()
            .map(|&id| self.norms.get(id as usize).copied().unwrap_or(0.0))
            .fold(0.0f32, f32::max);
        Items { max_norm, ..*self }
    }
}

/// The split attempts for one node, the first one given if `first` is set.
fn split_with(
    items: &Items<'_>,
    ids: &mut [u32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
    mut first: Option<Candidate>,
) -> Result<Split, BuildError> {
    let n = ids.len();
    scratch.sides.clear();
    scratch.sides.resize(n, false);
    let mut chosen = None;
    for _ in 0..SPLIT_ATTEMPTS {
        let candidate = match (first.take(), items.metric) {
            (Some(candidate), _) => candidate,
            (None, Metric::Hamming) => Candidate {
                node: hamming_split(items, ids, rng),
                quantized: Vec::new(),
                padded: Vec::new(),
                extra: 0.0,
            },
            (None, _) => hyperplane_split(items, ids, rng, scratch)?,
        };
        assign_sides(items, ids, &candidate, rng, scratch)?;
        if imbalance(&scratch.sides) <= MAX_IMBALANCE {
            chosen = Some(candidate);
            break;
        }
    }
    let (node, normal) = match chosen {
        Some(found) => (found.node, found.quantized),
        None => {
            // No useful hyperplane (duplicates, or a pathological sample): random sides, and a
            // split that sends queries down both children with equal priority (zero normal).
            loop {
                for side in scratch.sides.iter_mut() {
                    *side = rng.random::<bool>();
                }
                if imbalance(&scratch.sides) <= MAX_RANDOM_IMBALANCE {
                    break;
                }
            }
            match items.metric {
                Metric::Hamming => (
                    SplitNode {
                        param: SplitNode::RANDOM,
                        ..SplitNode::default()
                    },
                    Vec::new(),
                ),
                _ => (SplitNode::default(), vec![0; items.dims]),
            }
        }
    };
    let mid = partition(ids, &scratch.sides, &mut scratch.right);
    Ok(Split { node, normal, mid })
}

/// Share of the items on the larger side.
fn imbalance(sides: &[bool]) -> f64 {
    let right = sides.iter().filter(|&&s| s).count();
    let left = sides.len() - right;
    left.max(right) as f64 / sides.len().max(1) as f64
}

/// Stable partition: ids with side `false` first, then those with side `true`, each group in
/// its original order. Returns where the `true` group starts. Branch-free: sides are coin flips
/// to the branch predictor, so every id is written to both destinations and only the matching
/// cursor advances.
fn partition(ids: &mut [u32], sides: &[bool], right: &mut Vec<u32>) -> usize {
    right.clear();
    right.resize(ids.len(), 0);
    let (mut left, mut taken) = (0usize, 0usize);
    for (i, &side) in sides.iter().enumerate().take(ids.len()) {
        let id = ids[i];
        let side = usize::from(side);
        // `left <= i`, so this never overwrites an id not yet read.
        ids[left] = id;
        right[taken] = id;
        left += 1 - side;
        taken += side;
    }
    ids[left..left + taken].copy_from_slice(&right[..taken]);
    left
}

/// Which side each id falls on. A margin of exactly zero picks a side at random, as in Annoy.
fn assign_sides(
    items: &Items<'_>,
    ids: &[u32],
    candidate: &Candidate,
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<(), BuildError> {
    let sides = &mut scratch.sides;
    if items.metric == Metric::Hamming {
        for (side, &id) in sides.iter_mut().zip(ids) {
            *side = bit_of(items, id, candidate.node.axis());
        }
        return Ok(());
    }
    copse_distance::dispatch(SidesOp {
        items,
        normal: &candidate.padded,
        normal_scale: candidate.node.scale(),
        offset: candidate.node.offset,
        extra: candidate.extra,
        ids,
        sides,
        rng,
    })?
    .map_err(|e| BuildError::Internal(e.to_string()))
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
        param: axis,
        ..SplitNode::default()
    }
}

/// A two-means hyperplane for an f32 metric: the normal quantized for storage, and the offset
/// (euclidean and manhattan) computed from the quantized normal.
fn hyperplane_split(
    items: &Items<'_>,
    ids: &[u32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<Candidate, BuildError> {
    prepare_two_means(items, ids, rng, scratch);
    copse_distance::dispatch(TwoMeansOp(TwoMeansInput {
        items,
        ids,
        picks: &scratch.picks,
        centroids: &mut scratch.centroids,
        x: &mut scratch.x,
    }))?;
    Ok(finish_hyperplane(items, scratch))
}

/// Draws the two-means samples for a node (more than one item) and sizes its buffers.
fn prepare_two_means(
    items: &Items<'_>,
    ids: &[u32],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) {
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
        .extend((0..two_means_steps(items.metric, n as usize)).map(|_| rng.random_range(0..n)));
    // Each centroid: the build codes' row length (the dimensions, then zeros), then for dot
    // the transform's extra coordinate.
    let len = items.codes.padded_len() + usize::from(items.metric == Metric::Dot);
    scratch.centroids.clear();
    scratch.centroids.resize(2 * len, 0.0);
    scratch.x.clear();
    scratch.x.resize(items.dims, 0.0);
}

/// The hyperplane between the two centroids two-means left in `scratch`.
fn finish_hyperplane(items: &Items<'_>, scratch: &Scratch) -> Candidate {
    let d = items.dims;
    let stride = items.codes.padded_len();
    let len = scratch.centroids.len() / 2;
    let (p, q) = scratch.centroids.split_at(len);
    let mut normal: Vec<f32> = p[..d].iter().zip(q).map(|(a, b)| a - b).collect();
    if items.metric == Metric::Dot {
        normal.push(p[stride] - q[stride]);
    }
    normalize(&mut normal);
    let extra = normal.get(d).copied().unwrap_or(0.0);
    let (quantized, scale) = quantize(&normal[..d]);
    let mut padded = vec![0i8; items.codes.stride() - items.codes.padded_len()];
    padded.extend_from_slice(&quantized);
    padded.resize(items.codes.stride(), 0);
    let offset = match items.metric {
        Metric::Euclidean | Metric::Manhattan => {
            let mut a = 0.0f64;
            for ((nz, pz), qz) in quantized.iter().zip(p).zip(q) {
                let nz = f64::from(*nz) * f64::from(scale);
                a -= nz * (f64::from(*pz) + f64::from(*qz)) / 2.0;
            }
            a as f32
        }
        _ => 0.0,
    };
    Candidate {
        node: SplitNode {
            offset,
            param: scale.to_bits(),
            ..SplitNode::default()
        },
        quantized,
        padded,
        extra,
    }
}

/// Quantizes `v` to i8 with one scale (`v[i] ~ q[i] * scale`, largest magnitude at 127). A
/// zero vector gives zeros and scale 0.
fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return (vec![0; v.len()], 0.0);
    }
    let scale = max / 127.0;
    let q = v
        .iter()
        .map(|x| copse_distance::quantize_i8(x / scale))
        .collect();
    (q, scale)
}

/// Two-means iterations for a node of `n` items.
fn two_means_steps(metric: Metric, n: usize) -> usize {
    match metric {
        // The transformed space of dot needs the full count: with fewer, small nodes split
        // visibly worse (clustered test data: recall 0.80 instead of 0.90).
        Metric::Dot => TWO_MEANS_STEPS,
        _ => TWO_MEANS_STEPS.min(n),
    }
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

/// Which side of a hyperplane each id falls on, from the quantized rows, under one dispatch.
/// A margin of exactly zero picks a side at random, as in Annoy.
struct SidesOp<'a, 'i> {
    items: &'a Items<'i>,
    /// The quantized normal laid out like a code record, zeros over the header: the margin
    /// then runs over whole records (64 bytes for 50 dimensions: two 32-byte steps, no
    /// tail), and the header's bytes meet zeros.
    normal: &'a [i8],
    normal_scale: f32,
    /// Added to every margin (euclidean and manhattan).
    offset: f32,
    /// Weight of the dot transform's extra coordinate.
    extra: f32,
    ids: &'a [u32],
    sides: &'a mut [bool],
    rng: &'a mut Xoshiro256PlusPlus,
}

/// How many rows ahead the margin loop prefetches.
const MARGIN_PREFETCH: usize = 16;

impl WithKernels for SidesOp<'_, '_> {
    type Output = Result<(), copse_distance::DistanceError>;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        let codes = self.items.codes;
        let dot = self.items.metric == Metric::Dot;
        for (i, (&id, side)) in self.ids.iter().zip(self.sides.iter_mut()).enumerate() {
            if let Some(&ahead) = self.ids.get(i + MARGIN_PREFETCH) {
                codes.prefetch(ahead);
            }
            let (record, scale) =
                codes
                    .record_and_scale(id)
                    .ok_or(copse_distance::DistanceError::RowOutOfRange {
                        id,
                        rows: self.ids.len(),
                    })?;
            // Both sides quantized: an exact integer dot product, scaled once.
            let mut margin =
                self.normal_scale * scale * k.dot_i8_i8(self.normal, record) as f32 + self.offset;
            if dot {
                margin += self.extra * self.items.extra(id);
            }
            *side = if margin != 0.0 {
                margin > 0.0
            } else {
                self.rng.random::<bool>()
            };
        }
        Ok(())
    }
}

/// One node's two-means: the sampled positions `picks` of `ids` (the first two seed the
/// centroids) and the centroids it leaves in `centroids`.
struct TwoMeansInput<'a, 'i> {
    items: &'a Items<'i>,
    ids: &'a [u32],
    picks: &'a [u32],
    /// The two centroids, one after the other (`len` values each).
    centroids: &'a mut [f32],
    /// Room for one decoded row (manhattan).
    x: &'a mut [f32],
}

/// Annoy's count-weighted two-means for one node, under one dispatch. Angular and dot work on
/// the unit sphere (dot in the transformed space), euclidean and manhattan in the plain one.
struct TwoMeansOp<'a, 'i>(TwoMeansInput<'a, 'i>);

impl WithKernels for TwoMeansOp<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) {
        // One loop per metric, so the per-sample code has no metric branches.
        match self.0.items.metric {
            Metric::Angular => run_two_means::<K, ANGULAR>(k, self.0),
            Metric::Dot => run_two_means::<K, DOT>(k, self.0),
            Metric::Manhattan => run_two_means::<K, MANHATTAN>(k, self.0),
            _ => run_two_means::<K, EUCLIDEAN>(k, self.0),
        }
    }
}

const ANGULAR: u8 = 0;
const EUCLIDEAN: u8 = 1;
const MANHATTAN: u8 = 2;
const DOT: u8 = 3;

#[inline(always)]
fn run_two_means<K: Kernels, const METRIC: u8>(k: K, input: TwoMeansInput<'_, '_>) {
    let mut state = TwoMeans::start(k, input);
    for s in 0..state.steps() {
        state.step::<K, METRIC>(k, s);
    }
}

/// The running state of one node's two-means.
// No closures in the methods: a closure is compiled as its own function without the level's
// target features, and every kernel call in it would stop being inlined.
struct TwoMeans<'a, 'i> {
    input: TwoMeansInput<'a, 'i>,
    len: usize,
    /// Per centroid: samples absorbed, squared norm, `1 / |c|` (refreshed after each update,
    /// so its square root overlaps the next sample's dot products), and `1 / (count + 1)`.
    counts: [f32; 2],
    norms2: [f32; 2],
    inverse_norms: [f32; 2],
    next_share: [f32; 2],
}

impl<'a, 'i> TwoMeans<'a, 'i> {
    #[inline(always)]
    fn start<K: Kernels>(k: K, input: TwoMeansInput<'a, 'i>) -> Self {
        let items = input.items;
        let len = input.centroids.len() / 2;
        {
            let (p, q) = input.centroids.split_at_mut(len);
            load_centroid(items, p, sample(input.ids, input.picks[0]));
            load_centroid(items, q, sample(input.ids, input.picks[1]));
            if matches!(items.metric, Metric::Angular | Metric::Dot) {
                normalize(p);
                normalize(q);
            }
        }
        let norms2 = [
            k.norm_squared_fixed(&input.centroids[..len]),
            k.norm_squared_fixed(&input.centroids[len..]),
        ];
        TwoMeans {
            input,
            len,
            counts: [1.0; 2],
            norms2,
            inverse_norms: norms2.map(inverse_sqrt),
            next_share: [0.5; 2],
        }
    }

    /// Number of samples after the two seeds.
    #[inline(always)]
    fn steps(&self) -> usize {
        self.input.picks.len().saturating_sub(2)
    }

    /// Absorbs sample `s` into the nearer centroid. Which centroid a sample joins is a coin
    /// flip to the branch predictor, so it is selected by index, not by branching.
    #[inline(always)]
    fn step<K: Kernels, const METRIC: u8>(&mut self, k: K, s: usize) {
        let TwoMeansInput {
            items,
            ids,
            picks,
            ref mut centroids,
            ref mut x,
        } = self.input;
        let samples = &picks[2..];
        let len = self.len;
        let d = items.dims;
        let stride = items.codes.padded_len();
        let cosine = METRIC == ANGULAR || METRIC == DOT;
        if let Some(&ahead) = samples.get(s + PREFETCH_AHEAD) {
            items.codes.prefetch(sample(ids, ahead));
        }
        let Some(&pick) = samples.get(s) else {
            return;
        };
        let id = sample(ids, pick);
        let Some((codes, scale)) = items.codes.row(id) else {
            return;
        };
        let extra = if METRIC == DOT { items.extra(id) } else { 0.0 };
        // The sample is the quantized row `scale * codes` (with `extra` for dot): its dot
        // products with the centroids read the one-line codes directly.
        let (p, q) = centroids.split_at(len);
        let (di, dj, norm, inverse_norm, x2, dots) = if METRIC == MANHATTAN {
            if !items.codes.decode(id, x) {
                return;
            }
            let (di, dj) = (k.l1_fixed(&p[..d], x), k.l1_fixed(&q[..d], x));
            (di, dj, 1.0, 1.0, 0.0, [0.0; 2])
        } else {
            let [pc, qc] = k.dot2_i8(&p[..stride], &q[..stride], codes);
            let px = scale * pc + p.get(stride).map_or(0.0, |e| e * extra);
            let qx = scale * qc + q.get(stride).map_or(0.0, |e| e * extra);
            let x2 = items.codes.squared_norm(id) + extra * extra;
            if cosine {
                // Annoy's cosine distance `2 - 2 cos` (dot: in the transformed space).
                let inverse_x = inverse_sqrt(x2);
                let di = cosine_distance(px, self.inverse_norms[0] * inverse_x);
                let dj = cosine_distance(qx, self.inverse_norms[1] * inverse_x);
                (di, dj, x2.sqrt(), inverse_x, x2, [px, qx])
            } else {
                // Squared euclidean distance from the expansion |c|^2 - 2 c.x + |x|^2.
                let di = self.norms2[0] - 2.0 * px + x2;
                let dj = self.norms2[1] - 2.0 * qx + x2;
                (di, dj, 1.0, 1.0, x2, [px, qx])
            }
        };
        let (di, dj) = (self.counts[0] * di, self.counts[1] * dj);
        // Skips zero norms (and NaN, which finite inputs never produce), and ties.
        if norm.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || di == dj {
            return;
        }
        let which = usize::from(dj < di);
        let count = self.counts[which];
        let centroid = &mut centroids[which * len..(which + 1) * len];
        // c = (c * count + x / norm) / (count + 1), as `a c + b x`; the reciprocals were
        // computed while the dot products ran, so no division waits for the comparison.
        let a = count * self.next_share[which];
        let b = inverse_norm * self.next_share[which];
        if METRIC == MANHATTAN {
            for (cz, xz) in centroid[..d].iter_mut().zip(x.iter()) {
                *cz = *cz * a + xz * b;
            }
        } else {
            k.scale_add_i8(&mut centroid[..stride], a, b * scale, codes);
            if let Some(e) = centroid.get_mut(stride) {
                *e = *e * a + extra * b;
            }
        }
        // The squared norm follows the update without another pass over the centroid:
        // |a c + b x|^2 = a^2 |c|^2 + 2 a b (c . x) + b^2 |x|^2.
        self.norms2[which] = a * a * self.norms2[which] + 2.0 * a * b * dots[which] + b * b * x2;
        self.inverse_norms[which] = inverse_sqrt(self.norms2[which]);
        self.counts[which] = count + 1.0;
        self.next_share[which] = 1.0 / (count + 2.0);
    }
}

/// The id at sampled position `pick` of `ids`.
#[inline(always)]
fn sample(ids: &[u32], pick: u32) -> u32 {
    ids.get(pick as usize).copied().unwrap_or(0)
}

/// Copies quantized item `id` into a centroid: the row's length in codes (zeros past the
/// dimensions), then the extra coordinate for dot.
#[inline(always)]
fn load_centroid(items: &Items<'_>, target: &mut [f32], id: u32) {
    let stride = items.codes.padded_len();
    if !items.codes.decode(id, &mut target[..stride]) {
        target[..stride].fill(0.0);
    }
    if items.metric == Metric::Dot {
        target[stride] = items.extra(id);
    }
}

/// `2 - 2 cos` from a dot product and `1 / (|p| |q|)`; 2 if either norm is zero, as Annoy.
#[inline(always)]
fn cosine_distance(pq: f32, inverse_norms: f32) -> f32 {
    if inverse_norms > 0.0 {
        2.0 - 2.0 * pq * inverse_norms
    } else {
        2.0
    }
}

/// `1 / sqrt(x)` for a squared norm, 0 for 0 (so [`cosine_distance`] sees a zero vector).
#[inline(always)]
fn inverse_sqrt(x: f32) -> f32 {
    if x > 0.0 { 1.0 / x.sqrt() } else { 0.0 }
}
