//! Building one tree: an explicit work stack over ranges of a permutation of the present ids,
//! each range split in place until it fits in a leaf. Because the left range is always taken
//! first, leaves come out in position order, so the permutation itself is the tree's leaf-id
//! list and each leaf is the range between consecutive offsets.

use copse_format::{NodeRef, SplitNode};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::BuildError;
use crate::split::{Items, Scratch, split_node};

/// One tree as the builder makes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    /// The present ids, grouped by leaf.
    pub ids: Vec<u32>,
    /// `n_leaves + 1` offsets into `ids`.
    pub leaf_offsets: Vec<u32>,
    /// Split nodes; `children` refer to this tree's splits and leaves.
    pub splits: Vec<SplitNode>,
    /// Each split's quantized normal, `row_len` i8 per split (f32 metrics); empty for hamming.
    pub normals: Vec<i8>,
    /// The root.
    pub root: NodeRef,
}

/// A range of `ids` waiting to become a node, and where to link it.
struct Work {
    start: usize,
    end: usize,
    parent: Option<(usize, usize)>,
}

pub(crate) fn build_tree(
    items: &Items<'_>,
    present: &[u32],
    leaf_capacity: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Tree, BuildError> {
    let mut tree = Tree {
        ids: present.to_vec(),
        ..Tree::default()
    };
    let mut scratch = Scratch::default();
    let mut stack = vec![Work {
        start: 0,
        end: present.len(),
        parent: None,
    }];
    while let Some(work) = stack.pop() {
        let count = work.end - work.start;
        let node = if count <= leaf_capacity {
            let leaf = u32::try_from(tree.leaf_offsets.len())
                .ok()
                .filter(|&l| l < copse_format::LEAF_FLAG)
                .ok_or_else(|| BuildError::TooLarge("more than 2^31 leaves in a tree".into()))?;
            tree.leaf_offsets.push(work.start as u32);
            NodeRef::leaf(leaf)
        } else {
            let index = tree.splits.len();
            if index >= copse_format::LEAF_FLAG as usize {
                return Err(BuildError::TooLarge(
                    "more than 2^31 splits in a tree".into(),
                ));
            }
            let range = &mut tree.ids[work.start..work.end];
            let split = split_node(items, range, rng, &mut scratch)?;
            tree.splits.push(split.node);
            tree.normals.extend_from_slice(&split.normal);
            let mid = work.start + split.mid;
            // Right first, so the left range is popped (and its leaves numbered) first.
            stack.push(Work {
                start: mid,
                end: work.end,
                parent: Some((index, 1)),
            });
            stack.push(Work {
                start: work.start,
                end: mid,
                parent: Some((index, 0)),
            });
            NodeRef::split(index as u32)
        };
        match work.parent {
            Some((split, side)) => tree.splits[split].children[side] = node,
            None => tree.root = node,
        }
    }
    tree.leaf_offsets.push(present.len() as u32);
    Ok(tree)
}

/// One tree encoded as the file stores it, ready to be copied into the sections: encoding runs
/// in the parallel build, so writing the file is little more than copying.
#[derive(Debug, Clone, Default)]
pub struct EncodedTree {
    /// The root.
    pub root: NodeRef,
    /// Number of split nodes.
    pub n_splits: u64,
    /// Number of ids (the present items).
    pub n_ids: u64,
    /// Split records (header and quantized normal, `split_stride` bytes each).
    pub records: Vec<u8>,
    /// `n_leaves + 1` offsets into the tree's ids.
    pub leaf_offsets: Vec<u32>,
    /// The ids grouped by leaf, packed `id_bits` bits each.
    pub packed_ids: Vec<u8>,
}

impl EncodedTree {
    /// The parts as the writer takes them.
    pub(crate) fn parts(&self) -> crate::TreeParts<'_> {
        crate::TreeParts {
            root: self.root,
            n_splits: self.n_splits,
            n_ids: self.n_ids,
            records: &self.records,
            leaf_offsets: &self.leaf_offsets,
            packed_ids: &self.packed_ids,
        }
    }
}

impl Tree {
    /// Encodes the tree for the file: split records of `stride` bytes (`row_len` i8 normal
    /// values each) and ids packed `id_bits` bits each.
    pub(crate) fn encode(self, stride: usize, row_len: usize, id_bits: u32) -> EncodedTree {
        let header = size_of::<SplitNode>();
        let mut records = vec![0u8; self.splits.len() * stride];
        for (i, (record, split)) in records
            .chunks_exact_mut(stride)
            .zip(&self.splits)
            .enumerate()
        {
            record[..header].copy_from_slice(bytemuck::bytes_of(split));
            if let Some(normal) = self.normals.get(i * row_len..(i + 1) * row_len) {
                record[header..header + row_len].copy_from_slice(bytemuck::cast_slice(normal));
            }
        }
        let mut packed_ids = Vec::new();
        copse_format::pack_ids(&self.ids, id_bits, &mut packed_ids);
        EncodedTree {
            root: self.root,
            n_splits: self.splits.len() as u64,
            n_ids: self.ids.len() as u64,
            records,
            leaf_offsets: self.leaf_offsets,
            packed_ids,
        }
    }
}
