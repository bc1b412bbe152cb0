"""Metrics, summary, selection and provenance, called as plain functions."""

import numpy as np
import pytest
from metrics import compute_metrics, exemplars, internal_scores, label_scores
from provenance import git_commit, provenance, sha256_lines
from select_best import choose
from summary import summary_rows, varying


def blobs(n=30, centres=3, width=5, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 10, size=(centres, width))
    truth = np.repeat(np.arange(centres), n)
    return means[truth] + rng.normal(0, 0.5, size=(len(truth), width)), truth


def test_label_scores_on_all_and_on_clustered_points():
    labels = np.array([0, 0, 1, 1, -1, -1])
    ids = list("abcdef")
    truth = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "x", "f": ""}  # f is unlabelled
    scores = label_scores(labels, ids, truth)
    assert scores["n_labelled"] == 5
    assert scores["fraction_clustered"] == pytest.approx(0.8)
    assert scores["clustered"]["ari"] == 1.0 and scores["clustered"]["v_measure"] == 1.0
    assert scores["all"]["ari"] < 1.0  # the noise point e counts as its own group


def test_internal_scores_reward_separated_clusters():
    x, truth = blobs()
    good = internal_scores(x, truth, "euclidean", 0)
    shuffled = internal_scores(x, np.random.default_rng(0).permutation(truth), "euclidean", 0)
    assert good["silhouette"] > 0.8 > shuffled["silhouette"]
    assert good["dbcv"] > shuffled["dbcv"]
    assert good["davies_bouldin"] < shuffled["davies_bouldin"]
    assert good["sample_size"] is None
    assert set(internal_scores(x, np.zeros(len(x), dtype=int), "euclidean", 0).values()) == {None}
    # A cluster of one file (spectral clustering of 3 files makes one): DBCV is undefined.
    single = internal_scores(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]]), np.array([0, 0, 1]), "euclidean", 0)
    assert single["dbcv"] is None and single["silhouette"] is not None


def test_internal_scores_sample_large_inputs(monkeypatch):
    import metrics

    monkeypatch.setattr(metrics, "SAMPLE", 40)
    x, truth = blobs()
    scores = internal_scores(x, truth, "cosine", 0)
    assert scores["sample_size"] == 40 and scores["silhouette"] is not None
    assert scores == internal_scores(x, truth, "cosine", 0)  # seeded: the same sample


def test_dbcv_leaves_out_clusters_with_one_sampled_point(monkeypatch):
    """Thousands of small clusters: a sample holds single points of many, which DBCV
    cannot score; it scores the rest instead of failing."""
    import metrics

    monkeypatch.setattr(metrics, "SAMPLE", 60)
    rng = np.random.default_rng(0)
    truth = np.arange(300) % 100  # 100 clusters of 3
    x = rng.normal(0, 10, size=(100, 4))[truth] + rng.normal(0, 0.1, size=(300, 4))
    scores = internal_scores(x, truth, "euclidean", 0)
    assert scores["sample_size"] == 60 and 2 <= scores["dbcv_sample_size"] < 60
    assert scores["dbcv"] > 0.5


def test_exemplars_prefer_strong_members_near_the_centre():
    space = np.array([[0.0], [1.0], [5.0], [2.0], [100.0]])
    labels = np.array([0, 0, 0, 0, -1])
    probabilities = np.array([1.0, 1.0, 0.5, 1.0, 0.0])
    # Mean of cluster 0 is 2.0: among the probability-1 points, 3 (at 2.0) then 1 then 0.
    assert exemplars(space, labels, probabilities, k=3)[0].tolist() == [3, 1, 0]


def test_compute_metrics_counts_and_exemplar_ids():
    x, truth = blobs(n=10)
    labels = truth.copy()
    labels[0] = -1
    clusters = {"labels": labels, "probabilities": np.ones(len(x))}
    ids = [f"id{i:02d}" for i in range(len(x))]
    m = compute_metrics(x, clusters, ids, "euclidean", 0, {"truth": dict(zip(ids, map(str, truth)))})
    assert m["n_clusters"] == 3 and m["cluster_sizes"] == [9, 10, 10]
    assert m["noise_fraction"] == pytest.approx(1 / 30, abs=1e-6)
    assert all(e.startswith("id0") for e in m["clusters"][0]["exemplars"])
    assert m["labels"]["truth"]["clustered"]["ari"] == 1.0


def metrics_with(dbcv, noise):
    return {"internal": {"dbcv": dbcv}, "noise_fraction": noise}


def test_selection_by_dbcv_then_noise():
    assert choose([metrics_with(0.1, 0.1), metrics_with(0.3, 0.5), metrics_with(0.2, 0.0)]) == 1
    assert choose([metrics_with(0.3, 0.5), metrics_with(0.3, 0.2)]) == 1
    assert choose([metrics_with(None, 0.0), metrics_with(-0.5, 0.9)]) == 1
    assert choose([metrics_with(0.3, 0.2), metrics_with(0.3, 0.2)]) == 0


def test_summary_rows_and_the_varying_setting():
    results = [
        {"name": f"r{m}", "settings": {"algorithm": "hdbscan", "min_cluster_size": m, "min_samples": m}}
        for m in (5, 10)
    ]
    metrics = [
        {"n_clusters": k, "noise_fraction": 0.1, "internal": dict.fromkeys(["silhouette", "calinski_harabasz", "davies_bouldin", "dbcv"], 0.5), "labels": {}}
        for k in (4, 2)
    ]
    rows = summary_rows(results, metrics)
    assert [r["n_clusters_found"] for r in rows] == [4, 2] and rows[0]["result"] == "r5"
    assert varying(rows) == ["min_cluster_size"]  # min_samples only follows it


def test_provenance_digests_and_versions(tmp_path):
    matrix = tmp_path / "m.npy"
    np.save(matrix, np.ones((2, 3), dtype=np.float32))
    record = provenance({"pooling": "mean"}, ["a", "b"], str(matrix), None)
    assert record["n_inputs"] == 2
    assert record["input_ids_sha256"] == sha256_lines(["a", "b"]) != sha256_lines(["a", "c"])
    assert len(record["pooled_matrix_sha256"]) == 64
    assert {"python", "numpy", "scikit-learn", "hdbscan", "umap-learn", "snakemake"} <= set(record["versions"])
    assert record["versions"]["hdbscan"]
    assert git_commit(str(tmp_path)) is None
    assert record["reduction"] == {"method": "none"} and record["workflow_version"] is None
    assert provenance({}, ["a"], str(matrix), None, version="1.2.3")["workflow_version"] == "1.2.3"
    # PCA as run: the dimensions kept, the setting, and the share of variance.
    summary = {"method": "pca", "dim": 2, "requested_dim": 50, "input_shape": [2, 3], "explained_variance_ratio": [0.75, 0.25]}
    reduction = provenance({}, ["a", "b"], str(matrix), None, summary)["reduction"]
    assert reduction == {"method": "pca", "requested_dim": 50, "dim": 2, "input_shape": [2, 3], "explained_variance": 1.0}


def test_git_commit_marks_uncommitted_changes(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit = git_commit(str(tmp_path))
    assert len(commit) == 40
    (tmp_path / "f.txt").write_text("2")
    assert git_commit(str(tmp_path)) == commit + "+dirty"
