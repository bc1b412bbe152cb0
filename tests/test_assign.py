"""The assign stage: hdbscan's prediction functions, the neighbour vote, the exact search
and the UMAP placement, against the libraries' own code."""

import assign
import hdbscan
import numpy as np
import pytest
from assign import NearestTraining, hdbscan_assign, place_umap, vote_assign
from cluster import SPECTRAL_NEIGHBOURS, hdbscan_clusters, spectral_clusters
from hdbscan.prediction import approximate_predict, approximate_predict_scores, membership_vector
from neighbours import neighbour_graph
from neighbours import neighbour_count
from test_export import clusters_of_many_sizes


@pytest.mark.parametrize("n, centres, width, min_samples", [(1500, 6, 10, 5), (3000, 120, 6, 3)])
def test_hdbscan_assignment_equals_hdbscans_prediction(n, centres, width, min_samples):
    """On a tree hdbscan built itself: labels equal to approximate_predict's, membership
    strengths, outlier scores (approximate_predict_scores) and soft memberships
    (membership_vector) to 1e-6; new points drawn like the clustered ones, copies of
    clustered points and near-copies among them."""
    x = clusters_of_many_sizes(n + 600, centres, width, seed=centres)
    train = x[:n]
    new = np.vstack([x[n:], train[::9], train[:5] + 1e-9])
    library = hdbscan.HDBSCAN(min_cluster_size=5, min_samples=min_samples, approx_min_span_tree=False, prediction_data=True).fit(train)
    assert library.labels_.max() + 1 >= min(centres, 6)
    clusters = {"labels": library.labels_.astype(np.int64), "condensed_tree": library.condensed_tree_._raw_tree}
    # The core distances come from the neighbours stage's graph, as in the workflow.
    graph = neighbour_graph(train, neighbour_count(min_samples))
    labels, probabilities, scores, blocks = hdbscan_assign(train, new, clusters, graph, min_samples)
    expected_labels, expected_probabilities = approximate_predict(library, new)
    np.testing.assert_array_equal(labels, expected_labels)
    assert len(set(labels.tolist())) > 3 and (labels == -1).any()
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=1e-6, rtol=0)
    np.testing.assert_allclose(scores, approximate_predict_scores(library, new), atol=1e-6, rtol=0)
    parts = list(blocks)
    soft = np.vstack([m for _, m, _ in parts])
    np.testing.assert_allclose(soft, membership_vector(library, new), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.concatenate([p for _, _, p in parts]), soft.sum(axis=1), atol=1e-12)


def test_copies_of_clustered_points_get_their_own_clusters_back():
    """HDBSCAN (embclust's own clustering): each copy gets its file's label and its GLOSH
    outlier score. Spectral: each copy gets its file's own neighbour vote and label."""
    x = clusters_of_many_sizes(1200, 8, 6, seed=3)
    result = hdbscan_clusters(x, 5, 5)
    graph = neighbour_graph(x, neighbour_count(5))
    labels, _, scores, _ = hdbscan_assign(x, x.copy(), result._asdict(), graph, 5)
    assert (result.labels >= 0).sum() > 1000 and (result.labels < 0).any()
    np.testing.assert_array_equal(labels, result.labels)
    np.testing.assert_allclose(scores, result.outlier_scores, atol=1e-9)

    spectral = spectral_clusters(x, 8, seed=0)
    labels, probabilities, _, blocks = vote_assign(x, x.copy(), spectral.labels, SPECTRAL_NEIGHBOURS + 1)
    np.testing.assert_array_equal(next(blocks)[1], spectral.soft)
    plurality = spectral.soft[np.arange(len(x)), spectral.labels] == spectral.soft.max(axis=1)
    assert plurality.mean() > 0.95
    np.testing.assert_array_equal(labels[plurality], spectral.labels[plurality])
    np.testing.assert_array_equal(probabilities, spectral.soft[np.arange(len(x)), labels])


def test_vote_label_is_the_most_voted_ties_to_the_nearest():
    train = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    labels = np.array([0, 1, 1, 0, 2])
    got, probabilities, scores, blocks = vote_assign(train, np.array([[0.1], [2.9], [9.0]]), labels, 4)
    # Votes: {0,1,1,0} tie -> the nearest voter's (0 for 0.1; 0 for 2.9, nearest 3.0); {2,0,1,1} -> 1.
    assert got.tolist() == [0, 0, 1]
    np.testing.assert_allclose(probabilities, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(next(blocks)[1][2], [0.25, 0.5, 0.25])


@pytest.mark.parametrize("cells", [None, 1])
def test_exact_neighbours_equal_brute_force(monkeypatch, cells):
    """Nearest first, equal distances by lower index, exact duplicates at distance 0,
    points far from every cell, and a single cell."""
    if cells:
        monkeypatch.setattr(assign, "MAX_CELLS", cells)
    rng = np.random.default_rng(0)
    train = clusters_of_many_sizes(2000, 12, 8, seed=5)
    train[10] = train[11] = train[12]  # duplicates
    new = np.vstack([clusters_of_many_sizes(500, 12, 8, seed=6), train[[12, 40]], rng.uniform(-200, 200, (5, 8))])
    distances, indices = NearestTraining(train).query(new, 10)
    full = np.sqrt(((new[:, None, :] - train[None, :, :]) ** 2).sum(axis=2))
    order = np.lexsort((np.tile(np.arange(len(train)), (len(new), 1)), full), axis=1)[:, :10]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(distances, np.take_along_axis(full, order, axis=1), rtol=1e-12, atol=1e-12)
    assert indices[500].tolist()[:3] == [10, 11, 12] and distances[500, :3].tolist() == [0.0, 0.0, 0.0]
    small = NearestTraining(train[:4]).query(new[:3], 10)
    assert small[1].shape == (3, 4)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_umap_placement_is_umaps_transform_start(metric):
    """place_umap gives exactly where umap's transform starts its new points (its own
    graph and init_graph_transform, from the fitted model), and lands each new point in
    the blob where umap's full transform puts it."""
    import umap
    from umap.umap_ import init_graph_transform

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 6, size=(3, 20)) + 3
    truth = rng.integers(0, 3, 700)
    x = (centres[truth] + rng.normal(size=(700, 20))).astype(np.float32)
    train, new = x[:500], np.vstack([x[500:], x[:3]])
    model = umap.UMAP(n_components=2, n_neighbors=15, metric=metric, random_state=0).fit(train)
    placed = place_umap(new, train, model.embedding_, 15, metric)
    model.transform_mode = "graph"
    start = init_graph_transform(model.transform(new).tocsr(), model.embedding_)
    np.testing.assert_allclose(placed, start, rtol=1e-4, atol=1e-4 * np.abs(start).max())
    np.testing.assert_array_equal(placed[-3:], model.embedding_[:3])  # copies land on their rows
    model.transform_mode = "embedding"
    moved = model.transform(new)

    def blob(points):
        nearest = ((points[:, None, :] - model.embedding_[None]) ** 2).sum(axis=2).argmin(axis=1)
        return truth[:500][nearest]

    assert (blob(placed) == blob(moved)).mean() > 0.98
    assert (blob(placed)[:200] == truth[500:]).mean() > 0.98


def test_clips_sparser_than_every_clip_of_their_cluster_are_outside_it_copies_never():
    """outside_clusters (issue 23): a clip far from all data is outside, with an outlier
    score near 1; copies of clustered clips are never outside their cluster; clips drawn
    like the clustered ones mostly stay in."""
    from assign import outside_clusters

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(3, 8))
    truth = np.repeat(np.arange(3), 100)
    train = centres[truth] + rng.normal(size=(300, 8))
    labels = truth.copy()
    labels[::50] = -1  # some noise among them
    new = np.vstack([np.full((1, 8), -1000.0), train[::7], centres[truth[:60]] + rng.normal(size=(60, 8))])
    assigned = np.concatenate([[0], labels[::7], truth[:60]])
    outside, scores = outside_clusters(train, new, labels, assigned, 5)
    assert outside[0] and scores[0] > 0.99
    copies = slice(1, 1 + len(train[::7]))
    assert not outside[copies][assigned[copies] >= 0].any()
    assert outside[-60:].mean() < 0.1
