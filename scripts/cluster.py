"""Cluster stage: hard labels, membership strengths and soft memberships.

Cosine is computed as euclidean on L2-normalised vectors: the neighbour order
is the same (|a-b|^2 = 2 - 2 cos(a, b) for unit vectors), and HDBSCAN's fast
trees and prediction data work, so soft memberships are real probabilities.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse
from _stage import InputError

# Spectral clustering: neighbours in the affinity graph, also used for soft memberships.
SPECTRAL_NEIGHBOURS = 10
# n_clusters=auto searches 2..EIGENGAP_MAX_K clusters.
EIGENGAP_MAX_K = 20

# hdbscan's condensed tree as a structured array; spectral clustering has none.
NO_TREE = np.zeros(0, dtype=[("parent", np.intp), ("child", np.intp), ("lambda_val", float), ("child_size", np.intp)])


class Clustering(NamedTuple):
    labels: np.ndarray  # int, -1 = noise
    probabilities: np.ndarray  # membership strength in the point's own cluster, 0..1
    soft: np.ndarray  # N x n_clusters soft memberships
    outlier_scores: np.ndarray  # 0..1, higher = more outlying (GLOSH for HDBSCAN)
    condensed_tree: np.ndarray  # hdbscan's condensed tree (empty for spectral)


def prepare(matrix, metric):
    """float64 vectors in which euclidean distance orders pairs as `metric` does."""
    x = np.asarray(matrix, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InputError(f"{int((norms == 0).sum())} all-zero vectors have no cosine direction; use metric=euclidean")
        x = x / norms
    return x


def hdbscan_clusters(x, min_cluster_size, min_samples):
    """(labels, probabilities, soft) from hdbscan with prediction data."""
    import hdbscan

    if len(x) < min_cluster_size:
        raise InputError(f"{len(x)} files are fewer than min_cluster_size={min_cluster_size}")
    if len(x) <= min_samples:
        raise InputError(f"{len(x)} files are too few for min_samples={min_samples}")
    model = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        metric="euclidean",
        prediction_data=True,
    ).fit(x)
    labels = model.labels_.astype(np.int64)
    n_clusters = int(labels.max()) + 1
    if n_clusters == 0:
        soft = np.zeros((len(x), 0))
    else:
        soft = np.asarray(hdbscan.all_points_membership_vectors(model), dtype=np.float64).reshape(len(x), n_clusters)
    # GLOSH is undefined (NaN) for exact duplicates: they are as inlying as it gets.
    outlier_scores = np.nan_to_num(model.outlier_scores_.astype(np.float64), nan=0.0)
    return Clustering(labels, model.probabilities_.astype(np.float64), soft, outlier_scores, model.condensed_tree_.to_numpy())


def neighbour_memberships(x, labels, n_clusters, k=SPECTRAL_NEIGHBOURS):
    """Soft memberships for a partition: the share of each cluster among a point's
    k nearest neighbours and the point itself (so each row sums to 1)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    soft = np.zeros((len(x), n_clusters))
    for column in idx.T:  # idx[:, 0] is the point itself
        soft[np.arange(len(x)), labels[column]] += 1
    return soft / (k + 1)


def affinity_graph(x):
    """The symmetric k-nearest-neighbour graph SpectralClustering builds for us."""
    from sklearn.neighbors import kneighbors_graph

    connectivity = kneighbors_graph(x, n_neighbors=min(SPECTRAL_NEIGHBOURS, len(x) - 1), include_self=True)
    return 0.5 * (connectivity + connectivity.T)


def eigengap_k(affinity, max_k=EIGENGAP_MAX_K):
    """(k, eigenvalues): k is where the gap between consecutive smallest eigenvalues of
    the normalised graph Laplacian is largest, searched over 2..max_k."""
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import eigsh

    n = affinity.shape[0]
    lap = laplacian(affinity, normed=True)
    m = min(max_k + 1, n - 1)
    if n <= 500:
        values = np.linalg.eigvalsh(lap.toarray())[:m]
    else:
        # Smallest eigenvalues of L are the largest of 2I - L (its spectrum lies in [0, 2]);
        # a fixed start vector keeps the result deterministic.
        shifted = 2 * scipy.sparse.identity(n) - lap
        top = eigsh(shifted, k=m, which="LA", v0=np.ones(n), tol=1e-8)[0]
        values = np.sort(2 - top)
    gaps = np.diff(values)  # gaps[k - 1] = values[k] - values[k - 1]
    k = int(np.argmax(gaps[1:])) + 2
    return k, values


def spectral_clusters(x, n_clusters, seed, log=None):
    from sklearn.cluster import SpectralClustering

    affinity = affinity_graph(x)
    if n_clusters == "auto":
        n_clusters, values = eigengap_k(affinity)
        if log:
            log.say(f"eigengap picks n_clusters={n_clusters} (smallest Laplacian eigenvalues: {np.round(values, 4).tolist()})")
    if len(x) <= n_clusters:
        raise InputError(f"{len(x)} files cannot make n_clusters={n_clusters} clusters")
    model = SpectralClustering(
        n_clusters=n_clusters,
        affinity="precomputed",
        eigen_solver="lobpcg",  # same labels as arpack, far faster and leaner
        random_state=seed,
    )
    labels = model.fit_predict(affinity).astype(np.int64)
    soft = neighbour_memberships(x, labels, n_clusters)
    probabilities = soft[np.arange(len(x)), labels]
    # Outlier score: the share of a point's neighbourhood that lies in other clusters.
    return Clustering(labels, probabilities, soft, 1.0 - probabilities, NO_TREE)


def cluster(matrix, params, log=None):
    x = prepare(matrix, params["metric"])
    if params["algorithm"] == "hdbscan":
        return hdbscan_clusters(x, params["min_cluster_size"], params["min_samples"])
    return spectral_clusters(x, params["n_clusters"], params["seed"], log)


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    params = snakemake.params.clusterer
    log.info(f"{params} on {matrix.shape[0]} x {matrix.shape[1]}")
    result = cluster(matrix, params, log)
    n_clusters, noise = result.soft.shape[1], float((result.labels < 0).mean())
    log.info(f"{n_clusters} clusters, {noise:.1%} noise")
    if n_clusters == 0:
        log.say(f"no clusters found: all {len(result.labels)} files are noise (-1); try a smaller min_cluster_size")
    np.savez(snakemake.output.clusters, **result._asdict())


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
