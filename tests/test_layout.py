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


def test_new_rows_are_placed_in_the_layout_as_its_own_rows():
    """layout.place: a copy of a laid-out row lands on its coordinates (PCA and UMAP);
    PCA projects with the layout's own PCA; UMAP's placement of a new row lies among its
    nearest rows' coordinates (a weighted mean of them)."""
    from layout import place

    x, truth = blobs(120)
    rng = np.random.default_rng(1)
    new = np.r_[x[[3, 50, 99]], x[[7]] + rng.normal(0, 0.05, size=(1, x.shape[1]))].astype(np.float32)
    pca = layout(x, {"method": "pca", "metric": "euclidean", "seed": 0})
    placed = place(new, x, pca, {"method": "pca", "metric": "euclidean", "seed": 0})
    np.testing.assert_allclose(placed[:3], pca[[3, 50, 99]], atol=1e-4)
    # Any coordinates stand for a UMAP layout: the placement only reads them.
    coords = rng.normal(size=(len(x), 2)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        placed = place(new, x, coords, {"method": "umap", "metric": metric, "seed": 0})
        np.testing.assert_array_equal(placed[:3], coords[[3, 50, 99]])
        same_blob = coords[truth == truth[7]]
        assert (same_blob.min(axis=0) <= placed[3]).all() and (placed[3] <= same_blob.max(axis=0)).all()
    assert place(new[:0], x, pca, {"method": "pca", "metric": "euclidean", "seed": 0}).shape == (0, 2)


def test_a_copy_through_a_float32_transform_lands_on_its_rows_point():
    """issue 23: with reduce=pca plot=umap, a copied clip's PCA transform differed from its
    reduced row by 1.6e-6 and was drawn away from it; within float32 rounding of the row's
    norm (relative 1e-6 here) a copy lands on the row's point, under either metric."""
    from layout import place

    x, truth = blobs(120)
    x = (x * 10).astype(np.float32)
    rng = np.random.default_rng(2)
    rows = [3, 50, 99]
    nudge = rng.normal(size=(3, x.shape[1])) * 1e-6 * np.linalg.norm(x[rows], axis=1, keepdims=True) / np.sqrt(x.shape[1])
    new = (x[rows] + nudge).astype(np.float32)
    assert not np.array_equal(new, x[rows])
    coords = rng.normal(size=(len(x), 2)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        placed = place(new, x, coords, {"method": "umap", "metric": metric, "seed": 0})
        np.testing.assert_array_equal(placed, coords[rows])
    # A row farther than rounding is placed among its neighbours, not on one of them.
    farther = place(x[[3]] + 0.05 * np.abs(x[[3]]).max(), x, coords, {"method": "umap", "metric": "euclidean", "seed": 0})
    assert not (farther == coords).all(axis=1).any()


def test_above_the_sample_size_umap_lays_out_a_sample_and_places_the_rest(monkeypatch):
    """Many files: UMAP of a seeded sample; every other file lands among the sampled
    files of its own cluster, the same on every run; a file whose neighbours are all
    unplaced is placed from those placed before it."""
    import layout as layout_stage

    monkeypatch.setattr(layout_stage, "SAMPLE_SIZE", 300)
    x, truth = blobs(1500)
    params = {"method": "umap", "metric": "euclidean", "seed": 0}
    graph = neighbour_graph(prepare(x, "euclidean"), 32)
    first = layout(x, params, graph)
    assert first.shape == (len(x), 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, layout(x, params, graph))
    sample = np.sort(np.random.default_rng(0).choice(len(x), 300, replace=False))
    others = np.setdiff1d(np.arange(len(x)), sample)
    nearest = ((first[others, None] - first[None, sample]) ** 2).sum(axis=2).argmin(axis=1)
    assert (truth[sample][nearest] == truth[others]).mean() > 0.99
    assert silhouette_score(first, truth) > 0.5


def test_placing_reaches_files_the_graph_does_not_connect_to_any_placed_one():
    from layout import place_from_graph

    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # Rows 3 and 4 only know each other: they take the nearest placed file's coordinates.
    indices = np.array([[0, 1], [1, 0], [2, 1], [3, 4], [4, 3]])
    distances = np.abs(x[indices, 0] - x[:, :1])
    coordinates = np.array([[0.0, 0.0], [0.0, 0.0], [4.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    placed = np.array([True, False, True, False, False])
    out = place_from_graph(coordinates, placed, indices, distances, x)
    np.testing.assert_allclose(out[1], [0.0, 0.0])  # its one placed neighbour, row 0
    np.testing.assert_allclose(out[3], [4.0, 2.0])
    np.testing.assert_allclose(out[4], [4.0, 2.0])


def test_placing_averages_only_neighbours_near_the_nearest_one_in_the_layout():
    """A file whose placed neighbours sit in two places far apart in the layout lands
    by the nearest one, not on a streak between them."""
    from layout import place_from_graph

    x = np.array([[0.0], [1.0], [1.5]])
    indices = np.array([[0, 1], [1, 0], [2, 1]])
    distances = np.abs(x[indices, 0] - x[:, :1])
    coordinates = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]])
    placed = np.array([True, True, False])
    # Row 2: neighbours 2 (itself, unplaced) and 1 (placed, at (10, 0)); nothing else to average.
    np.testing.assert_allclose(place_from_graph(coordinates, placed, indices, distances, x, radius=1.0)[2], [10.0, 0.0])
    indices = np.array([[0, 1], [1, 0], [1, 0]])
    distances = np.abs(x[indices, 0] - x[:, :1])
    near = place_from_graph(coordinates, placed, indices, distances, x, radius=1.0)[2]
    np.testing.assert_allclose(near, [10.0, 0.0])  # nearest placed is row 1; row 0 is 10 away in the layout
    between = place_from_graph(coordinates, placed, indices, distances, x)[2]
    assert 0 < between[0] < 10  # without a radius: the streak


def test_umap_layout_starts_from_principal_components_not_the_spectral_init(monkeypatch):
    """issue 24: the spectral init's eigensolver stalled for minutes on many small
    clusters. A graph of 60 components of 5 files each (which makes umap lay out each
    component's spectrum apart) must never reach it, and the layout still keeps each
    component together, the same on every run."""
    import umap.umap_

    def no_spectral(*args, **kwargs):
        raise AssertionError("the layout called UMAP's spectral initialisation")

    monkeypatch.setattr(umap.umap_, "spectral_layout", no_spectral)
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(60), 5)
    x = (rng.normal(0, 50, size=(60, 6))[truth] + rng.normal(0, 0.1, size=(300, 6))).astype(np.float32)
    params = {"method": "umap", "metric": "euclidean", "seed": 0}
    graph = neighbour_graph(prepare(x, "euclidean"), 32)
    first = layout(x, params, graph)
    assert silhouette_score(first, truth) > 0.5
    np.testing.assert_array_equal(first, layout(x, params, graph))


def test_principal_init_is_the_scaled_first_two_components():
    from layout import INIT_BOX, principal_init
    from sklearn.decomposition import PCA

    x, _ = blobs()
    init = principal_init(x, seed=0)
    assert init.dtype == np.float32 and init.shape == (len(x), 2)
    np.testing.assert_allclose(np.abs(init).max(), INIT_BOX, rtol=1e-4)
    scores = PCA(2, svd_solver="full").fit_transform(x)
    expected = scores * INIT_BOX / np.abs(scores).max()
    # Up to each component's sign, and the 1e-4 noise UMAP adds to its own inits.
    np.testing.assert_allclose(np.abs(init), np.abs(expected), atol=1e-3)
    np.testing.assert_array_equal(init, principal_init(x, seed=0))
    assert not np.array_equal(init, principal_init(x, seed=1))
    # One column: the second coordinate is the noise alone; identical rows: noise alone.
    one = principal_init(x[:, :1], seed=0)
    np.testing.assert_allclose(np.abs(one[:, 0]).max(), INIT_BOX, rtol=1e-4)
    assert np.abs(one[:, 1]).max() < 1e-3
    assert np.abs(principal_init(np.ones((20, 3), dtype=np.float32), seed=0)).max() < 1e-3


def test_principal_init_of_a_matrix_too_big_to_copy_streams_its_pca(monkeypatch):
    """Above reduce.STREAM_BYTES the PCA is streamed and logs progress: the layout's
    init needs no log of its own for that, and gives scikit-learn's components."""
    import reduce
    from layout import principal_init

    x, _ = blobs(300)
    monkeypatch.setattr(reduce, "STREAM_BYTES", 1000)
    streamed = principal_init(x, seed=0)
    monkeypatch.setattr(reduce, "STREAM_BYTES", 1 << 30)
    np.testing.assert_allclose(np.abs(streamed), np.abs(principal_init(x, seed=0)), atol=1e-3)
