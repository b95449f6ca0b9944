"""Runs the hypothesis argument fuzz (fuzz_api.py) in its own Python process, so that a crash
(an abort, as an allocation failure in Rust is) shows as a failed test instead of killing
pytest. Also checks, each in its own process, the calls that used to abort."""

import pathlib
import subprocess
import sys
import textwrap

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def run_isolated(args, cwd, timeout):
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    report = f"exit status {done.returncode}\n--- stdout\n{done.stdout[-20000:]}\n--- stderr\n{done.stderr[-5000:]}"
    return done.returncode, done.stdout, report


def test_argument_fuzz_raises_only_documented_errors(tmp_path):
    pytest.importorskip("hypothesis")
    # In a scratch directory: the fuzz saves to relative paths such as "abc", and hypothesis
    # keeps a .hypothesis folder in the working directory.
    code, _, report = run_isolated(
        ["-m", "pytest", str(HERE / "fuzz_api.py"), "-q", "-p", "no:cacheprovider"], tmp_path, timeout=600
    )
    assert code == 0, report


# Run first in each snippet: at most 16 GiB of address space, so that a huge allocation fails
# at once on any machine (an infallible one aborts, failing the test) instead of succeeding.
LIMIT = """
try:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > 16 << 30:
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, hard))
except (ImportError, ValueError, OSError):
    pass
"""


def check_in_subprocess(snippet):
    code, stdout, report = run_isolated(["-c", LIMIT + textwrap.dedent(snippet)], HERE, timeout=120)
    assert code == 0, report
    assert stdout.strip().endswith("ok"), report


def test_huge_n_in_a_batch_is_clamped_not_an_abort():
    check_in_subprocess(
        """
        import numpy as np
        from copse import AnnoyIndex
        index = AnnoyIndex(8, "euclidean")
        data = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
        index.add_items(None, data)
        index.build(3)
        queries = np.zeros((2, 8), np.float32)
        expected = [index.get_nns_by_vector(q, 50, search_k=10**6) for q in queries]
        for n in (50, 51, 2**31, 2**40, 2**63 - 1):
            ids = index.get_nns_by_vectors(queries, n, search_k=10**6)
            assert ids.shape == (2, 50), ids.shape
            assert ids.tolist() == expected
            assert [index.get_nns_by_vector(q, n, search_k=10**6) for q in queries] == expected
            assert index.get_nns_by_item(0, n, search_k=2**62)[0] == 0
        print("ok")
        """
    )


def test_huge_ids_trees_and_threads_are_errors_not_aborts():
    check_in_subprocess(
        """
        import numpy as np
        import pytest
        from copse import AnnoyIndex
        index = AnnoyIndex(8, "angular")
        index.add_item(0, [1.0] * 8)
        # Any id below 2**64 is an item; sparse ones go to the id map, so an id costs no
        # memory for the ids below it. From 2**64 on, an OverflowError.
        for i in (2**32, 2**40, 2**63 - 1, 2**63, 2**64 - 1):
            index.add_item(i, [1.0] * 8)
        assert len(index) == 6 and index.get_n_items() == 2**64
        for i in (2**64, 2**100):
            with pytest.raises(OverflowError, match="too large"):
                index.add_item(i, [1.0] * 8)
        wide = AnnoyIndex(1 << 16, "euclidean")  # 256 KiB rows: 2**31 of them is 512 TiB
        wide.add_item(2**31, np.zeros(1 << 16, np.float32))
        assert wide.get_n_items() == 2**31 + 1 and len(wide) == 1
        with pytest.raises(OverflowError):
            index.add_items([2**64], np.ones((1, 8)))
        assert len(index) == 6
        for n_trees in (0, -2, 65537, 2**31, 2**62):
            with pytest.raises(ValueError, match="n_trees"):
                index.build(n_trees)
        for n_jobs in (0, -2, 1025, 2**31, 2**62):
            with pytest.raises(ValueError, match="n_jobs"):
                index.build(1, n_jobs)
        for n_trees in (2**63, -(2**63) - 1):
            with pytest.raises(OverflowError):
                index.build(n_trees)
        assert index.build(65536, 2) and index.get_n_trees() == 65536
        index.unbuild()
        assert index.build(1, 1024) and index.get_n_trees() == 1
        for n in (-1, -(2**63)):
            with pytest.raises(ValueError, match="n must be"):
                index.get_nns_by_item(0, n)
            with pytest.raises(ValueError, match="n must be"):
                index.get_nns_by_vectors(np.ones((1, 8)), n)
        for k in (-2, -(2**63)):
            with pytest.raises(ValueError, match="search_k"):
                index.get_nns_by_vector([1.0] * 8, 1, k)
        for n_threads in (0, -2, 1025, 2**62):
            with pytest.raises(ValueError, match="n_threads"):
                index.get_nns_by_vectors(np.ones((1, 8)), 1, n_threads=n_threads)
        print("ok")
        """
    )


def test_huge_f_reserves_nothing_from_a_lying_len_or_build_minus_one():
    check_in_subprocess(
        """
        import pytest
        from copse import AnnoyIndex

        class Liar:
            def __len__(self):
                return 2**31

            def __getitem__(self, i):
                if i >= 3:
                    raise IndexError("only 3 values")
                return 1.0

        index = AnnoyIndex(2**31, "euclidean")
        with pytest.raises(IndexError, match="only 3 values"):
            index.add_item(0, Liar())
        assert index.get_n_items() == 0
        # build(-1) grows with f, up to the most trees build() takes.
        assert index.build(-1) and index.get_n_trees() == 65536
        print("ok")
        """
    )
