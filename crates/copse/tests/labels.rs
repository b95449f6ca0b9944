//! Labels inside the index: a string per item, unique, looked up both ways; they follow their
//! items whatever the ids and the order of adds, survive save and load and on-disk builds, and
//! a corrupted labels section is an error, never a crash.

mod common;

use common::{clustered, reseal, rng};
use copse::{Error, Index, IndexBuilder, Metric, SectionKind};
use copse_format::{Header, SectionEntry};
use rand::RngExt;

/// Labels of every kind: unicode, empty, long, look-alikes (a prefix of another, case).
fn label_of(k: usize) -> Option<String> {
    match k % 7 {
        0 => None,
        1 => Some(format!("wörd-{k}")),
        2 => Some(format!("日本語{k}")),
        3 if k == 3 => Some(String::new()),
        4 => Some(format!("Word-{k}")),
        5 => Some(format!("word-{k}").repeat(20)),
        _ => Some(format!("w{k}")),
    }
}

fn builder_with(ids: &[u64], d: usize) -> (IndexBuilder, Vec<Vec<f32>>) {
    let data = clustered(&mut rng(3), ids.len(), d, 5);
    let mut b = IndexBuilder::new(d, Metric::Angular).unwrap().seed(1);
    for (k, (&id, v)) in ids.iter().zip(&data).enumerate() {
        match label_of(k) {
            Some(label) => b.add_item_with_label(id, v, &label).unwrap(),
            None => b.add_item(id, v).unwrap(),
        }
    }
    (b, data)
}

fn check_labels(index: &Index, ids: &[u64]) {
    assert_eq!(
        index.n_labels(),
        (0..ids.len()).filter(|&k| label_of(k).is_some()).count()
    );
    for (k, &id) in ids.iter().enumerate() {
        let want = label_of(k);
        assert_eq!(index.label(id).unwrap(), want.as_deref(), "id {id}");
        if let Some(label) = &want {
            assert_eq!(index.id_by_label(label), Some(id), "label {label:?}");
        }
    }
    assert_eq!(index.id_by_label("not a label"), None);
    assert_eq!(index.id_by_label("wörd"), None, "a prefix is not a match");
}

#[test]
fn labels_round_trip_with_dense_and_sparse_ids_in_memory_and_on_disk() {
    let n = 300;
    let dense: Vec<u64> = (0..n as u64).rev().collect();
    let sparse: Vec<u64> = (0..n as u64).map(|k| (k * 7919) << 40 | k).rev().collect();
    let dir = tempfile::tempdir().unwrap();
    for ids in [dense, sparse] {
        let (mut b, _) = builder_with(&ids, 8);
        assert_eq!(b.label(ids[1]), Some("wörd-1"));
        assert_eq!(b.id_by_label("wörd-1"), Some(ids[1]));
        let index = b.build(4).unwrap();
        index.verify().unwrap();
        check_labels(&index, &ids);
        assert!(
            index
                .sections()
                .iter()
                .any(|(k, _)| *k == SectionKind::Labels)
        );

        let path = dir.path().join("labels.copse");
        index.save(&path).unwrap();
        check_labels(&Index::load(&path).unwrap(), &ids);

        let (mut b, _) = builder_with(&ids, 8);
        let disk_path = dir.path().join("disk.copse");
        b.on_disk_build(&disk_path).unwrap();
        let on_disk = b.build(4).unwrap();
        assert_eq!(on_disk.as_bytes(), index.as_bytes());
        check_labels(&Index::load(&disk_path).unwrap(), &ids);
    }
}

#[test]
fn labels_are_unique_and_can_move_between_items_in_one_step() {
    let mut b = IndexBuilder::new(2, Metric::Euclidean).unwrap();
    b.add_item_with_label(1, &[0.0, 1.0], "a").unwrap();
    b.add_item_with_label(2, &[1.0, 0.0], "b").unwrap();
    // A label another item has: refused, and the item is not added.
    let err = b.add_item_with_label(3, &[1.0, 1.0], "a").unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateLabel { label, id: 3, other: 1 } if label == "a"),
        "{err}"
    );
    assert_eq!(b.len(), 2);
    // Relabelling an item frees its old label.
    b.set_label(1, "c").unwrap();
    b.add_item_with_label(3, &[1.0, 1.0], "a").unwrap();
    // Swapping two labels is one step; a clash within a step is refused whole.
    b.set_labels(&[(1, "b"), (2, "c")]).unwrap();
    assert!(b.set_labels(&[(1, "z"), (3, "z")]).is_err());
    assert!(matches!(
        b.set_labels(&[(9, "q")]),
        Err(Error::ItemMissing { id: 9 })
    ));
    let index = b.build(2).unwrap();
    assert_eq!(index.label(1).unwrap(), Some("b"));
    assert_eq!(index.label(2).unwrap(), Some("c"));
    assert_eq!(index.label(3).unwrap(), Some("a"));
    assert_eq!(index.id_by_label("z"), None);
    assert!(matches!(index.label(4), Err(Error::ItemOutOfRange { .. })));
}

#[test]
fn an_index_without_labels_has_no_section_and_answers_none() {
    let mut b = IndexBuilder::new(2, Metric::Euclidean).unwrap();
    b.add_item(0, &[0.0, 1.0]).unwrap();
    let index = b.build(1).unwrap();
    assert!(
        !index
            .sections()
            .iter()
            .any(|(k, _)| *k == SectionKind::Labels)
    );
    assert_eq!(index.label(0).unwrap(), None);
    assert_eq!(index.id_by_label(""), None);
    assert_eq!(index.n_labels(), 0);
}

#[test]
fn a_corrupted_labels_section_is_an_error_or_harmless_never_a_crash() {
    let ids: Vec<u64> = (0..120).collect();
    let (b, _) = builder_with(&ids, 4);
    let mut b = b;
    let good = b.build(2).unwrap().as_bytes().to_vec();
    let header: Header = bytemuck::pod_read_unaligned(&good[..size_of::<Header>()]);
    let entry_size = size_of::<SectionEntry>();
    let section = (0..header.n_sections as usize)
        .map(|i| {
            let at = size_of::<Header>() + i * entry_size;
            bytemuck::pod_read_unaligned::<SectionEntry>(&good[at..at + entry_size])
        })
        .find(|e| e.kind == SectionKind::Labels.code())
        .unwrap();
    let range = section.offset as usize..(section.offset + section.len) as usize;
    let mut r = rng(4);
    let mut refused_by_verify = 0;
    for case in 0..3000 {
        let mut bytes = good.clone();
        let at = r.random_range(range.clone());
        bytes[at] = match case % 3 {
            0 => bytes[at] ^ 0xFF,
            1 => bytes[at].wrapping_add(1),
            _ => r.random(),
        };
        if bytes == good {
            continue;
        }
        reseal(&mut bytes);
        // Open checks the section's parts against its length: an error, or an index.
        let Ok(index) = Index::from_bytes(&bytes) else {
            continue;
        };
        if index.verify().is_err() {
            refused_by_verify += 1;
        }
        for (k, &id) in ids.iter().enumerate().step_by(3) {
            let _ = index.label(id);
            if let Some(label) = label_of(k)
                && let Some(found) = index.id_by_label(&label)
            {
                assert!(index.contains(found), "case {case}: id {found}");
            }
        }
        let _ = index.nns_by_item(0, 3, None).unwrap();
    }
    assert!(refused_by_verify > 0);
}
