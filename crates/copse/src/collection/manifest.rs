//! The manifest: the one file that says what a collection is. Replacing it (write a temporary
//! file, sync, rename over `MANIFEST`, sync the directory) is how every change commits, so a
//! reader sees one commit or the next, never a mixture.
//!
//! Layout, little-endian:
//!
//! | field | bytes |
//! |---|---|
//! | magic `COPSECOL` | 8 |
//! | version (1) | 4 |
//! | dims | 4 |
//! | metric name length, name (UTF-8) | 1 + len |
//! | n_trees, leaf capacity | 4 + 4 |
//! | seed | 8 |
//! | graph: degree (0: no graph), candidates, rounds, search beam, α (f32 bits) | 5 × 4 |
//! | generation, next segment number | 8 + 8 |
//! | user data length, user data | 4 + len |
//! | segment count | 4 |
//! | per segment: number, items, header checksum, deleted count, deleted ids (ascending) | 8 × (4 + deleted) |
//! | xxh3-64 of everything before | 8 |

use copse_build::GraphOptions;
use copse_format::Metric;

/// The first bytes of every manifest.
pub(crate) const MAGIC: &[u8; 8] = b"COPSECOL";
/// The manifest version this code writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Segment numbers stay below this (a manifest past it is refused), so counting them up never
/// overflows.
pub(crate) const MAX_SEGMENT_NUMBER: u64 = 1 << 62;

/// How every segment of a collection is built (read with [`super::CollectionOptions::settings`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuildSettings {
    /// Trees per segment.
    pub n_trees: usize,
    /// Items per leaf (0: the builder's default).
    pub leaf_capacity: usize,
    /// The seed; each segment mixes its number into it.
    pub seed: u64,
    /// The graph each segment gets, or `None` for forests only.
    pub graph: Option<GraphOptions>,
}

/// One segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    /// Its number; the file is [`segment_file_name`] of it.
    pub number: u64,
    /// Items in the file (deleted ones included).
    pub n_items: u64,
    /// The file's header checksum, which ties the entry to exactly that file.
    pub header_checksum: u64,
    /// Ids deleted from this segment since it was written, ascending.
    pub deleted: Vec<u64>,
}

/// A collection's manifest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub dims: usize,
    pub metric: Metric,
    pub build: BuildSettings,
    /// Commits so far (0 for a new collection).
    pub generation: u64,
    /// The number the next segment gets.
    pub next_segment: u64,
    /// The caller's bytes, given at the last commit that gave any (merges keep them).
    pub user_data: Vec<u8>,
    /// Oldest first: an id lives in at most one segment, so the order only breaks ties.
    pub segments: Vec<SegmentEntry>,
}

/// A segment's file name.
pub(crate) fn segment_file_name(number: u64) -> String {
    format!("seg-{number:016x}.copse")
}

/// The segment number of a file name, if it is one.
pub(crate) fn segment_number(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".copse")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Manifest {
    /// The bytes written to `MANIFEST`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.segments.len() * 32);
        out.extend_from_slice(MAGIC);
        put32(&mut out, VERSION);
        put32(&mut out, self.dims as u32);
        let name = self.metric.to_string();
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        put32(&mut out, self.build.n_trees as u32);
        put32(&mut out, self.build.leaf_capacity as u32);
        put64(&mut out, self.build.seed);
        let graph = self.build.graph;
        put32(&mut out, graph.map_or(0, |g| g.degree as u32));
        put32(&mut out, graph.map_or(0, |g| g.candidates as u32));
        put32(&mut out, graph.map_or(0, |g| g.rounds as u32));
        put32(&mut out, graph.map_or(0, |g| g.search_beam as u32));
        put32(&mut out, graph.map_or(0, |g| g.alpha.to_bits()));
        put64(&mut out, self.generation);
        put64(&mut out, self.next_segment);
        put32(&mut out, self.user_data.len() as u32);
        out.extend_from_slice(&self.user_data);
        put32(&mut out, self.segments.len() as u32);
        for s in &self.segments {
            put64(&mut out, s.number);
            put64(&mut out, s.n_items);
            put64(&mut out, s.header_checksum);
            put64(&mut out, s.deleted.len() as u64);
            for &id in &s.deleted {
                put64(&mut out, id);
            }
        }
        let checksum = xxhash_rust::xxh3::xxh3_64(&out);
        put64(&mut out, checksum);
        out
    }

    /// Parses and checks a manifest; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a copse collection manifest (bad magic)".into());
        }
        let Some(body_len) = bytes.len().checked_sub(8) else {
            return Err("truncated".into());
        };
        let (body, tail) = bytes.split_at(body_len);
        let stored = u64::from_le_bytes(tail.try_into().map_err(|_| "truncated")?);
        if xxhash_rust::xxh3::xxh3_64(body) != stored {
            return Err("checksum mismatch: the manifest is truncated or corrupt".into());
        }
        let mut r = Reader {
            bytes: body,
            at: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "manifest version {version} is not supported (this copse reads version {VERSION})"
            ));
        }
        let dims = r.u32()? as usize;
        let name_len = r.take(1)?[0] as usize;
        let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| "metric name not UTF-8")?;
        let metric: Metric = name
            .parse()
            .map_err(|_| format!("unknown metric {name:?}"))?;
        let n_trees = r.u32()? as usize;
        let leaf_capacity = r.u32()? as usize;
        let seed = r.u64()?;
        let degree = r.u32()? as usize;
        let candidates = r.u32()? as usize;
        let rounds = r.u32()? as usize;
        let search_beam = r.u32()? as usize;
        let alpha = f32::from_bits(r.u32()?);
        let graph = (degree > 0).then_some(GraphOptions {
            degree,
            candidates,
            rounds,
            alpha,
            search_beam,
        });
        let generation = r.u64()?;
        let next_segment = r.u64()?;
        if next_segment > MAX_SEGMENT_NUMBER {
            return Err(format!(
                "next segment number {next_segment} is out of range"
            ));
        }
        if degree == 0 && (candidates | rounds | search_beam) != 0 {
            return Err("graph settings without a graph degree".into());
        }
        let user_len = r.u32()? as usize;
        let user_data = r.take(user_len)?.to_vec();
        let n_segments = r.u32()? as usize;
        let mut segments = Vec::with_capacity(n_segments.min(body.len() / 32));
        for _ in 0..n_segments {
            let number = r.u64()?;
            let n_items = r.u64()?;
            let header_checksum = r.u64()?;
            let n_deleted = r.u64()?;
            if n_deleted > n_items || n_deleted > (body.len() / 8) as u64 {
                return Err(format!(
                    "segment {number} lists {n_deleted} deletes for {n_items} items"
                ));
            }
            let deleted = (0..n_deleted)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            if deleted.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("segment {number}'s deleted ids are not ascending"));
            }
            if number >= next_segment {
                return Err(format!(
                    "segment {number} is not below the next segment number {next_segment}"
                ));
            }
            segments.push(SegmentEntry {
                number,
                n_items,
                header_checksum,
                deleted,
            });
        }
        if r.at != body.len() {
            return Err(format!(
                "{} bytes after the last segment",
                body.len() - r.at
            ));
        }
        if segments.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err("segments are not in ascending order".into());
        }
        Ok(Manifest {
            dims,
            metric,
            build: BuildSettings {
                n_trees,
                leaf_capacity,
                seed,
                graph,
            },
            generation,
            next_segment,
            user_data,
            segments,
        })
    }
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads fields in order, failing on truncation.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("truncated")?;
        let part = &self.bytes[self.at..end];
        self.at = end;
        Ok(part)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            dims: 7,
            metric: Metric::Dot,
            build: BuildSettings {
                n_trees: 12,
                leaf_capacity: 0,
                seed: 99,
                graph: Some(GraphOptions::default()),
            },
            generation: 4,
            next_segment: 9,
            user_data: b"offset 17".to_vec(),
            segments: vec![
                SegmentEntry {
                    number: 3,
                    n_items: 10,
                    header_checksum: 0xdead,
                    deleted: vec![1, 5, u64::MAX],
                },
                SegmentEntry {
                    number: 8,
                    n_items: 2,
                    header_checksum: 0xbeef,
                    deleted: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_every_damaged_byte_is_refused() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(Manifest::decode(&bad).is_err(), "flip at {at} accepted");
        }
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..len]).is_err(),
                "prefix {len} accepted"
            );
        }
    }

    #[test]
    fn segment_names_round_trip() {
        for n in [0, 1, 0xabc, u64::MAX] {
            assert_eq!(segment_number(&segment_file_name(n)), Some(n));
        }
        assert_eq!(segment_number("seg-1.copse"), None);
        assert_eq!(segment_number("MANIFEST"), None);
    }
}
