//! What differs between metrics at query time: how a split node ranks its two children, and how
//! candidates are scored. Internal scores are "lower is closer"; [`QueryMetric::user`] turns
//! them into Annoy's reported distances.

use std::marker::PhantomData;

use copse_distance::{
    Dot, Kernels, L1, L2Squared, RowElement, Rows, ScaledI8, StoredRow, WithKernels,
};
use copse_format::{CodeWidth, ItemCodes, ItemRows, Metric, SplitNode, View};

use crate::{Query, QueryError};

/// The walk's starting priority for hamming: large, but small enough that subtracting 1 per
/// mismatched bit stays exact in f32.
const HAMMING_INITIAL: f32 = 16_777_216.0;

/// A query checked against the index, with what the metric precomputes.
#[derive(Clone, Copy)]
pub(crate) struct Prepared<'a> {
    pub floats: &'a [f32],
    pub bits: &'a [u64],
    /// Euclidean norm of `floats` (angular; 0 for metrics that do not read it).
    pub norm: f32,
    /// `floats` as i8 codes, `floats ~ codes * code_scale`, where candidates are scored from
    /// the item codes (empty otherwise): an i8 by i8 dot product is exact in integers and
    /// several times cheaper than widening every code to f32.
    pub codes: &'a [i8],
    pub code_scale: f32,
    /// With 4-bit item codes (stored plus 8), what the stored offset adds to a nibble dot
    /// product: `8 * sum(codes)`; 0 otherwise.
    pub code_bias: i32,
}

/// [`quantize_query`] for item codes of `width`: the scale, and for 4-bit codes `codes`
/// zero-padded to whole nibble groups ([`copse_format::CodeWidth::codes_len`]) with the code
/// bias ([`Prepared::code_bias`]); the bias is 0 for 8-bit codes.
pub(crate) fn quantize_query_for(
    query: &[f32],
    width: CodeWidth,
    codes: &mut Vec<i8>,
) -> (f32, i32) {
    let scale = quantize_query(query, codes);
    match width {
        CodeWidth::Eight => (scale, 0),
        CodeWidth::Four => {
            codes.resize(2 * width.codes_len(query.len()), 0);
            let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
            (scale, 8 * sum)
        }
    }
}

/// Quantizes `query` into `codes` with one scale, the largest magnitude to 127 (as the item
/// codes are made), and returns the scale: `query ~ codes * scale`. A zero query gives zero
/// codes and scale.
fn quantize_query(query: &[f32], codes: &mut Vec<i8>) -> f32 {
    let largest = query.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    codes.clear();
    if largest <= 0.0 {
        codes.resize(query.len(), 0);
        return 0.0;
    }
    // A subnormal `largest` can overflow the reciprocal: codes then saturate at ±127 (or
    // 0 for the zeros), never worse than a poor approximation the re-rank corrects.
    let inverse = 127.0 / largest;
    codes.extend(
        query
            .iter()
            .map(|&x| copse_distance::quantize_i8(x * inverse)),
    );
    largest / 127.0
}

pub(crate) fn check_query(view: &View<'_>, query: Query<'_>) -> Result<(), QueryError> {
    let metric = view.info.metric;
    let len = match view.items {
        ItemRows::F32(rows) if metric != Metric::Hamming => rows.dims(),
        ItemRows::F16(rows) if metric != Metric::Hamming => rows.dims(),
        ItemRows::Bf16(rows) if metric != Metric::Hamming => rows.dims(),
        ItemRows::I8(codes) if metric != Metric::Hamming => codes.row_len(),
        ItemRows::Bits { row_len, .. } if metric == Metric::Hamming => row_len,
        _ => {
            return Err(QueryError::Corrupt(
                "item rows of another kind than the metric's",
            ));
        }
    };
    query.check(metric, len)
}

/// A metric's query-time behaviour. The float metrics differ only in a few constants and
/// small functions; the walk, the scoring passes and the graph search are written once over
/// this trait.
pub(crate) trait QueryMetric: Sized {
    /// Priority of each tree's root.
    const INITIAL: f32 = f32::INFINITY;

    /// True if a split's offset is part of the query's margin (euclidean and manhattan
    /// hyperplanes lie off the origin; angular and dot ones pass through it).
    const SPLIT_OFFSET: bool = false;

    /// True if [`QueryMetric::approximate`] ranks like [`QueryMetric::score`] from the item
    /// codes (for metrics whose index stores them).
    const APPROXIMATE: bool = false;

    /// True if scoring reads the query's norm ([`Prepared::norm`]); other metrics skip the pass.
    const USES_QUERY_NORM: bool = false;

    /// True if a graph search should spend half its budget on candidates from the trees
    /// before following the graph, instead of starting from the first leaves only.
    const GRAPH_NEEDS_TREES: bool = false;

    /// Priorities of a split's negative and positive children, given the parent's (Annoy's
    /// `pq_distance`): by default, the query's margin from the split's hyperplane.
    #[inline(always)]
    fn children<K: Kernels>(
        k: K,
        parent: f32,
        split: &SplitNode,
        normal: &[i8],
        q: &Prepared<'_>,
    ) -> [f32; 2] {
        let offset = if Self::SPLIT_OFFSET {
            split.offset
        } else {
            0.0
        };
        hyperplane_children(parent, offset + split.scale() * k.dot_i8(q.floats, normal))
    }

    /// How candidates are scored exactly, and how a score is reported.
    const EXACT: Exact;

    /// Internal scores of `ids` into `out` (same length). Out of line (see
    /// [`Kernels::vectorize_apart`]): every search path calls it, and it holds a loop per row
    /// type.
    #[inline(always)]
    fn score<K: Kernels>(
        k: K,
        view: &View<'_>,
        q: &Prepared<'_>,
        ids: &[u32],
        out: &mut [f32],
    ) -> Result<(), QueryError> {
        k.vectorize_apart(Scores::<Self> {
            view,
            q,
            ids,
            out,
            rough: false,
            metric: PhantomData,
        })
    }

    /// The reported distance for an internal score.
    #[inline(always)]
    fn user(score: f32) -> f32 {
        match Self::EXACT {
            Exact::Angular | Exact::SquaredL2 => score.max(0.0).sqrt(),
            Exact::L1 => score.max(0.0),
            Exact::NegatedDot => -score,
            Exact::Hamming => score,
        }
    }

    /// The approximate score of an item from `dot(q, x)` computed on the codes, the item's
    /// code scale and its sum of squared codes (only used where
    /// [`QueryMetric::APPROXIMATE`] holds).
    #[inline(always)]
    fn from_code_dot(dot: f32, _scale: f32, _squares: f32) -> f32 {
        -dot
    }

    /// Scores of `ids` from the item codes, ordered like the exact scores up to the codes'
    /// rounding, where [`QueryMetric::APPROXIMATE`] holds; the exact scores otherwise. Out of
    /// line, as [`QueryMetric::score`].
    #[inline(always)]
    fn approximate<K: Kernels>(
        k: K,
        view: &View<'_>,
        q: &Prepared<'_>,
        ids: &[u32],
        out: &mut [f32],
    ) -> Result<(), QueryError> {
        k.vectorize_apart(Scores::<Self> {
            view,
            q,
            ids,
            out,
            rough: Self::APPROXIMATE,
            metric: PhantomData,
        })
    }
}

/// Scores of `ids` under metric `M`: from the item codes if `rough`, else exactly.
struct Scores<'a, 'v, M> {
    view: &'a View<'v>,
    q: &'a Prepared<'a>,
    ids: &'a [u32],
    out: &'a mut [f32],
    rough: bool,
    metric: PhantomData<M>,
}

impl<M: QueryMetric> WithKernels for Scores<'_, '_, M> {
    type Output = Result<(), QueryError>;

    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        let Scores {
            view,
            q,
            ids,
            out,
            rough,
            ..
        } = self;
        if rough {
            return match view.codes.width() {
                CodeWidth::Eight => code_dots::<K, false>(k, view, q, ids, out, M::from_code_dot),
                CodeWidth::Four => code_dots::<K, true>(k, view, q, ids, out, M::from_code_dot),
            };
        }
        match M::EXACT {
            Exact::Angular => angular_scores(k, view, q, ids, out),
            Exact::SquaredL2 => batch_scores::<K, _, false>(k, L2Squared, view, q, ids, out),
            Exact::L1 => batch_scores::<K, _, false>(k, L1, view, q, ids, out),
            Exact::NegatedDot => batch_scores::<K, _, true>(k, Dot, view, q, ids, out),
            Exact::Hamming => hamming_scores(k, view, q, ids, out),
        }
    }
}

/// A metric's exact scores ([`QueryMetric::score`]), lower is nearer.
pub(crate) enum Exact {
    /// `2 - 2 cos` ([`angular_score`]); reported as its square root.
    Angular,
    /// The squared euclidean distance; reported as its square root.
    SquaredL2,
    /// The manhattan distance.
    L1,
    /// The inner product, negated; reported as the inner product.
    NegatedDot,
    /// Differing bits.
    Hamming,
}

/// `dot(q, codes * scale)` from the query's codes, the item's `scale` and the sum of its
/// squared codes, for each id: from 8-bit codes, or from 4-bit ones if `FOUR`.
#[inline(always)]
fn code_dots<K: Kernels, const FOUR: bool>(
    k: K,
    view: &View<'_>,
    q: &Prepared<'_>,
    ids: &[u32],
    out: &mut [f32],
    finish: impl Fn(f32, f32, f32) -> f32,
) -> Result<(), QueryError> {
    for (i, (slot, &id)) in out.iter_mut().zip(ids).enumerate() {
        if let Some(&ahead) = ids.get(i + CODE_PREFETCH)
            && let Some(record) = view.codes.record(ahead)
        {
            copse_distance::prefetch_lines(record);
        }
        let (scale, squares, codes) = view
            .codes
            .get(id)
            .ok_or(QueryError::Corrupt("item code out of range"))?;
        let integer = if FOUR {
            k.dot_u4_i8(q.codes, copse_distance::bytemuck::cast_slice(codes)) - q.code_bias
        } else {
            k.dot_i8_i8(q.codes, codes)
        };
        let dot = (scale * q.code_scale) * integer as f32;
        *slot = finish(dot, scale, squares);
    }
    Ok(())
}

/// How many candidates ahead the approximate pass prefetches codes.
const CODE_PREFETCH: usize = 8;

/// Exact scores of `ids` by one of the batch kernels, negated if `NEGATE` (inner products,
/// where larger is nearer).
#[inline(always)]
fn batch_scores<K: Kernels, F: copse_distance::F32Metric, const NEGATE: bool>(
    k: K,
    metric: F,
    view: &View<'_>,
    q: &Prepared<'_>,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), QueryError> {
    match view.items {
        ItemRows::F32(rows) => k
            .batch_ids(metric, q.floats, rows, ids, out)
            .map_err(kernel_error)?,
        ItemRows::F16(rows) => row_scores::<K, F, _, false>(k, metric, q, (rows, &[]), ids, out)?,
        ItemRows::Bf16(rows) => row_scores::<K, F, _, false>(k, metric, q, (rows, &[]), ids, out)?,
        ItemRows::I8(codes) => row_scores::<K, F, _, false>(k, metric, q, (codes, &[]), ids, out)?,
        ItemRows::Bits { .. } => return Err(wrong_rows()),
    }
    if NEGATE {
        for score in out.iter_mut() {
            *score = -*score;
        }
    }
    Ok(())
}

/// `[min(d, -m), min(d, m)]`: the child on the query's side keeps the parent's priority, the
/// other is limited by the query's distance to the hyperplane.
#[inline(always)]
fn hyperplane_children(parent: f32, margin: f32) -> [f32; 2] {
    [parent.min(-margin), parent.min(margin)]
}

/// Where exact scoring reads item rows: a matrix of f32, f16 or bf16 rows, or i8 code
/// records.
trait RowSource: Copy {
    /// A row as the kernels read it.
    type Row: StoredRow;
    /// Row `id`, if in range.
    fn stored_row(&self, id: u32) -> Option<Self::Row>;
    /// Starts loading row `id`.
    fn prefetch(&self, id: u32);
}

impl<'a, T: RowElement> RowSource for Rows<'a, T> {
    type Row = &'a [T];
    #[inline(always)]
    fn stored_row(&self, id: u32) -> Option<&'a [T]> {
        self.row(id as usize)
    }
    #[inline(always)]
    fn prefetch(&self, id: u32) {
        copse_distance::prefetch_row(*self, id);
    }
}

impl<'a> RowSource for ItemCodes<'a> {
    type Row = ScaledI8<'a>;
    #[inline(always)]
    fn stored_row(&self, id: u32) -> Option<ScaledI8<'a>> {
        let (scale, _, codes) = self.get(id)?;
        Some(ScaledI8 { codes, scale })
    }
    #[inline(always)]
    fn prefetch(&self, id: u32) {
        if let Some(record) = self.record(id) {
            copse_distance::prefetch_lines(record);
        }
    }
}

/// Scores of `ids` from rows of any type, one row at a time: `metric` between `q` and each
/// row, or with `ANGULAR` the angular score from the rows and `norms` (compact rows, which
/// the batch kernels do not read, and every angular re-rank).
#[inline(always)]
fn row_scores<K: Kernels, F: copse_distance::F32Metric, R: RowSource, const ANGULAR: bool>(
    k: K,
    metric: F,
    q: &Prepared<'_>,
    (rows, norms): (R, &[f32]),
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), QueryError> {
    for (i, (score, &id)) in out.iter_mut().zip(ids).enumerate() {
        if let Some(&ahead) = ids.get(i + ROW_PREFETCH) {
            rows.prefetch(ahead);
        }
        let x = rows
            .stored_row(id)
            .ok_or(QueryError::Corrupt("leaf id out of range"))?;
        *score = if ANGULAR {
            let norm = norms.get(id as usize).copied().unwrap_or(0.0);
            angular_score(k, q.floats, q.norm, x, norm)
        } else {
            k.row(metric, q.floats, x)
        };
    }
    Ok(())
}

fn wrong_rows() -> QueryError {
    QueryError::Corrupt("item rows of the wrong kind")
}

fn kernel_error(_: copse_distance::DistanceError) -> QueryError {
    QueryError::Corrupt("leaf id out of range")
}

pub(crate) struct Angular;
pub(crate) struct Euclidean;
pub(crate) struct Manhattan;
pub(crate) struct DotProduct;
pub(crate) struct Hamming;

/// The codes hold the unit vector: `-dot` ranks like `2 - 2 cos` for a fixed query.
impl QueryMetric for Angular {
    const EXACT: Exact = Exact::Angular;
    const APPROXIMATE: bool = true;
    const USES_QUERY_NORM: bool = true;
}

/// Exact angular scores of `ids`, from the rows and norms.
#[inline(always)]
fn angular_scores<K: Kernels>(
    k: K,
    view: &View<'_>,
    q: &Prepared<'_>,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), QueryError> {
    let norms = view.norms;
    match view.items {
        ItemRows::F32(rows) => row_scores::<K, _, _, true>(k, Dot, q, (rows, norms), ids, out),
        ItemRows::F16(rows) => row_scores::<K, _, _, true>(k, Dot, q, (rows, norms), ids, out),
        ItemRows::Bf16(rows) => row_scores::<K, _, _, true>(k, Dot, q, (rows, norms), ids, out),
        ItemRows::I8(codes) => row_scores::<K, _, _, true>(k, Dot, q, (codes, norms), ids, out),
        ItemRows::Bits { .. } => Err(wrong_rows()),
    }
}

/// Exact hamming scores of `ids`, from the bit rows.
#[inline(always)]
fn hamming_scores<K: Kernels>(
    k: K,
    view: &View<'_>,
    q: &Prepared<'_>,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), QueryError> {
    for (score, &id) in out.iter_mut().zip(ids) {
        let row = view
            .item_bits(id as usize)
            .ok_or(QueryError::Corrupt("leaf id out of range"))?;
        *score = k.hamming(q.bits, row) as f32;
    }
    Ok(())
}

/// How many rows ahead the angular re-rank prefetches.
const ROW_PREFETCH: usize = 4;

/// Annoy's `2 - 2 cos` between `q` and `x` given their norms (2 if either is zero, as Annoy),
/// computed as the squared distance between the unit vectors `q / |q|` and `x / |x|`. That is
/// `2 - 2 cos` exactly, but without the cancellation of `2 - 2 * dot / (|q| |x|)`: a vector is
/// exactly 0 from itself (both norms come from [`copse_distance::fixed::norm`]), and the result
/// is clamped to the 4 that unit vectors cannot exceed.
#[inline(always)]
fn angular_score<K: Kernels, R: StoredRow>(k: K, q: &[f32], q_norm: f32, x: R, x_norm: f32) -> f32 {
    if !(q_norm > 0.0 && x_norm > 0.0) {
        return 2.0;
    }
    let (s, t) = (1.0 / q_norm, 1.0 / x_norm);
    if s.is_finite() && t.is_finite() {
        k.row_scaled_l2(q, s, x, t).min(4.0)
    } else {
        // Norms so small that their reciprocals overflow: the cosine, in f64.
        let cos = f64::from(k.row(Dot, q, x)) / (f64::from(q_norm) * f64::from(x_norm));
        (2.0 - 2.0 * cos).clamp(0.0, 4.0) as f32
    }
}

impl QueryMetric for Euclidean {
    const EXACT: Exact = Exact::SquaredL2;
    const SPLIT_OFFSET: bool = true;
    const APPROXIMATE: bool = true;

    /// `|x|^2 - 2 q.x` (the query's own `|q|^2` is the same for every candidate).
    #[inline(always)]
    fn from_code_dot(dot: f32, scale: f32, squares: f32) -> f32 {
        scale * scale * squares - 2.0 * dot
    }
}

impl QueryMetric for Manhattan {
    const EXACT: Exact = Exact::L1;
    const SPLIT_OFFSET: bool = true;
}

/// Scores are negated inner products. A split's normal has no part in the transform's extra
/// dimension that matters: the query's coordinate there is zero.
impl QueryMetric for DotProduct {
    const EXACT: Exact = Exact::NegatedDot;
    const APPROXIMATE: bool = true;
    /// The graph links items near in the transformed space where inner products are
    /// euclidean, but a query sits off the sphere the items lie on there, and the best inner
    /// products are often in another cluster (larger norms) than the query's own: measured on
    /// clustered data, the graph alone reached recall 0.57 where the trees reached 0.84 at the
    /// same `search_k`; half from the trees, then the graph, reached 0.80 and 0.98 at 4x.
    const GRAPH_NEEDS_TREES: bool = true;
}

impl QueryMetric for Hamming {
    const EXACT: Exact = Exact::Hamming;
    const INITIAL: f32 = HAMMING_INITIAL;

    /// Annoy's hamming priority: one less for the child whose bit differs from the query's.
    #[inline(always)]
    fn children<K: Kernels>(
        _: K,
        parent: f32,
        split: &SplitNode,
        _: &[i8],
        q: &Prepared<'_>,
    ) -> [f32; 2] {
        let axis = split.axis();
        if axis == SplitNode::RANDOM {
            return [parent, parent];
        }
        let word = q.bits.get(axis as usize / 64).copied().unwrap_or(0);
        if word >> (axis % 64) & 1 == 1 {
            [parent - 1.0, parent]
        } else {
            [parent, parent - 1.0]
        }
    }
}

/// The distance between two stored items, under one dispatch.
pub(crate) struct PairDistance<'a, 'v> {
    pub view: &'a View<'v>,
    pub a: u32,
    pub b: u32,
}

impl WithKernels for PairDistance<'_, '_> {
    type Output = Option<f32>;

    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Option<f32> {
        let (view, a, b) = (self.view, self.a as usize, self.b as usize);
        Some(match view.info.metric {
            Metric::Hamming => k.hamming(view.item_bits(a)?, view.item_bits(b)?) as f32,
            _ => {
                // The first item widened to f32 (exact), the second read as stored.
                let x = view.item_vector(a)?;
                match view.items {
                    ItemRows::F32(rows) => pair_distance(k, view, &x, a, rows.row(b)?, b),
                    ItemRows::F16(rows) => pair_distance(k, view, &x, a, rows.row(b)?, b),
                    ItemRows::Bf16(rows) => pair_distance(k, view, &x, a, rows.row(b)?, b),
                    ItemRows::I8(codes) => {
                        pair_distance(k, view, &x, a, codes.stored_row(b as u32)?, b)
                    }
                    ItemRows::Bits { .. } => return None,
                }?
            }
        })
    }
}

/// The reported distance between stored items `a` (as f32, `x`) and `b` (`y`, as stored).
#[inline(always)]
fn pair_distance<K: Kernels, R: StoredRow>(
    k: K,
    view: &View<'_>,
    x: &[f32],
    a: usize,
    y: R,
    b: usize,
) -> Option<f32> {
    Some(match view.info.metric {
        Metric::Angular => {
            let (x_norm, y_norm) = (*view.norms.get(a)?, *view.norms.get(b)?);
            Angular::user(angular_score(k, x, x_norm, y, y_norm))
        }
        Metric::Euclidean => Euclidean::user(k.row(L2Squared, x, y)),
        Metric::Manhattan => Manhattan::user(k.row(L1, x, y)),
        _ => k.row(Dot, x, y),
    })
}
