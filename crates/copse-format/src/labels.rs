//! The labels section ([`crate::SectionKind::Labels`]): an optional string per item, looked up
//! both ways in place, without parsing the section at open.
//!
//! Layout (every part 8-byte aligned):
//!
//! | part      | type                         | meaning |
//! |-----------|------------------------------|---------|
//! | header    | u64 `n_labelled`, u64 `text_len` | labelled rows; bytes of text |
//! | offsets   | `n_items + 1` u64            | row `i`'s label is `text[offsets[i]..offsets[i + 1]]` |
//! | labelled  | `ceil(n_items / 64)` u64     | bit `i % 64` of word `i / 64` set if row `i` has a label (possibly empty) |
//! | by_label  | `n_labelled` u32, zero-padded to 8 bytes | the labelled rows, ordered by label (bytewise) |
//! | text      | `text_len` bytes             | the labels, UTF-8, in row order |
//!
//! Labels are unique, so a label names at most one item.

use core::cmp::Ordering;

use crate::{FormatError, SectionKind};

/// Bytes before the offsets.
const HEADER: usize = 16;

/// The encoded length of a labels section for `n_items` rows, `n_labelled` of them labelled
/// with `text_len` bytes in all.
pub fn labels_len(n_items: u64, n_labelled: u64, text_len: u64) -> Option<u64> {
    let offsets = n_items.checked_add(1)?.checked_mul(8)?;
    let labelled = n_items.div_ceil(64).checked_mul(8)?;
    let by_label = n_labelled.checked_mul(4)?.checked_next_multiple_of(8)?;
    (HEADER as u64)
        .checked_add(offsets)?
        .checked_add(labelled)?
        .checked_add(by_label)?
        .checked_add(text_len)
}

/// Encodes the labels of `n_items` rows (`label(row)`: `None` for no label). Fails if two rows
/// share a label.
pub fn encode_labels<'a>(
    n_items: usize,
    label: impl Fn(usize) -> Option<&'a str>,
) -> Result<Vec<u8>, FormatError> {
    let mut offsets = Vec::with_capacity(n_items + 1);
    let mut labelled = vec![0u64; n_items.div_ceil(64)];
    let mut text = Vec::new();
    let mut rows = Vec::new();
    offsets.push(0u64);
    for row in 0..n_items {
        if let Some(l) = label(row) {
            labelled[row / 64] |= 1 << (row % 64);
            text.extend_from_slice(l.as_bytes());
            rows.push(row as u32);
        }
        offsets.push(text.len() as u64);
    }
    let of = |row: u32| {
        let row = row as usize;
        &text[offsets[row] as usize..offsets[row + 1] as usize]
    };
    rows.sort_unstable_by(|&a, &b| of(a).cmp(of(b)));
    if let Some(pair) = rows.windows(2).find(|p| of(p[0]) == of(p[1])) {
        return Err(FormatError::BadSection {
            kind: SectionKind::Labels,
            problem: format!(
                "rows {} and {} share the label {:?}",
                pair[0],
                pair[1],
                String::from_utf8_lossy(of(pair[0]))
            ),
        });
    }
    let len = labels_len(n_items as u64, rows.len() as u64, text.len() as u64)
        .ok_or_else(|| FormatError::TooLarge("labels section".into()))?;
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(bytemuck::cast_slice(&offsets));
    out.extend_from_slice(bytemuck::cast_slice(&labelled));
    out.extend_from_slice(bytemuck::cast_slice(&rows));
    out.resize(out.len().next_multiple_of(8), 0);
    out.extend_from_slice(&text);
    Ok(out)
}

/// The labels of an open index (empty if it has none). Every lookup checks what it reads: a
/// corrupt section gives an error or no match, never a panic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Labels<'a> {
    offsets: &'a [u64],
    labelled: &'a [u64],
    by_label: &'a [u32],
    text: &'a [u8],
}

impl<'a> Labels<'a> {
    /// Splits a section of `bytes` (8-byte aligned) for `n_items` rows, checking that its
    /// parts add up to its length.
    pub(crate) fn parse(bytes: &'a [u8], n_items: u64) -> Result<Labels<'a>, FormatError> {
        let bad = |problem: String| FormatError::BadSection {
            kind: SectionKind::Labels,
            problem,
        };
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let (Some(n_labelled), Some(text_len)) = (word(0), word(8)) else {
            return Err(bad(format!(
                "is {} bytes, shorter than its header",
                bytes.len()
            )));
        };
        let expected = labels_len(n_items, n_labelled, text_len);
        if expected != Some(bytes.len() as u64) {
            return Err(bad(format!(
                "is {} bytes, but its header ({n_labelled} labels, {text_len} bytes of text) \
                 needs {}",
                bytes.len(),
                expected.map_or("more than 2^64".into(), |e| e.to_string())
            )));
        }
        if n_labelled > n_items {
            return Err(bad(format!(
                "holds {n_labelled} labels for {n_items} items"
            )));
        }
        // Every size below is bounded by the section's length, checked just above.
        let n = n_items as usize;
        let offsets_end = HEADER + (n + 1) * 8;
        let labelled_end = offsets_end + n.div_ceil(64) * 8;
        let by_label_end = labelled_end + n_labelled as usize * 4;
        let text_start = labelled_end + (n_labelled as usize * 4).next_multiple_of(8);
        let cast = |range: core::ops::Range<usize>| bytes.get(range).unwrap_or(&[]);
        Ok(Labels {
            offsets: bytemuck::try_cast_slice(cast(HEADER..offsets_end)).unwrap_or(&[]),
            labelled: bytemuck::try_cast_slice(cast(offsets_end..labelled_end)).unwrap_or(&[]),
            by_label: bytemuck::try_cast_slice(cast(labelled_end..by_label_end)).unwrap_or(&[]),
            text: cast(text_start..bytes.len()),
        })
    }

    /// True if the index has no labels section.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Number of labelled items.
    pub fn len(&self) -> usize {
        self.by_label.len()
    }

    /// The label of `row`, if it has one. A label outside the text or not UTF-8 is an error.
    pub fn label(&self, row: u32) -> Result<Option<&'a str>, FormatError> {
        let row = row as usize;
        let has = self
            .labelled
            .get(row / 64)
            .is_some_and(|w| w >> (row % 64) & 1 == 1);
        if !has {
            return Ok(None);
        }
        self.bytes(row).map(Some)
    }

    fn bytes(&self, row: usize) -> Result<&'a str, FormatError> {
        let corrupt = |problem: String| FormatError::BadSection {
            kind: SectionKind::Labels,
            problem,
        };
        let (Some(&start), Some(&end)) = (self.offsets.get(row), self.offsets.get(row + 1)) else {
            return Err(corrupt(format!("has no offsets for row {row}")));
        };
        let text = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(start, end)| self.text.get(start..end))
            .ok_or_else(|| corrupt(format!("puts row {row}'s label outside its text")))?;
        core::str::from_utf8(text)
            .map_err(|_| corrupt(format!("holds a label that is not UTF-8 (row {row})")))
    }

    /// The row labelled `label`, if any (a binary search of the rows ordered by label).
    pub fn row_of(&self, label: &str) -> Option<u32> {
        let want = label.as_bytes();
        let at = self
            .by_label
            .binary_search_by(|&row| match self.bytes(row as usize) {
                Ok(have) => have.as_bytes().cmp(want),
                // A corrupt entry: the search goes on, and the match below is checked.
                Err(_) => Ordering::Less,
            })
            .ok()?;
        let row = self.by_label[at];
        (self.label(row).ok()?? == label).then_some(row)
    }

    /// Checks everything a lookup relies on: offsets ascending within the text, every label
    /// UTF-8, the rows ordered by label strictly (so labels are unique), and exactly the
    /// labelled rows among them.
    pub(crate) fn verify(&self) -> Result<(), FormatError> {
        let bad = |problem: String| FormatError::BadSection {
            kind: SectionKind::Labels,
            problem,
        };
        if self.is_empty() {
            return Ok(());
        }
        if self.offsets.first() != Some(&0)
            || self.offsets.windows(2).any(|w| w[0] > w[1])
            || self.offsets.last() != Some(&(self.text.len() as u64))
        {
            return Err(bad("has offsets out of order or outside its text".into()));
        }
        let n_rows = self.offsets.len() - 1;
        let counted: u32 = self.labelled.iter().map(|w| w.count_ones()).sum();
        if counted as usize != self.by_label.len() {
            return Err(bad(format!(
                "marks {counted} rows labelled but orders {}",
                self.by_label.len()
            )));
        }
        let mut previous: Option<&str> = None;
        for &row in self.by_label {
            if row as usize >= n_rows {
                return Err(bad(format!("orders row {row}, past the items")));
            }
            let Some(label) = self.label(row)? else {
                return Err(bad(format!("orders row {row}, which has no label")));
            };
            if previous.is_some_and(|p| p.as_bytes() >= label.as_bytes()) {
                return Err(bad(format!(
                    "is not in label order, or repeats a label, at row {row}"
                )));
            }
            previous = Some(label);
        }
        for row in 0..n_rows {
            self.label(row as u32)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        words
    }

    #[test]
    fn labels_round_trip_both_ways() {
        let labels = [
            Some("königin"),
            None,
            Some(""),
            Some("a"),
            Some("日本"),
            None,
        ];
        let bytes = encode_labels(labels.len(), |row| labels[row]).unwrap();
        let words = aligned(&bytes);
        let section = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
        let parsed = Labels::parse(section, labels.len() as u64).unwrap();
        parsed.verify().unwrap();
        assert_eq!(parsed.len(), 4);
        for (row, want) in labels.iter().enumerate() {
            assert_eq!(parsed.label(row as u32).unwrap(), *want);
            if let Some(label) = want {
                assert_eq!(parsed.row_of(label), Some(row as u32));
            }
        }
        assert_eq!(parsed.row_of("b"), None);
        assert_eq!(parsed.label(99).unwrap(), None);
        assert!(Labels::parse(&section[..section.len() - 1], 6).is_err());
        assert!(Labels::parse(section, 7).is_err());
    }

    #[test]
    fn a_shared_label_is_refused() {
        let labels = ["x", "y", "x"];
        let err = encode_labels(3, |row| Some(labels[row])).unwrap_err();
        assert!(err.to_string().contains("share the label \"x\""), "{err}");
    }
}
