"""Index files written by Annoy itself: `AnnoyIndex(f, metric).load(path)` opens them (a file
without copse's magic bytes is read as an Annoy file of the object's f and metric), and the
answers are the ones the real annoy 1.17.3 gave for the same files, recorded in
crates/copse-annoy/tests/fixtures/answers.json by make_fixtures.py there."""

import json
import pathlib

import pytest

from copse import AnnoyIndex

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "copse-annoy" / "tests" / "fixtures"
CASES = json.loads((FIXTURES / "answers.json").read_text())["cases"]
TOLERANCE = 1e-5


def same(got, expected):
    ids, distances = got
    assert ids == expected["ids"]
    assert len(distances) == len(expected["distances"])
    for d, e in zip(distances, expected["distances"]):
        assert abs(d - e) <= TOLERANCE, (d, e)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_annoy_file_answers_as_annoy_did(case):
    index = AnnoyIndex(case["dims"], case["metric"])
    assert index.load(str(FIXTURES / case["file"])) is True
    assert index.get_n_items() == case["n_items"]
    assert index.get_n_trees() == case["n_trees"]
    for item in case["items"]:
        assert index.get_item_vector(item["id"]) == pytest.approx(item["vector"], abs=0)
    for pair in case["distances"]:
        d = index.get_distance(pair["a"], pair["b"])
        assert abs(d - pair["distance"]) <= TOLERANCE
    for q in case["by_item"]:
        got = index.get_nns_by_item(q["item"], q["n"], q["search_k"], include_distances=True)
        same(got, q)
    for q in case["by_vector"]:
        got = index.get_nns_by_vector(q["vector"], q["n"], q["search_k"], include_distances=True)
        same(got, q)
        # Without distances: the same ids.
        assert index.get_nns_by_vector(q["vector"], q["n"], q["search_k"]) == q["ids"]


def test_annoy_file_save_keeps_it_an_annoy_file(tmp_path):
    case = CASES[0]
    index = AnnoyIndex(case["dims"], case["metric"])
    index.load(FIXTURES / case["file"])
    index.save(tmp_path / "copy.ann")
    assert (tmp_path / "copy.ann").read_bytes() == (FIXTURES / case["file"]).read_bytes()
    q = case["by_item"][0]
    assert index.get_nns_by_item(q["item"], q["n"], q["search_k"]) == q["ids"]


def test_annoy_file_with_the_wrong_f_or_metric_is_an_oserror(tmp_path):
    case = next(c for c in CASES if c["name"] == "angular")
    path = FIXTURES / case["file"]
    # 12 dimensions: the file is not a whole number of 60-byte angular nodes.
    with pytest.raises(OSError, match="12 dimensions"):
        AnnoyIndex(12, "angular").load(path)
    # The index stays usable after a failed load of another file.
    index = AnnoyIndex(case["dims"], "angular")
    index.load(path)
    (tmp_path / "junk").write_bytes(b"x" * 53)
    with pytest.raises(OSError, match="not a whole number"):
        index.load(tmp_path / "junk")
    assert index.get_n_items() == case["n_items"]
