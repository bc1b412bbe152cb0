from pathlib import Path

import numpy as np
import pytest
from _stage import InputError
from cluster import cluster, hdbscan_clusters, neighbour_memberships, prepare
from export import soft_blocks
from sklearn.metrics import adjusted_rand_score


def soft_of(x, result, metric="euclidean"):
    """The soft memberships the export stage writes for a result, as one matrix."""
    return np.vstack([m for _, m, _ in soft_blocks(prepare(x, metric), result._asdict())])


def blobs(n=40, centres=3, width=8, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 10, size=(centres, width))
    truth = np.repeat(np.arange(centres), n)
    return (means[truth] + rng.normal(0, spread, size=(len(truth), width))).astype(np.float32), truth


def hdbscan_params(metric="euclidean", mcs=5, ms=5):
    return {"algorithm": "hdbscan", "min_cluster_size": mcs, "min_samples": ms, "metric": metric}


def test_hdbscan_finds_the_blobs_with_real_soft_memberships():
    x, truth = blobs(spread=3.0)
    result = cluster(x, hdbscan_params())
    labels, probabilities, soft = result.labels, result.probabilities, soft_of(x, result)
    assert adjusted_rand_score(truth, labels) > 0.9
    assert soft.shape == (len(x), labels.max() + 1)
    # hdbscan's rows sum to the chance of being in any cluster at all.
    assert ((soft.sum(1) > 0) & (soft.sum(1) <= 1 + 1e-9)).all()
    assert ((soft > 0.01) & (soft < 0.99)).any()  # not one-hot
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    # GLOSH: the far-out point is the most outlying one.
    x_out = np.vstack([x, x.mean(0) + 200])
    scores = cluster(x_out, hdbscan_params()).outlier_scores
    assert scores.argmax() == len(x) and ((scores >= 0) & (scores <= 1)).all()
    assert len(result.condensed_tree) > 0


def blobs_with_noise(n=2000, centres=8, width=10, seed=3):
    """Blobs of different spreads plus 5% uniform noise: HDBSCAN's usual input."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-20, 20, size=(centres, width))
    truth = rng.integers(0, centres, n)
    x = means[truth] + rng.normal(0, 1, size=(n, width)) * rng.uniform(0.5, 2.5, centres)[truth][:, None]
    noise = rng.random(n) < 0.05
    x[noise] = rng.uniform(-25, 25, size=(noise.sum(), width))
    return x


@pytest.mark.parametrize("k", [3, 32])
def test_spanning_tree_is_exact(k):
    """Same edge weights as hdbscan's exact (generic, all-pairs) tree. With k=3 the
    K-NN graph falls apart, so the cross-component edges and the brute-force
    searches are needed; with k=32 it stays whole."""
    import hdbscan
    from cluster import spanning_tree
    from neighbours import neighbour_graph

    x = blobs_with_noise(n=600, width=6)
    graph = neighbour_graph(x, k)
    assert (len(graph["cross_pairs"]) > 0) == (k == 3)
    tree = spanning_tree(x, graph, min_samples=3)
    exact = hdbscan.HDBSCAN(min_samples=3, algorithm="generic", gen_min_span_tree=True).fit(x)
    assert len(tree) == len(x) - 1
    assert len(np.unique(tree[:, :2])) == len(x)
    np.testing.assert_allclose(tree[:, 2], np.sort(exact.minimum_spanning_tree_._mst[:, 2]), rtol=1e-9)


def test_agrees_with_the_hdbscan_library():
    """Labels, membership strengths, GLOSH and soft memberships as hdbscan computes
    them with prediction data (exact tree), on the same input."""
    import hdbscan

    x = blobs_with_noise()
    ours = cluster(x, hdbscan_params(mcs=10, ms=10))
    library = hdbscan.HDBSCAN(min_cluster_size=10, min_samples=10, approx_min_span_tree=False, prediction_data=True).fit(x)
    assert adjusted_rand_score(library.labels_, ours.labels) >= 0.98
    n_clusters = library.labels_.max() + 1
    ours_soft = soft_of(x, ours)
    assert ours_soft.shape[1] == n_clusters >= 6
    # Cluster numbers may be permuted: match each of ours to the library's it overlaps most.
    same = [np.bincount(library.labels_[ours.labels == c] + 1, minlength=n_clusters + 1)[1:].argmax() for c in range(n_clusters)]
    assert sorted(same) == list(range(n_clusters))
    library_soft = hdbscan.all_points_membership_vectors(library)[:, same]
    # Same tree, same code after it: equal up to rounding.
    np.testing.assert_allclose(ours_soft, library_soft, atol=1e-6)
    np.testing.assert_allclose(ours.probabilities, library.probabilities_, atol=1e-6)
    np.testing.assert_allclose(ours.outlier_scores, library.outlier_scores_, atol=1e-6)


def test_cosine_is_euclidean_on_unit_vectors_with_real_memberships():
    import hdbscan

    # Directions carry the clusters; lengths vary wildly and must not matter.
    x, truth = blobs(spread=2.0, seed=1)
    x = x * np.random.default_rng(2).uniform(0.1, 10, size=(len(x), 1)).astype(np.float32)
    result = cluster(x, hdbscan_params("cosine"))
    labels, soft = result.labels, soft_of(x, result, "cosine")
    assert adjusted_rand_score(truth, labels) > 0.9
    # The seed's generic cosine path: same clusters, but no soft memberships there.
    generic = hdbscan.HDBSCAN(min_cluster_size=5, min_samples=5, metric="cosine", algorithm="generic")
    assert adjusted_rand_score(generic.fit(x.astype(np.float64)).labels_, labels) > 0.95
    assert ((soft > 0.01) & (soft < 0.99)).any()
    np.testing.assert_allclose(np.linalg.norm(prepare(x, "cosine"), axis=1), 1)


def test_cosine_refuses_zero_vectors():
    x, _ = blobs()
    x[3] = 0
    with pytest.raises(InputError, match="all-zero"):
        prepare(x, "cosine")


def test_only_noise_gives_empty_memberships():
    x = np.random.default_rng(0).normal(size=(10, 4))
    result = hdbscan_clusters(x, min_cluster_size=6, min_samples=6)
    labels, probabilities, soft = result.labels, result.probabilities, soft_of(x, result)
    assert (labels == -1).all() and (probabilities == 0).all()
    assert soft.shape == (10, 0)


def test_too_few_files():
    with pytest.raises(InputError, match="fewer than min_cluster_size=20"):
        hdbscan_clusters(np.zeros((10, 3)), 20, 20)
    with pytest.raises(InputError, match="too few for min_samples=15"):
        hdbscan_clusters(np.zeros((10, 3)), 5, 15)


def test_spectral_partitions_with_neighbour_memberships():
    x, truth = blobs(spread=2.0)
    labels, probabilities, outlier_scores, tree, soft, eigenvalues = cluster(
        x, {"algorithm": "spectral", "n_clusters": 3, "metric": "euclidean", "seed": 0}
    )
    assert eigenvalues is None  # n_clusters given, not read from an eigengap
    assert adjusted_rand_score(truth, labels) > 0.95
    assert set(labels) == {0, 1, 2}
    np.testing.assert_allclose(soft.sum(1), 1)
    np.testing.assert_array_equal(probabilities, soft[np.arange(len(x)), labels])
    np.testing.assert_allclose(outlier_scores, 1 - probabilities)
    assert len(tree) == 0
    again = cluster(x, {"algorithm": "spectral", "n_clusters": 3, "metric": "euclidean", "seed": 0})[0]
    np.testing.assert_array_equal(labels, again)


def test_a_point_counts_itself_among_its_neighbours_also_among_identical_ones():
    """issue 23: with ties the search need not list a point first, or at all; it is its own
    first voter all the same, so a singleton's probability is never 0."""
    x = np.ones((25, 4))
    labels = np.repeat([0, 1, 2], [17, 7, 1])
    soft = neighbour_memberships(x, labels, 3)
    assert soft[np.arange(25), labels].min() >= 1 / 11
    np.testing.assert_allclose(soft.sum(axis=1), 1)


def test_no_eigengap_takes_the_fewest_clusters_and_says_so():
    from cluster import eigengap_k, no_eigengap, self_tuning_graph

    assert no_eigengap(np.array([0.0, 1, 1, 1, 1.04])) and not no_eigengap(np.array([0, 0, 0, 0.9, 1]))
    k, values = eigengap_k(self_tuning_graph(np.zeros((25, 3))))
    assert k == 2 and no_eigengap(values)


def test_neighbour_memberships_count_the_point_and_its_neighbours():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1, 1])
    soft = neighbour_memberships(x, labels, 2, k=2)
    # Point 2 (label 1): itself plus its two nearest, points 1 and 0 (label 0).
    np.testing.assert_allclose(soft[2], [2 / 3, 1 / 3])
    np.testing.assert_allclose(soft[4], [0, 1])


@pytest.mark.parametrize("n", [40, 200])  # dense and sparse eigensolver paths
def test_eigengap_picks_the_number_of_blobs(n):
    from cluster import affinity_graph, eigengap_k

    x, truth = blobs(n=n, centres=4, spread=1.0, seed=3)
    k, values = eigengap_k(affinity_graph(x))
    assert k == 4 and values[0] == pytest.approx(0, abs=1e-6)
    labels = cluster(x, {"algorithm": "spectral", "n_clusters": "auto", "metric": "euclidean", "seed": 0}).labels
    assert adjusted_rand_score(truth, labels) == 1.0


def test_eigengap_counts_every_piece_of_a_disconnected_graph():
    """12 blobs far apart, 720 files: the k-NN graph is in 12 pieces, so the Laplacian has
    eigenvalue 0 twelve times. Lanczos on the whole graph found it 3 times (and so a
    UMAP space's k-NN graph in 14 pieces gave k = 7); piece by piece, the eigenvalues are
    the dense solver's and k is 12."""
    from cluster import affinity_graph, eigengap_k
    from scipy.sparse.csgraph import connected_components, laplacian

    rng = np.random.default_rng(7)
    centres = rng.uniform(-1000, 1000, size=(12, 5))
    x = np.concatenate([c + rng.normal(size=(60, 5)) for c in centres])
    affinity = affinity_graph(x)
    assert connected_components(affinity)[0] == 12
    k, values = eigengap_k(affinity)
    dense = np.linalg.eigvalsh(laplacian(affinity, normed=True).toarray())[: len(values)]
    np.testing.assert_allclose(values, dense, atol=1e-8)
    assert k == 12


def test_auto_k_finds_blobs_of_unequal_size():
    """Five groups of 6 to 150 files (voices20's run from 6 to 57): the eigengap of the
    self-tuning graph counts five, the small ones too."""
    from cluster import auto_k

    rng = np.random.default_rng(4)
    sizes = [6, 15, 40, 90, 150]
    centres = rng.normal(0, 6, size=(len(sizes), 32))
    x = np.concatenate([c + rng.normal(size=(size, 32)) for c, size in zip(centres, sizes)])
    assert auto_k(x)[0] == 5
    truth = np.repeat(np.arange(len(sizes)), sizes)
    labels = cluster(x, {"algorithm": "spectral", "n_clusters": "auto", "metric": "euclidean", "seed": 0}).labels
    assert adjusted_rand_score(truth, labels) > 0.95


def test_spectral_auto_reads_k_from_the_pooled_matrix_not_the_clustered_one():
    """k comes from the pooled vectors (three blobs), whatever the space clustered: here
    structureless noise, whose own graph has no clear gap at 3."""
    from cluster import auto_k

    pooled, _ = blobs(n=30, centres=3, spread=1.0, seed=2)
    reduced = np.random.default_rng(0).normal(size=(len(pooled), 2)).astype(np.float32)
    assert auto_k(reduced)[0] != 3
    params = {"algorithm": "spectral", "n_clusters": "auto", "metric": "euclidean", "seed": 0}
    assert cluster(reduced, params, pooled=pooled).labels.max() + 1 == 3


def test_auto_k_takes_exact_duplicates():
    """A group of 30 identical files (silent clips, say): their scale is 0, and the
    graph joins them to each other with weight 1 instead of dividing 0 by 0."""
    from cluster import auto_k, self_tuning_graph

    x, truth = blobs(n=30, centres=3, spread=1.0, seed=2)
    x[truth == 0] = x[truth == 0][0]
    graph = self_tuning_graph(x)
    assert np.isfinite(graph.data).all() and graph[0, 1] == 1.0
    assert auto_k(x)[0] == 3


def test_auto_k_on_the_fewest_files_picks_the_only_k_there_is():
    from cluster import affinity_graph, eigengap_k

    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]], dtype=np.float32)
    assert eigengap_k(affinity_graph(x))[0] == 2
    labels = cluster(x, {"algorithm": "spectral", "n_clusters": "auto", "metric": "euclidean", "seed": 0}).labels
    assert labels[0] == labels[1] != labels[2]
    with pytest.raises(InputError, match="2 files are too few for n_clusters=auto, which needs at least 3"):
        eigengap_k(affinity_graph(x[:2]))


def test_single_linkage_is_hdbscans_label():
    """The union-find that turns the spanning tree into hdbscan's single-linkage
    hierarchy numbers and sizes clusters exactly as hdbscan's own `label`."""
    from hdbscan._hdbscan_linkage import label

    from cluster import single_linkage

    rng = np.random.default_rng(3)
    n = 3000
    child = np.arange(1, n)
    parent = (rng.random(n - 1) * child).astype(int)  # a random tree over n points
    perm = rng.permutation(n)
    tree = np.column_stack([perm[child], perm[parent], np.sort(rng.random(n - 1))]).astype(float)
    tree[100:110, 2] = tree[100, 2]  # ties
    np.testing.assert_array_equal(single_linkage(tree), label(tree.copy()))


def test_hdbscan_runs_without_importing_scikit_learn(tmp_path):
    """The cluster job, given the neighbours stage's graph as in the workflow, loads only
    hdbscan's compiled tree code: importing hdbscan (and with it scikit-learn and
    scipy.stats) cost seconds of every rerun."""
    import subprocess
    import sys

    from neighbours import neighbour_graph
    from neighbours import neighbour_count

    x, _ = blobs()
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "graph.npz", **neighbour_graph(prepare(x, "euclidean"), neighbour_count(5)))
    code = (
        "import sys, numpy as np; sys.path.insert(0, 'scripts'); import cluster; "
        f"x = np.load({str(tmp_path / 'x.npy')!r}); g = dict(np.load({str(tmp_path / 'graph.npz')!r})); "
        "r = cluster.cluster(x, {'algorithm': 'hdbscan', 'min_cluster_size': 5, 'min_samples': 5, 'metric': 'euclidean'}, g); "
        "assert r.labels.max() == 2, r.labels; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'hdbscan', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "['hdbscan._hdbscan_tree']"


def test_candidate_tree_is_the_exact_tree_when_the_graph_has_every_edge():
    """The spanning tree of the graph's own edges (what an approximate graph gets)
    is exact when the graph holds every pair, exact duplicates (weight 0) included."""
    from cluster import candidate_spanning_tree, spanning_tree
    from neighbours import neighbour_graph

    x = blobs_with_noise(n=300, width=6)
    x = np.vstack([x, np.repeat(x[:1], 5, axis=0)])
    complete = neighbour_graph(x, len(x) - 1)
    tree = candidate_spanning_tree(complete, 3)
    assert len(tree) == len(x) - 1 and (tree[:5, 2] == 0).all()
    np.testing.assert_allclose(tree[:, 2], spanning_tree(x, neighbour_graph(x, 32), 3)[:, 2], rtol=1e-9)


@pytest.mark.slow
def test_approximate_graph_clusters_like_the_exact_one():
    """NN-descent gives HDBSCAN's clusters, the same on every run; where its K-NN
    graph falls apart (far blobs), the centroid-joined edges still make one tree."""
    from neighbours import approximate_neighbours, neighbour_graph

    x = blobs_with_noise(n=3000, centres=12)
    distances, indices = approximate_neighbours(x, 32)
    assert (indices[:, 0] == np.arange(len(x))).all() and (distances[:, 0] == 0).all()
    assert (np.diff(distances, axis=1) >= 0).all()
    graph = neighbour_graph(x, 32, approximate=True)
    assert bool(graph["approximate"])
    approximate = hdbscan_clusters(x, 10, 10, graph)
    exact = hdbscan_clusters(x, 10, 10, neighbour_graph(x, 32))
    assert adjusted_rand_score(exact.labels, approximate.labels) >= 0.98
    np.testing.assert_array_equal(approximate.labels, hdbscan_clusters(x, 10, 10, neighbour_graph(x, 32, approximate=True)).labels)

    far, truth = blobs(n=100, centres=6, spread=0.5)
    graph = neighbour_graph(far, 3, approximate=True)
    assert len(graph["cross_pairs"]) >= 5
    assert adjusted_rand_score(truth, hdbscan_clusters(far, 10, 3, graph).labels) == 1.0


def test_a_weak_eigengap_is_measured_against_the_next_largest():
    from cluster import WEAK_GAP, gap_strength

    clear = np.array([0.0, 0.0, 0.0, 0.9, 0.92, 1.0])  # k = 3 by far; next, k = 5
    strength, other = gap_strength(clear, 3)
    assert strength == pytest.approx(0.9 / 0.08) and other == 5
    weak = np.array([0.0, 0.1, 0.5, 0.55, 0.9, 0.95])  # gaps 0.4 (k = 2) and 0.35 (k = 4)
    strength, other = gap_strength(weak, 2)
    assert strength == pytest.approx(0.4 / 0.35) and strength < WEAK_GAP and other == 4


def test_the_eigengap_figure_names_k_and_how_weak_its_gap_is():
    from plot import eigengap

    fig = eigengap(np.array([0.0, 0.1, 0.5, 0.55, 0.9, 0.95]), "digits")
    title = fig.axes[0].get_title()
    assert "k = 2, its gap 1.14x the next largest (k = 4): weak" in title
    assert [round(b.get_height(), 2) for b in fig.axes[1].patches] == [0.1, 0.4, 0.05, 0.35, 0.05]
