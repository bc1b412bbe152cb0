import numpy as np
from layout import known_neighbours, layout
from neighbours import neighbour_graph, prepare
from sklearn.metrics import silhouette_score


def blobs(n=200, centres=4, width=8, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, centres, n)
    return (rng.normal(0, 10, size=(centres, width))[truth] + rng.normal(size=(n, width))).astype(np.float32), truth


def test_cosine_neighbours_are_umap_cosine_distances():
    x, _ = blobs()
    graph = neighbour_graph(prepare(x, "cosine"), 32)
    indices, distances = known_neighbours(graph, 15, "cosine")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = 1 - np.einsum("id,ikd->ik", unit, unit[indices])
    np.testing.assert_allclose(distances, expected, atol=1e-5)
    assert indices.shape == (len(x), 15)


def test_umap_layout_from_the_neighbour_graph_separates_clusters_and_repeats():
    x, truth = blobs()
    params = {"method": "umap", "metric": "euclidean", "seed": 0}
    graph = neighbour_graph(prepare(x, "euclidean"), 32)
    first = layout(x, params, graph)
    assert first.shape == (len(x), 2)
    assert silhouette_score(first, truth) > 0.5
    np.testing.assert_array_equal(first, layout(x, params, graph))
