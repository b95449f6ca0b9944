//! The f32 kernels, written once over pulp's `Simd` and instantiated per level. Every function is
//! `#[inline(always)]` so that it takes the target features of the `vectorize` it is called
//! from; nothing here may be called through a function pointer or left out of line.
//!
//! Accuracy: each level accumulates in f32 over several independent partial sums (4 per row,
//! each as wide as the level's vector) and adds them pairwise at the end. That is never worse
//! than plain recursive summation, whose error is at most `(n - 1) * u * sum(|terms|)` with
//! `u = 2^-24` (Higham, "Accuracy and Stability of Numerical Algorithms", eq. 4.4); the tests
//! hold every level to that bound.

use crate::DistanceError;
use crate::kernels::Rows;
use crate::kernels::private::Lanewise;
use pulp::Simd;

/// Number of rows a batch kernel works on at once: four independent accumulation chains hide
/// the latency of the FMA and leave registers for the query chunk.
const GROUP: usize = 4;

/// `metric(a, b)` over the common prefix of `a` and `b`.
///
/// Written for instruction count: a per-call kernel at 100 dimensions is about a hundred
/// instructions and a core runs back-to-back calls at its instruction throughput, so index
/// loops over raw vector pointers (no bounds checks, no iterator adaptors), four chains over
/// blocks of four vectors, the up to three vectors left spread over the chains, then the tail.
#[inline(always)]
pub(crate) fn pair<M: Lanewise, S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a_body, a_tail) = S::as_simd_f32s(&a[..n]);
    let (b_body, b_tail) = S::as_simd_f32s(&b[..n]);
    let vectors = a_body.len().min(b_body.len());
    let (mut ap, mut bp) = (a_body.as_ptr(), b_body.as_ptr());
    let zero = simd.splat_f32s(0.0);
    let (mut acc0, mut acc1, mut acc2, mut acc3) = (zero, zero, zero, zero);
    for _ in 0..vectors / 4 {
        // SAFETY: block `k` of `vectors / 4` reads vectors `4k..4k + 4`, all below `vectors`,
        // which is at most both bodies' lengths.
        let (x, y) = unsafe {
            let x = [
                ap.read(),
                ap.add(1).read(),
                ap.add(2).read(),
                ap.add(3).read(),
            ];
            let y = [
                bp.read(),
                bp.add(1).read(),
                bp.add(2).read(),
                bp.add(3).read(),
            ];
            (ap, bp) = (ap.add(4), bp.add(4));
            (x, y)
        };
        acc0 = M::step(simd, x[0], y[0], acc0);
        acc1 = M::step(simd, x[1], y[1], acc1);
        acc2 = M::step(simd, x[2], y[2], acc2);
        acc3 = M::step(simd, x[3], y[3], acc3);
    }
    // At most three whole vectors remain: spread them over the chains.
    let rest = vectors % 4;
    if rest > 0 {
        // SAFETY: `rest` vectors remain after the blocks, below `vectors`.
        unsafe {
            acc0 = M::step(simd, ap.read(), bp.read(), acc0);
            if rest > 1 {
                acc1 = M::step(simd, ap.add(1).read(), bp.add(1).read(), acc1);
            }
            if rest > 2 {
                acc2 = M::step(simd, ap.add(2).read(), bp.add(2).read(), acc2);
            }
        }
    }
    if !a_tail.is_empty() {
        if vectors == 0 {
            // Shorter than one vector.
            return a_tail
                .iter()
                .zip(b_tail)
                .fold(0.0, |acc, (x, y)| M::step1(*x, *y, acc));
        }
        let keep = tail_mask(simd, a_tail.len());
        let x = simd.and_f32s(keep, last_vector::<S>(&a[..n]));
        let y = simd.and_f32s(keep, last_vector::<S>(&b[..n]));
        acc3 = M::step(simd, x, y, acc3);
    }
    let sum = simd.add_f32s(simd.add_f32s(acc0, acc1), simd.add_f32s(acc2, acc3));
    simd.reduce_sum_f32s(sum)
}

/// `sum((a[i] * s - b[i] * t)^2)` over the common prefix: the squared distance between two
/// vectors each scaled by its own factor (angular: the unit vectors, `s = 1/|a|`, `t = 1/|b|`).
/// The scalings are separate roundings, never fused into the subtraction, so equal inputs with
/// equal factors give exactly zero at every level.
#[inline(always)]
pub(crate) fn scaled_l2<S: Simd>(simd: S, a: &[f32], s: f32, b: &[f32], t: f32) -> f32 {
    let n = a.len().min(b.len());
    let (a_body, a_tail) = S::as_simd_f32s(&a[..n]);
    let (b_body, _) = S::as_simd_f32s(&b[..n]);
    let (vs, vt) = (simd.splat_f32s(s), simd.splat_f32s(t));
    let zero = simd.splat_f32s(0.0);
    let (a2, a1) = pulp::as_arrays::<2, _>(a_body);
    let (b2, b1) = pulp::as_arrays::<2, _>(b_body);
    let (mut acc0, mut acc1) = (zero, zero);
    for ([x0, x1], [y0, y1]) in a2.iter().zip(b2) {
        let d0 = simd.sub_f32s(simd.mul_f32s(*x0, vs), simd.mul_f32s(*y0, vt));
        let d1 = simd.sub_f32s(simd.mul_f32s(*x1, vs), simd.mul_f32s(*y1, vt));
        acc0 = simd.mul_add_e_f32s(d0, d0, acc0);
        acc1 = simd.mul_add_e_f32s(d1, d1, acc1);
    }
    if let (Some(x), Some(y)) = (a1.first(), b1.first()) {
        let d = simd.sub_f32s(simd.mul_f32s(*x, vs), simd.mul_f32s(*y, vt));
        acc0 = simd.mul_add_e_f32s(d, d, acc0);
    }
    let mut total = simd.reduce_sum_f32s(simd.add_f32s(acc0, acc1));
    // The tail, one lane at a time: at most `lanes - 1` values.
    for (x, y) in a_tail.iter().zip(&b[n - a_tail.len()..n]) {
        let d = x * s - y * t;
        total += d * d;
    }
    total
}

/// Keeps the last `t` of a vector's lanes and zeroes the others: `TAIL_MASK[16 - lanes + t..]`.
static TAIL_MASK: [u32; 32] = {
    let mut m = [0u32; 32];
    let mut i = 16;
    while i < 32 {
        m[i] = u32::MAX;
        i += 1;
    }
    m
};

/// A mask that keeps the last `t` lanes (`0 < t < lanes`).
///
/// The tail of a slice that is not a whole number of vectors is read as the slice's last full
/// vector, which overlaps lanes already summed; the mask zeroes those lanes in both operands,
/// where every metric adds exactly nothing (0*0, (0-0)^2, |0-0|). This costs two ANDs, where a
/// masked load would cost an indirect jump (pulp's `partial_load`) or a slow `vmaskmov`.
#[inline(always)]
fn tail_mask<S: Simd>(simd: S, t: usize) -> S::f32s {
    let start = 16 - S::F32_LANES + t;
    let bits = S::as_simd_u32s(&TAIL_MASK[start..start + S::F32_LANES]).0[0];
    simd.transmute_f32s_u32s(bits)
}

/// The last full vector of `x` (`x.len() >= lanes`).
#[inline(always)]
fn last_vector<S: Simd>(x: &[f32]) -> S::f32s {
    S::as_simd_f32s(&x[x.len() - S::F32_LANES..]).0[0]
}

/// `metric(query, r)` for four rows at once. Each query chunk is loaded once and used four
/// times, and the four rows accumulate in independent chains.
#[inline(always)]
fn group<M: Lanewise, S: Simd>(simd: S, query: &[f32], rows: [&[f32]; GROUP]) -> [f32; GROUP] {
    // No closures here or below: a closure is compiled as its own function, without the level's
    // target features, and every SIMD operation in it would become a call.
    let mut n = query.len();
    for r in rows {
        n = n.min(r.len());
    }
    let (q_body, q_tail) = S::as_simd_f32s(&query[..n]);
    let r0 = S::as_simd_f32s(&rows[0][..n]).0;
    let r1 = S::as_simd_f32s(&rows[1][..n]).0;
    let r2 = S::as_simd_f32s(&rows[2][..n]).0;
    let r3 = S::as_simd_f32s(&rows[3][..n]).0;

    // Two chains per row (even and odd chunks): eight in flight keep both FMA ports busy.
    let zero = simd.splat_f32s(0.0);
    let (mut acc0, mut acc1, mut acc2, mut acc3) = (zero, zero, zero, zero);
    let (mut odd0, mut odd1, mut odd2, mut odd3) = (zero, zero, zero, zero);
    let (q2, q1) = pulp::as_arrays::<2, _>(q_body);
    let [(x0, y0), (x1, y1), (x2, y2), (x3, y3)] = [r0, r1, r2, r3].map(pulp::as_arrays::<2, _>);
    let pairs = q2.iter().zip(x0).zip(x1).zip(x2).zip(x3);
    for ((((q, a), b), c), e) in pairs {
        acc0 = M::step(simd, q[0], a[0], acc0);
        acc1 = M::step(simd, q[0], b[0], acc1);
        acc2 = M::step(simd, q[0], c[0], acc2);
        acc3 = M::step(simd, q[0], e[0], acc3);
        odd0 = M::step(simd, q[1], a[1], odd0);
        odd1 = M::step(simd, q[1], b[1], odd1);
        odd2 = M::step(simd, q[1], c[1], odd2);
        odd3 = M::step(simd, q[1], e[1], odd3);
    }
    let rest = q1.iter().zip(y0).zip(y1).zip(y2).zip(y3);
    for ((((q, a), b), c), e) in rest {
        odd0 = M::step(simd, *q, *a, odd0);
        odd1 = M::step(simd, *q, *b, odd1);
        odd2 = M::step(simd, *q, *c, odd2);
        odd3 = M::step(simd, *q, *e, odd3);
    }
    if !q_tail.is_empty() {
        if q_body.is_empty() {
            // Shorter than one vector.
            return [
                pair::<M, S>(simd, query, rows[0]),
                pair::<M, S>(simd, query, rows[1]),
                pair::<M, S>(simd, query, rows[2]),
                pair::<M, S>(simd, query, rows[3]),
            ];
        }
        let keep = tail_mask(simd, q_tail.len());
        let q = simd.and_f32s(keep, last_vector::<S>(&query[..n]));
        acc0 = M::step(
            simd,
            q,
            simd.and_f32s(keep, last_vector::<S>(&rows[0][..n])),
            acc0,
        );
        acc1 = M::step(
            simd,
            q,
            simd.and_f32s(keep, last_vector::<S>(&rows[1][..n])),
            acc1,
        );
        acc2 = M::step(
            simd,
            q,
            simd.and_f32s(keep, last_vector::<S>(&rows[2][..n])),
            acc2,
        );
        acc3 = M::step(
            simd,
            q,
            simd.and_f32s(keep, last_vector::<S>(&rows[3][..n])),
            acc3,
        );
    }
    [
        simd.reduce_sum_f32s(simd.add_f32s(acc0, odd0)),
        simd.reduce_sum_f32s(simd.add_f32s(acc1, odd1)),
        simd.reduce_sum_f32s(simd.add_f32s(acc2, odd2)),
        simd.reduce_sum_f32s(simd.add_f32s(acc3, odd3)),
    ]
}

/// `metric(query, row i)` into `out[i]` for every row. The caller checked the lengths.
#[inline(always)]
pub(crate) fn batch_rows<M: Lanewise, S: Simd>(
    simd: S,
    query: &[f32],
    rows: Rows<'_>,
    out: &mut [f32],
) {
    let dims = rows.dims();
    if dims == 0 {
        out.fill(0.0);
        return;
    }
    if S::F32_LANES == 1 {
        // One lane: the single-pair kernel's four chains already run side by side (and the
        // compiler vectorises them), which four one-chain rows cannot beat.
        for (row, o) in rows.as_slice().chunks_exact(dims).zip(out) {
            *o = pair::<M, S>(simd, query, row);
        }
        return;
    }
    let mut blocks = rows.as_slice().chunks_exact(GROUP * dims);
    let mut out_blocks = out.chunks_exact_mut(GROUP);
    for (block, o) in (&mut blocks).zip(&mut out_blocks) {
        let (r0, rest) = block.split_at(dims);
        let (r1, rest) = rest.split_at(dims);
        let (r2, r3) = rest.split_at(dims);
        o.copy_from_slice(&group::<M, S>(simd, query, [r0, r1, r2, r3]));
    }
    let rest = blocks.remainder().chunks_exact(dims);
    for (row, o) in rest.zip(out_blocks.into_remainder()) {
        *o = pair::<M, S>(simd, query, row);
    }
}

/// `metric(query, row ids[i])` into `out[i]`. The caller checked the lengths; ids are checked
/// here, as they are used.
#[inline(always)]
pub(crate) fn batch_ids<M: Lanewise, S: Simd>(
    simd: S,
    query: &[f32],
    rows: Rows<'_>,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), DistanceError> {
    let fetch = |id: u32| {
        rows.row(id as usize).ok_or(DistanceError::RowOutOfRange {
            id,
            rows: rows.len(),
        })
    };
    if S::F32_LANES == 1 {
        // See `batch_rows`.
        for (i, (&id, o)) in ids.iter().zip(out).enumerate() {
            if let Some(&next) = ids.get(i + PREFETCH_GROUPS * GROUP) {
                prefetch_row(rows, next);
            }
            *o = pair::<M, S>(simd, query, fetch(id)?);
        }
        return Ok(());
    }
    let mut id_blocks = ids.chunks_exact(GROUP);
    let mut out_blocks = out.chunks_exact_mut(GROUP);
    let mut next_start = PREFETCH_GROUPS * GROUP;
    for (block, o) in (&mut id_blocks).zip(&mut out_blocks) {
        // Rows are scattered: start loading a group a few ahead while this one computes, far
        // enough to cover a miss to memory.
        if let Some(next) = ids.get(next_start..next_start + GROUP) {
            for &id in next {
                prefetch_row(rows, id);
            }
        }
        next_start += GROUP;
        let group_rows = [
            fetch(block[0])?,
            fetch(block[1])?,
            fetch(block[2])?,
            fetch(block[3])?,
        ];
        o.copy_from_slice(&group::<M, S>(simd, query, group_rows));
    }
    for (&id, o) in id_blocks
        .remainder()
        .iter()
        .zip(out_blocks.into_remainder())
    {
        *o = pair::<M, S>(simd, query, fetch(id)?);
    }
    Ok(())
}

/// How many groups ahead `batch_ids` prefetches.
const PREFETCH_GROUPS: usize = 4;

/// Cache lines of a row to prefetch at most; the hardware prefetcher follows longer rows.
const PREFETCH_LINES: usize = 8;

/// Hints the CPU to load the start of row `id` of `rows` into cache, ahead of a kernel that
/// will read it. Out-of-range ids are ignored. A hint only: it never faults and never changes a
/// result.
#[inline(always)]
pub fn prefetch_row<T>(rows: Rows<'_, T>, id: u32) {
    if let Some(row) = rows.row(id as usize) {
        let bytes = core::mem::size_of_val(row);
        let lines = bytes.div_ceil(64).min(PREFETCH_LINES);
        for line in 0..lines {
            prefetch_ptr(row.as_ptr().cast::<u8>().wrapping_add(line * 64));
        }
    }
}

/// Hints the CPU to load the cache lines of `data` (at most eight, 512 bytes; the hardware
/// prefetcher follows longer runs), ahead of a read of all of it. Never faults and never
/// changes a result.
#[inline(always)]
pub fn prefetch_lines<T>(data: &[T]) {
    let start = data.as_ptr().cast::<u8>();
    // The line holding the first byte, then each next line while it holds a byte of `data`.
    // A fixed bound, so the loop unrolls into a compare and a branch per line (this runs once
    // per row scored in the builds' loops; a counted loop cost about 25 instructions a call).
    let offset = start as usize % 64;
    let line_start = start.wrapping_sub(offset);
    let span = offset + core::mem::size_of_val(data);
    prefetch_ptr(line_start);
    for line in 1..PREFETCH_LINES {
        if line * 64 >= span {
            break;
        }
        prefetch_ptr(line_start.wrapping_add(line * 64));
    }
}

/// Hints the CPU to load the cache line holding the start of `data`, ahead of a read. Never
/// faults and never changes a result.
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    prefetch_ptr(data.as_ptr().cast::<u8>());
}

#[inline(always)]
fn prefetch_ptr(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is only a hint; it never faults, whatever the address, and SSE is
        // part of the x86-64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
