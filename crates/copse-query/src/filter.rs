//! Filtered search: only rows of an allow-list may be returned, and the list is applied inside
//! the search, never by over-fetching.
//!
//! Three ways, chosen per query by their expected cost:
//!
//! - **scan**: score every allowed row (from the item codes, then an exact re-rank of the best),
//!   exact, at a cost proportional to the allowed count. Few allowed rows: always this.
//! - **graph**: the beam search navigates through every item but keeps only allowed ones as
//!   results. Fewer results per scored item, so its budget is `search_k` over the allowed
//!   share (a half-allowed index scores twice as many items).
//! - **forest**: the tree walk gathers allowed leaf ids until `search_k` of them.
//!
//! A scanned row costs about 0.4 of a unit of graph budget (it is read in address order, with
//! no lists to follow): [`SCAN_WEIGHT`].

use copse_distance::Kernels;

use crate::metric::QueryMetric;
use crate::walk::{Plan, Prefetch, Scratch, rank};
use crate::{Neighbor, QueryError};

/// The rows a filtered search may return: a bitset over the index's rows (bit `row % 64` of
/// word `row / 64`) and how many bits are set.
#[derive(Debug, Clone, Copy)]
pub struct RowFilter<'a> {
    rows: &'a [u64],
    allowed: usize,
}

impl<'a> RowFilter<'a> {
    /// A filter over `rows` (a bitset over the index's rows) with `allowed` bits set.
    pub fn new(rows: &'a [u64], allowed: usize) -> Self {
        RowFilter { rows, allowed }
    }

    /// Number of allowed rows.
    pub fn allowed(&self) -> usize {
        self.allowed
    }
}

/// Which rows a search may return; [`All`] compiles to no check at all.
pub(crate) trait Allow: Copy {
    /// True for the unfiltered search.
    const ALL: bool;
    /// True if `row` may be returned.
    fn allows(self, row: u32) -> bool;
}

/// No filter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct All;

impl Allow for All {
    const ALL: bool = true;
    #[inline(always)]
    fn allows(self, _: u32) -> bool {
        true
    }
}

impl Allow for &RowFilter<'_> {
    const ALL: bool = false;
    #[inline(always)]
    fn allows(self, row: u32) -> bool {
        self.rows
            .get(row as usize / 64)
            .is_some_and(|w| w >> (row % 64) & 1 == 1)
    }
}

/// What a scanned row costs next to a unit of the graph's (or the trees') budget: measured on
/// GloVe (390,000 items, Intel Xeon 2.1 GHz), a scan of 39,000 allowed rows took 17 ns a row,
/// a graph search 43 to 52 ns a unit of `search_k` (see `docs/performance.md`).
pub(crate) const SCAN_WEIGHT: f64 = 0.4;

/// The filtered search of `plan` (whose `search_k` is the caller's effort) into `out`.
#[inline(always)]
pub(crate) fn search<K: Kernels, M: QueryMetric>(
    k: K,
    plan: Plan<'_>,
    filter: &RowFilter<'_>,
    s: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    let view = plan.view;
    if filter.allowed == 0 {
        return Ok(());
    }
    // The allowed share of the items, and what each way would score.
    let present = view.info.n_present.max(1) as f64;
    let share = (filter.allowed as f64 / present).min(1.0);
    let budget = (plan.search_k as f64 / share).min(usize::MAX as f64 / 2.0) as usize;
    let scan_cost = filter.allowed as f64 * SCAN_WEIGHT;
    if scan_cost <= budget as f64 {
        return scan::<K, M>(k, plan, filter, s, out);
    }
    let plan = Plan {
        search_k: budget,
        ..plan
    };
    if view.graph.is_empty() {
        crate::walk::forest::<K, M, _>(k, plan, filter, s, out)
    } else {
        crate::beam::search::<K, M, _>(k, plan, filter, s, out)
    }
}

/// Scores every allowed present row.
#[inline(always)]
fn scan<K: Kernels, M: QueryMetric>(
    k: K,
    plan: Plan<'_>,
    filter: &RowFilter<'_>,
    s: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    let view = plan.view;
    s.candidates.clear();
    for (w, (&allowed, &present)) in filter.rows.iter().zip(view.present).enumerate() {
        let mut bits = allowed & present;
        while bits != 0 {
            let row = (w * 64) as u32 + bits.trailing_zeros();
            s.candidates.push(row);
            bits &= bits - 1;
        }
    }
    if let Prefetch::Codes = plan.prefetch {
        for &row in s.candidates.iter().take(16) {
            plan.prefetch.item(view, row);
        }
    }
    rank::<K, M>(k, plan, s, out)
}
