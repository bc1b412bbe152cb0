import json
import subprocess
import sys

import numpy as np
import pytest
import reduce
from _stage import InputError, Log
from conftest import REPO
from sklearn.decomposition import PCA


def structured(n, width, rank=12, seed=0):
    """float32 rows near a rank-`rank` subspace with well-separated variances, plus an offset."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(30, 3, rank)
    low = (rng.normal(size=(n, rank)) * scales) @ rng.normal(size=(rank, width))
    return (low + rng.normal(size=(n, width)) + 5).astype(np.float32)


def assert_same_up_to_sign(scores, reference):
    signs = np.sign((scores * reference).sum(axis=0))
    np.testing.assert_allclose(scores * signs, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def test_gram_pca_equals_full_svd_pca():
    matrix = structured(200, 5000)
    assert reduce.uses_gram(*matrix.shape)
    # 700 columns per block: 8 blocks, the last one narrower.
    scores, ratio, _, _ = reduce.pca(matrix, 10, Log(), block_bytes=200 * 8 * 700)
    model = PCA(n_components=10, svd_solver="full")
    reference = model.fit_transform(matrix.astype(np.float64))
    assert scores.dtype == np.float32 and scores.shape == (200, 10)
    assert_same_up_to_sign(scores, reference)
    np.testing.assert_allclose(ratio, model.explained_variance_ratio_, rtol=1e-9)


def test_gram_pca_does_not_depend_on_the_block_size():
    matrix = structured(50, 4500)
    one_block = reduce.gram_pca(matrix, 5, Log())
    many_blocks = reduce.gram_pca(matrix, 5, Log(), block_bytes=50 * 8 * 100)
    np.testing.assert_allclose(many_blocks[0], one_block[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(many_blocks[1], one_block[1], rtol=1e-9)


def test_gram_pca_is_deterministic_with_a_fixed_sign():
    matrix = structured(60, 4200)
    first, ratio, _, _ = reduce.gram_pca(matrix, 8, Log(), block_bytes=60 * 8 * 1000)
    second, again, _, _ = reduce.gram_pca(matrix, 8, Log(), block_bytes=60 * 8 * 1000)
    assert first.tobytes() == second.tobytes() and ratio.tobytes() == again.tobytes()
    # The largest-magnitude score of each component is positive.
    assert (first[np.abs(first).argmax(axis=0), np.arange(8)] > 0).all()


def test_block_loop_logs_progress():
    lines = []
    log = Log()
    log.info = lines.append
    reduce.gram_pca(structured(20, 4100), 3, log, block_bytes=20 * 8 * 1000)
    assert lines[-1].startswith("5/5 column blocks into the Gram matrix")


def test_memory_mapped_matrix_is_read_in_blocks(tmp_path):
    matrix = structured(40, 4400)
    np.save(tmp_path / "pooled.npy", matrix)
    mapped = np.load(tmp_path / "pooled.npy", mmap_mode="r")
    from_disk = reduce.pca(mapped, 6, Log(), block_bytes=40 * 8 * 1000)
    in_memory = reduce.pca(matrix, 6, Log(), block_bytes=40 * 8 * 1000)
    assert from_disk[0].tobytes() == in_memory[0].tobytes()


def test_reducing_a_memory_mapped_matrix_keeps_memory_far_below_its_size(tmp_path):
    # 256 MB on disk; read through the map, the process's resident memory would grow by about that much.
    np.save(tmp_path / "pooled.npy", np.random.default_rng(0).random((64, 1 << 20), dtype=np.float32))
    # VmHWM (peak RSS) is the new process's own; ru_maxrss would start from pytest's at the fork.
    code = f"""
import sys
import numpy as np
sys.path.insert(0, {str(REPO / "scripts")!r})
import reduce
from _stage import Log
def kb(key):
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(key)))
matrix = np.load({str(tmp_path / "pooled.npy")!r}, mmap_mode="r")
before = kb("VmRSS")
reduce.pca(matrix, 4, Log(), block_bytes=8 << 20)
print((kb("VmHWM") - before) // 1024)
"""
    growth_mb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert growth_mb < 64


def test_wide_matrix_with_more_files_than_columns_uses_randomized_svd(monkeypatch):
    monkeypatch.setattr(reduce, "COVARIANCE_EIGH_MAX_WIDTH", 8)
    tall, flat = structured(30, 20, rank=4), structured(12, 20, rank=4)
    assert not reduce.uses_gram(*tall.shape) and reduce.uses_gram(*flat.shape)
    scores = reduce.pca(tall, 3, Log())[0]
    reference = PCA(n_components=3, svd_solver="randomized", random_state=0).fit_transform(tall)
    np.testing.assert_array_equal(scores, reference.astype(np.float32))
    assert_same_up_to_sign(reduce.pca(flat, 3, Log())[0], PCA(n_components=3, svd_solver="full").fit_transform(flat))


@pytest.mark.parametrize("shape, eigh_max_width", [((300, 40), 4096), ((40, 4300), 4096), ((30, 20), 8)])
def test_saved_components_place_rows_where_the_reduction_did(tmp_path, monkeypatch, shape, eigh_max_width):
    """The fitted PCA, saved as plain arrays and read without pickle, maps the pooled
    rows to their reduced rows, for each solver: covariance eigh, the Gram matrix over
    column blocks (its components from a second pass), randomized SVD."""
    monkeypatch.setattr(reduce, "COVARIANCE_EIGH_MAX_WIDTH", eigh_max_width)
    matrix = structured(*shape, rank=6)
    reduced, _, fitted = reduce.reduce_matrix(matrix, {"method": "pca", "dim": 5}, Log())
    reduce.save_fitted(tmp_path / "reducer.npz", fitted)
    saved = np.load(tmp_path / "reducer.npz", allow_pickle=False)
    assert str(saved["method"]) == "pca" and saved["components_t"].shape == (shape[1], 5)
    again = (matrix - saved["mean"]) @ saved["components_t"]
    np.testing.assert_allclose(again, reduced, rtol=1e-4, atol=1e-4 * np.abs(reduced).max())


def test_too_many_components():
    with pytest.raises(InputError, match="reduce_dim=11 is more than PCA can give: 10 files of width 5000"):
        reduce.pca(structured(10, 5000), 11, Log())


def test_summary_has_explained_variance():
    reduced, summary, _ = reduce.reduce_matrix(structured(30, 5000), {"method": "pca", "dim": 4}, Log())
    assert reduced.shape == (30, 4) and summary["input_shape"] == [30, 5000]
    assert len(summary["explained_variance_ratio"]) == 4
    json.dumps(summary)


@pytest.mark.parametrize("n, width, kept", [(30, 16, 16), (12, 5000, 12), (40, 64, 40)])
def test_pca_keeps_what_it_can_give_and_says_so(capfd, n, width, kept):
    """The default reduce_dim=50 on a narrow or small input: clamped, in one line, and recorded."""
    matrix = structured(n, width, rank=min(8, width))
    reduced, summary, _ = reduce.reduce_matrix(matrix, {"method": "pca", "dim": 50}, Log(stage="reduce"))
    assert reduced.shape == (n, kept)
    assert summary["dim"] == kept and summary["requested_dim"] == 50 and len(summary["explained_variance_ratio"]) == kept
    lines = capfd.readouterr().err.splitlines()
    assert lines == [
        f"embclust reduce: reduce_dim=50 is more than PCA can give ({n} files of width {width}): keeping {kept} dims "
        f"(the path still names pca-50; reduce.json records {kept})"
    ]
    # Within what PCA can give, nothing is said and the setting is kept.
    _, summary, _ = reduce.reduce_matrix(matrix, {"method": "pca", "dim": 3}, Log(stage="reduce"))
    assert summary["dim"] == summary["requested_dim"] == 3 and capfd.readouterr().err == ""


def test_memory_request_of_gram_pca_follows_the_number_of_files(tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((100, 5000), dtype=np.float32))
    np.save(tmp_path / "narrow.npy", np.zeros((100, 64), dtype=np.float32))
    gram = 2048 + (8 * 100**2 + 2 * reduce.BLOCK_BYTES) // 10**6
    assert reduce.mem_mb(str(tmp_path / "wide.npy"), 2, "pca-50") == gram
    assert reduce.mem_mb(str(tmp_path / "wide.npy"), 2, "umap-5-euclidean-s0") == 2048 + 16
    assert reduce.mem_mb(str(tmp_path / "narrow.npy"), 1, "pca-50") == 2048 + 8


def test_covariance_pca_of_a_big_tall_matrix_is_scikit_learns(tmp_path, monkeypatch):
    """Above STREAM_BYTES a tall matrix is streamed from disk in row blocks through its
    covariance: the same scores (signs too), variance ratios, mean and components as
    scikit-learn's covariance_eigh PCA."""
    matrix = structured(3000, 64)
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    monkeypatch.setattr(reduce, "STREAM_BYTES", matrix.nbytes - 1)
    # 1,000 rows per block: 3 blocks.
    scores, ratio, mean, components_t = reduce.pca(mapped, 10, Log(), block_bytes=8 * 64 * 1000)
    model = PCA(n_components=10, svd_solver="covariance_eigh")
    reference = model.fit_transform(matrix.astype(np.float64))
    assert scores.dtype == np.float32 and scores.shape == (3000, 10)
    np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ratio, model.explained_variance_ratio_, rtol=1e-7)
    np.testing.assert_allclose(mean, model.mean_, rtol=1e-9)
    np.testing.assert_allclose(components_t.T, model.components_, atol=1e-6)


def test_memory_request_of_streamed_pca_follows_its_scores_not_the_matrix(tmp_path, monkeypatch):
    """Covariance PCA streams the matrix (a million files: 1.0 GB measured, against the
    40 GB that 8 x a 5 GB matrix would ask for): the request grows with N x dim."""
    np.save(tmp_path / "tall.npy", np.zeros((1000, 64), dtype=np.float32))
    monkeypatch.setattr(reduce, "STREAM_BYTES", 1000)
    blocks = 2048 + (2 * reduce.BLOCK_BYTES + 16 * 64**2) // 10**6
    assert reduce.mem_mb(str(tmp_path / "tall.npy"), 0.25, "pca-10") == blocks + (4 * 1000 * 10) // 10**6
    assert reduce.mem_mb(str(tmp_path / "tall.npy"), 0.25, "umap-10-euclidean-s0") == 2048
    # Time: a million files' 4,883 MB read in 160 s, asked for with room; ten million within a day.
    assert 25 <= reduce.runtime(4883, "pca-50") <= 40 and reduce.runtime(48828, "pca-50") < 24 * 60 / 4
