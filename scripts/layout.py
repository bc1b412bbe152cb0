"""Layout stage: 2-D coordinates for plots, independent of clustering settings.

UMAP takes its 15 nearest neighbours from the neighbours stage's graph
(scripts/neighbours.py), which HDBSCAN uses too: no neighbour search of its own,
and none of the numba compilation that search costs in every new process.

Seeded UMAP optimises single-threaded (for determinism), and its cost grows with
the files: about a minute at 50k files, over 12 minutes at 200k on 2 cores. Above
SAMPLE_SIZE files, UMAP lays out a seeded random sample of SAMPLE_SIZE (with
the sample's own exact neighbours) and every other file is placed from the
neighbour graph: at the inverse-distance weighted mean of the positions of its
placed neighbours that lie near the nearest one in the layout, in rounds, so that
a file with no sampled neighbour is placed from neighbours placed in an earlier
round.

UMAP starts from the layout matrix's first two principal components (principal_init),
not from its default spectral initialisation: on 50,000 files from 2,000 Pareto-sized
clusters (bench/make_data.py --generator pareto) the spectral init's eigensolver took
most of the layout's time (old layout 6.8x the new one, in the same conditions; issue
24's run logged ARPACK failing and LOBPCG not converging), while the principal
components cost well under a second on any data. With reduce: umap the
layout matrix is the reduction's own embedding, so the 2-D layout starts from it."""

import warnings

import numpy as np

# Neighbours of each point in a UMAP layout; they come from the same graph.
UMAP_NEIGHBOURS = 15
# UMAP lays out at most this many files; above, a sample, and the rest are placed.
SAMPLE_SIZE = 100_000


def known_neighbours(graph, n_neighbors, metric):
    """(indices, distances) in UMAP's terms from the neighbours stage's graph, whose
    cosine distances are euclidean distances of unit vectors."""
    indices, distances = graph["indices"][:, :n_neighbors], graph["distances"][:, :n_neighbors]
    if metric == "cosine":
        distances = distances**2 / 2  # 1 - cos(a, b) = |a - b|^2 / 2 for unit vectors
    return np.ascontiguousarray(indices), np.ascontiguousarray(distances, dtype=np.float32)


def place_from_graph(coordinates, placed, indices, distances, x, radius=np.inf, log=None):
    """Coordinates of every file: those with `placed` kept, the others at the
    inverse-distance weighted mean of their placed neighbours (graph rows) that lie
    within `radius` of the nearest one's position (averaging positions far apart
    in the layout would draw streaks between them), round by round; files the graph
    never reaches take their nearest placed file's (by brute force)."""
    coordinates, placed = coordinates.copy(), placed.copy()
    rounds = 0
    while not placed.all():
        todo = np.flatnonzero(~placed)
        near, d = indices[todo], distances[todo]
        known = placed[near]
        reach = known.any(axis=1)
        if not reach.any():
            from neighbours import nearest_outside

            label = placed.astype(np.int64)  # 0 unplaced, 1 placed: nearest point in the other "component"
            sq = (x**2).sum(axis=1)
            partner, _, _ = nearest_outside(x, sq, np.zeros(len(x)), label, todo)
            coordinates[todo] = coordinates[partner]
            placed[todo] = True
            break
        todo, near, d, known = todo[reach], near[reach], d[reach], known[reach]
        nearest = near[np.arange(len(todo)), np.where(known, d, np.inf).argmin(axis=1)]
        close = ((coordinates[near] - coordinates[nearest][:, None, :]) ** 2).sum(axis=2) <= radius**2
        # A copy of a placed file (distance 0) lands on it.
        weight = np.where(known & close, 1.0 / np.maximum(d, 1e-12), 0.0)
        coordinates[todo] = np.einsum("ij,ijk->ik", weight / weight.sum(axis=1, keepdims=True), coordinates[near])
        placed[todo] = True
        rounds += 1
    if log:
        log.info(f"placed the files outside the sample in {rounds} rounds along the neighbour graph")
    return coordinates


def sampled_layout(matrix, params, graph, log=None):
    """UMAP of a seeded sample of SAMPLE_SIZE files, the rest placed (see the docstring)."""
    from neighbours import nearest_neighbours, prepare

    n = matrix.shape[0]
    sample = np.sort(np.random.default_rng(params["seed"]).choice(n, SAMPLE_SIZE, replace=False))
    x = prepare(matrix, params["metric"])
    if log:
        log.info(f"UMAP of a sample of {SAMPLE_SIZE} of {n} files, the others placed by their neighbours")
    distances, indices = nearest_neighbours(x[sample], UMAP_NEIGHBOURS)
    coordinates = np.zeros((n, 2))
    coordinates[sample] = layout(matrix[sample], params, {"indices": indices, "distances": distances}, log)
    # Neighbours count as near in the layout within twice the median laid-out distance between sampled neighbours.
    spread = np.sqrt(((coordinates[sample][:, None, :] - coordinates[sample][indices[:, 1:]]) ** 2).sum(axis=2))
    placed = np.zeros(n, dtype=bool)
    placed[sample] = True
    radius = 2 * float(np.median(spread))
    return place_from_graph(coordinates, placed, graph["indices"], graph["distances"], x, radius, log).astype(np.float32)


# UMAP scales its own initialisations into this box, and adds this much noise (umap_.noisy_scale_coords).
INIT_BOX = 10.0
INIT_NOISE = 1e-4


def principal_init(matrix, seed, log=None):
    """UMAP's starting coordinates: the first two principal components of `matrix`
    (deterministic PCA: scripts/reduce.py), scaled so that the largest coordinate is
    INIT_BOX, plus INIT_NOISE of seeded noise, as UMAP treats its own initialisations.
    A matrix of one column, or of identical rows, gives zeros where it has no
    component, and the noise separates the points."""
    from _stage import Log
    from reduce import pca

    kept = min(2, matrix.shape[1])
    scores = np.zeros((matrix.shape[0], 2))
    # A big matrix's PCA is streamed and logs its progress: a silent log when there is none.
    scores[:, :kept] = pca(np.asarray(matrix), kept, log or Log())[0]
    scores = np.nan_to_num(scores)  # identical rows: 0 / 0 in PCA's normalisation
    largest = np.abs(scores).max()
    if largest > 0:
        scores *= INIT_BOX / largest
    noise = np.random.default_rng(seed).normal(0, INIT_NOISE, size=scores.shape)
    return (scores + noise).astype(np.float32)


def layout(matrix, params, graph=None, log=None):
    n = matrix.shape[0]
    if params["method"] == "umap" and n > SAMPLE_SIZE and graph is not None:
        return sampled_layout(matrix, params, graph, log)
    if params["method"] == "pca" or n < 4:
        # UMAP needs a few neighbours; with a handful of files PCA is the honest picture.
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit_transform(matrix).astype(np.float32)
    import umap
    from _stage import cache_compiled_code

    cache_compiled_code()
    n_neighbors = min(UMAP_NEIGHBOURS, n - 1)
    knn = known_neighbours(graph, n_neighbors, params["metric"]) if graph is not None else (None, None, None)
    init = principal_init(matrix, params["seed"], log)
    model = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        metric=params["metric"],
        random_state=params["seed"],
        precomputed_knn=knn,
        init=init,
    )
    with warnings.catch_warnings():
        # Without a search index UMAP cannot place new points later; a layout never does.
        warnings.filterwarnings("ignore", message="precomputed_knn\\[2\\]")
        warnings.filterwarnings("ignore", message="n_jobs value 1 overridden")
        return model.fit_transform(matrix).astype(np.float32)


def place(new, matrix, coordinates, params, log=None):
    """2-D coordinates of new rows (assigned clips, in the space the layout was made
    from) in a layout of `matrix`: a PCA layout projects them with the same PCA (fitted
    again on `matrix`: the full SVD is deterministic); a UMAP layout places them as the
    assign stage places new clips in a UMAP reduction (assign.place_umap: the weighted
    mean of the layout coordinates of their exact nearest rows, a copy of a row on it)."""
    new = np.asarray(new, dtype=np.float32)
    n = matrix.shape[0]
    if len(new) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if params["method"] == "pca" or n < 4:
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit(matrix).transform(new).astype(np.float32)
    from assign import place_umap

    return place_umap(new, matrix, np.asarray(coordinates), min(UMAP_NEIGHBOURS, n - 1), params["metric"], log)


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    graph = dict(np.load(snakemake.input.graph)) if snakemake.input.get("graph") else None
    log.info(f"{snakemake.params.layout['method']} layout of {matrix.shape[0]} x {matrix.shape[1]}")
    np.save(snakemake.output.layout, layout(matrix, snakemake.params.layout, graph, log))


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
