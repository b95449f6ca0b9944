//! The metrics an index can be built for, and how each stores its item vectors.

use crate::{CodeWidth, FormatError};

/// A distance, with Annoy's names and conventions. This is the one place that says what each
/// metric's reported distance is (the README, the Python docs and the CLI refer here).
///
/// | metric | names accepted | reported for vectors `q`, `x` | nearest first | `x` to itself |
/// |---|---|---|---|---|
/// | [`Metric::Angular`] | `angular`, `cosine` | `sqrt(2 - 2 cos(q, x))` = the euclidean distance between `q/‖q‖` and `x/‖x‖`, in `[0, 2]`; `sqrt(2)` if either is zero | smallest | exactly `0` |
/// | [`Metric::Euclidean`] | `euclidean`, `l2` | `sqrt(sum((q[i] - x[i])^2))` | smallest | exactly `0` |
/// | [`Metric::Manhattan`] | `manhattan`, `l1`, `taxicab` | `sum(abs(q[i] - x[i]))` | smallest | exactly `0` |
/// | [`Metric::Dot`] | `dot`, `inner`, `ip`, `dot_product` | the inner product `sum(q[i] * x[i])` (a similarity, as in Annoy) | largest | `‖x‖²` |
/// | [`Metric::Hamming`] | `hamming` | the number of differing bits (values above 0.5 are set bits) | smallest | exactly `0` |
///
/// Angular and dot refuse vectors whose squared norm overflows f32 (a norm above about 1.8e19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Cosine distance, reported as `sqrt(2 - 2 cos)` (the euclidean distance of the normalised
    /// vectors). `cosine` is another name for it.
    Angular,
    /// Euclidean (L2) distance.
    Euclidean,
    /// Manhattan (L1) distance.
    Manhattan,
    /// Inner product; larger is closer, and the reported "distance" is the inner product itself.
    Dot,
    /// Number of differing bits between bit vectors.
    Hamming,
}

/// How item vectors are stored: the row type. Hamming stores bits; every other metric stores
/// f32 (the default), rows rounded to half precision to halve the file, or 8-bit codes with a
/// scale per row for a quarter of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Element {
    /// `f32` values, one per dimension.
    F32,
    /// Bits packed into little-endian `u64` words, 64 dimensions per word.
    Bits,
    /// IEEE binary16 values (11 significant bits, finite values up to 65504), one per
    /// dimension.
    F16,
    /// bfloat16 values (an f32's upper 16 bits: 8 significant bits, f32's range), one per
    /// dimension.
    Bf16,
    /// i8 codes with one f32 scale per row: value `i` is `code[i] × scale`, where `scale` is
    /// the row's largest magnitude over 127. A row is the record of
    /// [`crate::SectionKind::ItemCodes`], kept in the items section (the file has no separate
    /// codes). For angular, the codes are those of the unit vector: the row stores the
    /// vector's direction, not its length.
    I8,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 5] = [
        Metric::Angular,
        Metric::Euclidean,
        Metric::Manhattan,
        Metric::Dot,
        Metric::Hamming,
    ];

    /// Annoy's name for the metric.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Angular => "angular",
            Metric::Euclidean => "euclidean",
            Metric::Manhattan => "manhattan",
            Metric::Dot => "dot",
            Metric::Hamming => "hamming",
        }
    }

    /// Parses Annoy's metric names (and the aliases Annoy accepts: `cosine`, `l2`, `l1`, `taxicab`,
    /// `inner`, `ip`).
    pub fn from_name(name: &str) -> Option<Metric> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "angular" | "cosine" => Metric::Angular,
            "euclidean" | "l2" => Metric::Euclidean,
            "manhattan" | "l1" | "taxicab" => Metric::Manhattan,
            "dot" | "inner" | "ip" | "dot_product" => Metric::Dot,
            "hamming" => Metric::Hamming,
            _ => return None,
        })
    }

    /// How the metric stores vectors by default (f32, bits for hamming).
    pub fn element(self) -> Element {
        match self {
            Metric::Hamming => Element::Bits,
            _ => Element::F32,
        }
    }

    /// True if the index keeps each item's euclidean norm (angular and dot use it).
    pub fn stores_norms(self) -> bool {
        matches!(self, Metric::Angular | Metric::Dot)
    }

    /// True if the metric scores from quantized item codes (where the index keeps them, see
    /// [`Element::allows_codes`]). Manhattan's per-coordinate absolute values and
    /// hamming's bits gain nothing from them.
    pub fn stores_codes(self) -> bool {
        matches!(self, Metric::Angular | Metric::Euclidean | Metric::Dot)
    }

    /// Stored elements per item for `dims` dimensions.
    pub fn row_len(self, dims: usize) -> usize {
        match self.element() {
            Element::Bits => dims.div_ceil(64),
            _ => dims,
        }
    }

    /// The code the header stores.
    pub(crate) fn code(self) -> u32 {
        match self {
            Metric::Angular => 1,
            Metric::Euclidean => 2,
            Metric::Manhattan => 3,
            Metric::Dot => 4,
            Metric::Hamming => 5,
        }
    }

    pub(crate) fn from_code(code: u32) -> Result<Metric, FormatError> {
        Metric::ALL
            .into_iter()
            .find(|m| m.code() == code)
            .ok_or(FormatError::UnknownMetric(code))
    }
}

impl Element {
    /// Every row type.
    pub const ALL: [Element; 5] = [
        Element::F32,
        Element::Bits,
        Element::F16,
        Element::Bf16,
        Element::I8,
    ];

    pub(crate) fn code(self) -> u32 {
        match self {
            Element::F32 => 1,
            Element::Bits => 2,
            Element::F16 => 3,
            Element::Bf16 => 4,
            Element::I8 => 5,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Element> {
        Element::ALL.into_iter().find(|e| e.code() == code)
    }

    /// Bytes per stored row of `row_len` elements (words, for bits): for i8 rows, the
    /// [`crate::item_code_stride`] of an item-code record (scale, sum of squared codes, codes,
    /// padding).
    pub fn row_bytes(self, row_len: usize) -> usize {
        match self {
            Element::F32 => 4 * row_len,
            Element::Bits => 8 * row_len,
            Element::F16 | Element::Bf16 => 2 * row_len,
            Element::I8 => crate::item_code_stride(row_len),
        }
    }

    /// The name (numpy's, where numpy has the type): `float32`, `bits`, `float16`, `bfloat16`,
    /// `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Element::F32 => "float32",
            Element::Bits => "bits",
            Element::F16 => "float16",
            Element::Bf16 => "bfloat16",
            Element::I8 => "int8",
        }
    }

    /// Parses a row type for float metrics: `float32`/`f32`, `float16`/`f16`/`half`,
    /// `bfloat16`/`bf16`, `int8`/`i8` (case and surrounding spaces ignored).
    pub fn from_name(name: &str) -> Option<Element> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "float32" | "f32" => Element::F32,
            "float16" | "f16" | "half" => Element::F16,
            "bfloat16" | "bf16" => Element::Bf16,
            "int8" | "i8" => Element::I8,
            _ => return None,
        })
    }

    /// True if an index of `metric` with rows of this type must keep quantized item codes:
    /// the metrics that score from them, with f32 rows. With half-precision rows they are
    /// optional (without them, candidates are scored from the rows directly; measured in
    /// `docs/performance.md`).
    pub fn requires_codes(self, metric: Metric) -> bool {
        metric.stores_codes() && self == Element::F32
    }

    /// True if an index of `metric` with rows of this type may keep item codes in their own
    /// section (i8 rows are the codes themselves).
    pub fn allows_codes(self, metric: Metric) -> bool {
        metric.stores_codes() && matches!(self, Element::F32 | Element::F16 | Element::Bf16)
    }

    /// The item codes an index of `metric` with rows of this type and length keeps unless
    /// told otherwise: 8-bit codes with f32 rows; with half-precision rows, 4-bit codes from
    /// [`FOUR_BIT_CODES_FROM`] dimensions up and 8-bit codes below; none where the rows take no
    /// codes (manhattan, hamming, i8 rows).
    pub fn default_codes(self, metric: Metric, row_len: usize) -> Option<CodeWidth> {
        if !self.allows_codes(metric) {
            None
        } else if !self.requires_codes(metric) && row_len >= FOUR_BIT_CODES_FROM {
            Some(CodeWidth::Four)
        } else {
            Some(CodeWidth::Eight)
        }
    }

    /// True if `metric` can store its rows as this type: bits for hamming, any float type for
    /// the others.
    pub fn fits(self, metric: Metric) -> bool {
        (self == Element::Bits) == (metric == Metric::Hamming)
    }
}

/// Dimensions from which half-precision rows keep 4-bit item codes by default
/// ([`Element::default_codes`]). The approximate pass only has to keep the true nearest within
/// the re-ranked shortlist, and a code's rounding error averages out over more dimensions: at
/// 384 dimensions 4-bit codes lose nothing there and at 50 (GloVe) they lose 1%
/// (`docs/performance.md`, "4-bit codes").
pub const FOUR_BIT_CODES_FROM: usize = 256;

impl core::fmt::Display for Element {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Element {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Element, FormatError> {
        Element::from_name(s).ok_or_else(|| FormatError::UnknownElementName(s.to_owned()))
    }
}

impl core::fmt::Display for Metric {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Metric {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Metric, FormatError> {
        Metric::from_name(s).ok_or_else(|| FormatError::UnknownMetricName(s.to_owned()))
    }
}
