"""Layout stage: 2-D coordinates for plots, independent of clustering settings.

UMAP takes its 15 nearest neighbours from the neighbours stage's exact graph
(scripts/neighbours.py), which HDBSCAN uses too: no approximate neighbour search
of its own, and none of the numba compilation that search costs in every new
process."""

import warnings

import numpy as np
from settings import UMAP_NEIGHBOURS


def known_neighbours(graph, n_neighbors, metric):
    """(indices, distances) in UMAP's terms from the neighbours stage's graph, whose
    cosine distances are euclidean distances of unit vectors."""
    indices, distances = graph["indices"][:, :n_neighbors], graph["distances"][:, :n_neighbors]
    if metric == "cosine":
        distances = distances**2 / 2  # 1 - cos(a, b) = |a - b|^2 / 2 for unit vectors
    return np.ascontiguousarray(indices), np.ascontiguousarray(distances, dtype=np.float32)


def layout(matrix, params, graph=None):
    n = matrix.shape[0]
    if params["method"] == "pca" or n < 4:
        # UMAP needs a few neighbours; with a handful of files PCA is the honest picture.
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit_transform(matrix).astype(np.float32)
    import umap

    n_neighbors = min(UMAP_NEIGHBOURS, n - 1)
    knn = known_neighbours(graph, n_neighbors, params["metric"]) if graph is not None else (None, None, None)
    model = umap.UMAP(
        n_components=2, n_neighbors=n_neighbors, metric=params["metric"], random_state=params["seed"], precomputed_knn=knn
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
    np.save(snakemake.output.layout, layout(matrix, snakemake.params.layout, graph))


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
