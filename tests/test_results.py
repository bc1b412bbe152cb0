"""Metrics, summary, selection and provenance, called as plain functions."""

import numpy as np
import pytest
from metrics import compute_metrics, exemplars, internal_scores, label_scores
from provenance import git_commit, methods, provenance, sha256_lines, versions
from select_best import ch_scores, choose, runner_up, selection_paragraph, singletons, stability, with_selection
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


def scoring_cases():
    """Data sets the internal scores are checked on: separated and overlapping blobs of
    unequal sizes, clusters of two points, exact duplicates, 50 dimensions, noise-free
    labels with gaps in their ids."""
    rng = np.random.default_rng(7)
    x, truth = blobs(n=40, centres=4, width=6)
    yield "blobs", x, truth
    x, truth = blobs(n=25, centres=5, width=3, seed=1)
    yield "overlapping", x + rng.normal(0, 6, size=x.shape), truth
    sizes = [2, 2, 3, 60, 15]
    truth = np.repeat(np.arange(len(sizes)), sizes)
    yield "small clusters", rng.normal(0, 5, size=(len(sizes), 4))[truth] + rng.normal(0, 0.3, size=(len(truth), 4)), truth
    x, truth = blobs(n=20, centres=3, width=4, seed=2)
    x[1] = x[0]
    x[2] = x[0]
    yield "duplicates", x, truth
    truth = np.repeat([3, 7, 8], [50, 70, 30])
    centres = {3: 0.0, 7: 4.0, 8: 9.0}
    yield "50 dims", np.array([centres[t] for t in truth])[:, None] + rng.normal(0, 1, size=(len(truth), 50)), truth


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_internal_scores_are_scikit_learns_and_hdbscans(metric):
    """The scores computed here in numpy are the ones scikit-learn's silhouette,
    Calinski-Harabasz and Davies-Bouldin and hdbscan's validity_index (DBCV) give."""
    from hdbscan.validity import validity_index
    from sklearn import metrics as skm

    from metrics import DECIMALS, calinski_harabasz, davies_bouldin, dbcv, prepare, silhouette

    for name, raw, truth in scoring_cases():
        raw = np.asarray(raw, dtype=np.float64)
        space = prepare(raw, metric)
        _, y = np.unique(truth, return_inverse=True)
        expected = {
            "silhouette": skm.silhouette_score(raw, truth, metric=metric),
            "calinski_harabasz": skm.calinski_harabasz_score(space, truth),
            "davies_bouldin": skm.davies_bouldin_score(space, truth),
            "dbcv": validity_index(space, truth),
        }
        ours = {
            "silhouette": silhouette(raw, y, metric),
            "calinski_harabasz": calinski_harabasz(space, y),
            "davies_bouldin": davies_bouldin(space, y),
            "dbcv": dbcv(space, y),
        }
        for score, value in expected.items():
            assert ours[score] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, score)
            assert round(ours[score], DECIMALS) == round(value, DECIMALS), (name, score)


def test_internal_scores_import_neither_scikit_learn_nor_hdbscan():
    """Without a labels file the metrics job imports neither: the two cost seconds of
    every rerun."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, numpy as np; sys.path.insert(0, 'scripts'); import metrics; "
        "rng = np.random.default_rng(0); y = np.repeat([0, 1, 2, -1], 30); x = rng.normal(size=(120, 5)) + 5 * y[:, None]; "
        "r = metrics.compute_metrics(x, {'labels': y, 'probabilities': np.ones(120)}, [str(i) for i in range(120)], 'euclidean', 0); "
        "assert r['internal']['dbcv'] is not None; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'hdbscan', 'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]"


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


def scored(index, noise):
    return {"internal": {"calinski_harabasz": index}, "noise_fraction": noise}


def test_selection_by_calinski_harabasz_times_clustered_fraction_then_noise():
    metrics = [scored(100.0, 0.0), scored(400.0, 0.8), scored(None, 0.0), scored(100.0, 0.0)]
    scores = ch_scores(metrics)
    # Tight cores in a sea of noise do not win: 400 x 0.2 < 100 x 1.
    assert scores == [100.0, pytest.approx(80.0), None, 100.0]
    noise = [m["noise_fraction"] for m in metrics]
    assert choose(scores, noise) == 0 and runner_up(scores, noise, 0) == 3  # equals: the earlier
    assert choose([50.0, 50.0], [0.1, 0.0]) == 1  # ... unless it has more noise
    assert choose([None], [0.0]) == 0 and runner_up([None], [0.0], 0) is None  # one cluster: no index, still chosen alone
    assert singletons(np.array([1, -1, 0, -1])).tolist() == [1, 2, 0, 3]


def test_selection_picks_the_true_structure_where_dbcv_does_not():
    """Four blobs, of which two overlap a little. HDBSCAN with min_samples 5, 10 and 20
    finds the four; with min_samples 35 it merges blobs into two clusters. DBCV prefers
    the two; the Calinski-Harabasz index, on the same clustered points, the four."""
    from cluster import hdbscan_clusters
    from sklearn.metrics import adjusted_rand_score
    from test_cluster import blobs

    x, truth = blobs(n=40, centres=4, width=5, seed=5, spread=2.0)
    labels = [hdbscan_clusters(x, mcs, ms).labels for mcs, ms in ((5, 5), (10, 10), (20, 20), (5, 35))]
    metrics = [{"internal": internal_scores(x, l, "euclidean", 0), "noise_fraction": float((l < 0).mean())} for l in labels]
    dbcv = [m["internal"]["dbcv"] for m in metrics]
    assert int(np.argmax(dbcv)) == 3 and adjusted_rand_score(truth, labels[3]) < 0.5  # DBCV picks the merge
    best = choose(ch_scores(metrics), [m["noise_fraction"] for m in metrics])
    assert best != 3 and adjusted_rand_score(truth, labels[best]) > 0.95


def test_stability_is_one_for_a_clustering_that_never_changes():
    labels = np.array([0, 0, 1, 1, 1, -1])
    assert stability(labels, [labels.copy(), labels + (labels >= 0)]).tolist() == [1.0] * 6  # renamed clusters too
    assert stability(labels, []).tolist() == [1.0] * 6
    # One result moves file 2 to cluster 0: file 2 and its old and new companions lose, the noise file keeps 1.
    moved = np.array([0, 0, 0, 1, 1, -1])
    s = stability(labels, [labels, moved])
    assert s[5] == 1.0 and (s[:5] < 1.0).all()
    assert s[2] == pytest.approx((1 + 1 / 5) / 2)  # {2,3,4} against {0,1,2}: 1 shared of 5
    assert s[0] == pytest.approx((1 + 2 / 3) / 2)  # {0,1} against {0,1,2}


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
    # The processor and BLAS kernels, which decide the last bits of the results (numpy's OpenBLAS at least).
    assert set(record["machine"]) == {"cpu", "blas"} and any(b.startswith("openblas ") for b in record["machine"]["blas"])
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


HDBSCAN_SETTINGS = {
    "pooling": "mean", "reduce": "pca", "reduce_dim": 50, "algorithm": "hdbscan", "min_cluster_size": 5,
    "min_samples": 5, "metric": "euclidean", "embedding_dir": "emb", "dataset": "emb", "labels": None,
    "neighbour_graph": "exact",
}  # fmt: skip
PCA_16_OF_50 = {"method": "pca", "requested_dim": 50, "dim": 16, "input_shape": [30, 16], "explained_variance": 1.0}


def paragraph(text):
    body, references = text.split("\n\n## References\n\n")
    return body, references


def test_methods_names_each_step_with_its_settings_and_references():
    text = methods(HDBSCAN_SETTINGS, PCA_16_OF_50, 30, 16, versions(), "0.2.0", [{"method": "pca"}])
    body, references = paragraph(text)
    assert text.startswith("# Methods\n\n") and body.count("\n\n") == 1  # one paragraph to paste
    for step in (
        "Each of the 30 embeddings was averaged over its frames (mean pooling) into one 16-dimensional vector",
        "to 16 components, which kept 100.0% of the variance",
        "50 components were requested, but PCA of 30 vectors of width 16 gives at most 16",
        "32 exact nearest neighbours in euclidean distance",
        "HDBSCAN (Campello, Moulavi & Sander, 2013; McInnes, Healy & Astels, 2017) with min_cluster_size=5 and min_samples=5",
        "laid out in two dimensions by the first two principal components",
        "(DBCV; Moulavi et al., 2014)",
        "No step used a random seed: PCA and HDBSCAN are deterministic.",
        f"embclust 0.2.0, a Snakemake workflow (Mölder et al., 2021), with Python {versions()['python']}",
        f"scikit-learn {versions()['scikit-learn']}, hdbscan {versions()['hdbscan']}",
    ):
        assert step in body, step
    for cited in ("Campello, R. J. G. B., Moulavi, D., & Sander, J. (2013)", "McInnes, L., Healy, J., & Astels, S. (2017)",
                  "Moulavi, D., Jaskowiak", "Pearson, K. (1901)", "Pedregosa, F."):  # fmt: skip
        assert cited in references, cited
    assert "Melville" not in text and "spectral" not in text and "Hubert" not in text  # not used, not cited

    # Each setting changes the text: here the clustering's parameters, the kept dimensions and the labels.
    other = methods(dict(HDBSCAN_SETTINGS, min_cluster_size=7, min_samples=7), PCA_16_OF_50, 30, 16, versions(), "0.2.0")
    assert "min_cluster_size=7 and min_samples=7" in other and "min_cluster_size=5" not in other
    kept_all = dict(PCA_16_OF_50, requested_dim=16)
    assert "were requested" not in methods(HDBSCAN_SETTINGS, kept_all, 30, 16, versions(), "0.2.0")
    labelled = methods(dict(HDBSCAN_SETTINGS, labels="l.csv"), PCA_16_OF_50, 30, 16, versions(), "0.2.0")
    assert "adjusted Rand index (Hubert & Arabie, 1985)" in labelled and "Hubert, L., & Arabie, P. (1985)" in labelled


def test_methods_of_a_million_files_say_what_was_approximate():
    """Above the exact search's size: NN-descent with its citation, the spanning tree over
    the graph's edges, and the UMAP layout of a sample."""
    million = dict(HDBSCAN_SETTINGS, neighbour_graph="approximate")
    body, references = paragraph(methods(million, PCA_16_OF_50, 1_000_000, 16, versions(), "0.2.0", [{"method": "umap", "metric": "euclidean", "seed": 0}]))
    assert "32 approximate nearest neighbours in euclidean distance were found by NN-descent (Dong, Charikar & Li, 2011" in body
    assert "the minimum spanning tree of mutual reachability distances over those edges" in body and "exact minimum" not in body
    assert "UMAP (McInnes, Healy & Melville, 2018) of a random sample of 100,000 vectors" in body
    small = methods(HDBSCAN_SETTINGS, PCA_16_OF_50, 30, 16, versions(), "0.2.0", [{"method": "umap", "metric": "euclidean", "seed": 0}])
    for text in (body, small):  # what started the UMAP layout (issue 24)
        assert "initialised from the clustered vectors' two leading principal components scaled to a ±10 box" in text
    assert "Dong, W., Charikar, M., & Li, K. (2011)" in references
    exact = methods(dict(HDBSCAN_SETTINGS, neighbour_graph="exact"), PCA_16_OF_50, 30, 16, versions(), "0.2.0")
    assert "NN-descent" not in exact and "Dong, W." not in exact


def test_methods_of_spectral_clustering_after_umap_name_the_seed_and_the_chosen_k():
    spectral = dict(HDBSCAN_SETTINGS, algorithm="spectral", n_clusters="auto", seed=3, metric="cosine", reduce="umap", reduce_dim=5)
    umap = {"method": "umap", "requested_dim": 5, "dim": 5, "metric": "cosine", "seed": 3, "input_shape": [30, 16], "n_neighbors": 29}
    body, references = paragraph(methods(spectral, umap, 30, 16, versions(), "0.2.0", [], n_clusters_used=4))
    assert "reduced by UMAP (McInnes, Healy & Melville, 2018) to 5 dimensions" in body
    assert "spectral clustering (Ng, Jordan & Weiss, 2002; von Luxburg, 2007) into k=4 clusters, chosen as the k in 2..20" in body
    assert "the graph being a self-tuning one (Zelnik-Manor & Perona, 2004; 15 nearest neighbours" in body
    assert "Zelnik-Manor, L., & Perona, P. (2004)" in references
    assert "random_state=3" in body and "The random seed (random_state) was 3 for the UMAP reduction and spectral clustering." in body
    # No PCA reduction step; PCA is named only where k was read.
    assert "cosine distance" in body and "HDBSCAN" not in body and "principal component analysis" not in body
    assert "of the pooled vectors reduced by PCA (Pearson, 1901) to at most 50 dimensions" in body
    assert "Ng, A. Y., Jordan, M. I., & Weiss, Y. (2002)" in references and "von Luxburg, U. (2007)" in references
    assert "McInnes, L., Healy, J., & Melville, J. (2018)" in references and "Campello, R. J. G. B., Moulavi, D., & Sander" not in references


def test_best_methods_say_how_the_sweep_chose_the_result():
    results = [{"name": f"mean/pca-50/hdbscan-mcs{m}-ms{m}-euclidean", "settings": dict(HDBSCAN_SETTINGS, min_cluster_size=m, min_samples=m)} for m in (5, 10)]
    metrics = [{"noise_fraction": 0.25, "internal": {"dbcv": d, "calinski_harabasz": c}} for d, c in ((0.2, 300.0), (0.3, 400.0))]
    text = with_selection(methods(results[1]["settings"], PCA_16_OF_50, 30, 16, versions(), "0.2.0"), selection_paragraph(results, metrics, 1, ch_scores(metrics)))
    body, references = paragraph(text)
    chosen, selection = body.split("\n\n")[1:]
    assert "min_cluster_size=10" in chosen
    assert selection == (
        "This result was selected without labels from the 2 results of a sweep over min_cluster_size (5, 10): the one "
        "with the highest Calinski-Harabasz index (Caliński & Harabasz, 1974) of its clustered points, computed in the "
        "space the clustering saw, times the fraction of points clustered, ties going to the smaller noise fraction, "
        "then to the earlier result. It is mean/pca-50/hdbscan-mcs10-ms10-euclidean; its index was 400.0 and its "
        "score 300.0, with 25.0% of the points labelled noise."
    )
    assert references.count("Caliński, T., & Harabasz, J. (1974)") == 1


UMAP_5 = {"method": "umap", "dim": 5, "requested_dim": 5, "metric": "cosine", "seed": 3, "input_shape": [30, 16], "n_neighbors": 29}
SPECTRAL_SETTINGS = dict(HDBSCAN_SETTINGS, algorithm="spectral", n_clusters=4, seed=3)


@pytest.mark.parametrize(
    "settings, reduction, key, value, stated",
    [
        # Each stage's record, and the settings the result's path names: change one, find it.
        (HDBSCAN_SETTINGS, UMAP_5, "n_neighbors", 50, "n_neighbors=50"),
        (HDBSCAN_SETTINGS, UMAP_5, "dim", 7, "to 7 dimensions"),
        (HDBSCAN_SETTINGS, UMAP_5, "seed", 11, "random_state=11"),
        (HDBSCAN_SETTINGS, UMAP_5, "metric", "euclidean", "euclidean metric"),
        (HDBSCAN_SETTINGS, PCA_16_OF_50, "dim", 12, "to 12 components"),
        (HDBSCAN_SETTINGS, PCA_16_OF_50, "requested_dim", 40, "40 components were requested"),
        (HDBSCAN_SETTINGS, PCA_16_OF_50, "explained_variance", 0.875, "kept 87.5% of the variance"),
        (HDBSCAN_SETTINGS, PCA_16_OF_50, "input_shape", [30, 8000], "computed exactly from the eigendecomposition of the centred Gram matrix"),
        (HDBSCAN_SETTINGS, None, "min_cluster_size", 9, "min_cluster_size=9"),
        (HDBSCAN_SETTINGS, None, "min_samples", 40, "min_samples=40"),
        (HDBSCAN_SETTINGS, None, "min_samples", 40, "64 exact nearest neighbours"),
        (HDBSCAN_SETTINGS, None, "metric", "cosine", "cosine distance"),
        (HDBSCAN_SETTINGS, None, "neighbour_graph", "approximate", "NN-descent"),
        (HDBSCAN_SETTINGS, None, "pooling", "max", "max-pooled"),
        (dict(HDBSCAN_SETTINGS, pooling="flatten", flatten_frames=3), None, "flatten_frames", 6, "its first 6 frames"),
        (dict(HDBSCAN_SETTINGS, trim_padding=True, frames_per_second=50), None, "frames_per_second", 25, "ceil(duration x 25)"),
        (SPECTRAL_SETTINGS, None, "n_clusters", 6, "k=6 clusters"),
        (SPECTRAL_SETTINGS, None, "seed", 8, "random_state=8"),
    ],
)
def test_methods_state_each_parameter_as_recorded(settings, reduction, key, value, stated):
    """issue 23: methods.md said n_neighbors=15 where reduce.json recorded 50 (a default of
    its own). Every parameter it states comes from the stage's record or the result's
    settings: changing one changes the text to say the new value."""
    reduction = reduction or PCA_16_OF_50
    before = methods(settings, reduction, 30, 16, versions(), "0.2.0")
    if key in reduction:
        after = methods(settings, dict(reduction, **{key: value}), 30, 16, versions(), "0.2.0")
    else:
        after = methods(dict(settings, **{key: value}), reduction, 30, 16, versions(), "0.2.0")
    assert stated in after and stated not in before


def test_methods_of_a_umap_reduction_without_its_record_of_n_neighbors_fail():
    """No fallback: a reduction record without n_neighbors is not described from a default."""
    with pytest.raises(KeyError):
        methods(HDBSCAN_SETTINGS, {k: v for k, v in UMAP_5.items() if k != "n_neighbors"}, 30, 16, versions(), "0.2.0")


def test_provenance_keeps_every_parameter_reduce_json_records():
    """issue 23: provenance.reduction dropped UMAP's n_neighbors, and methods() fell back to 15."""
    from provenance import reduction

    record = {"method": "umap", "dim": 10, "metric": "euclidean", "seed": 0, "requested_dim": 10, "input_shape": [300, 64], "n_neighbors": 50}
    assert reduction(record) == record
    assert "n_neighbors=50" in methods(HDBSCAN_SETTINGS, reduction(record), 300, 64, versions(), "0.2.0")
