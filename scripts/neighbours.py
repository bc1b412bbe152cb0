"""Neighbours stage: the graph HDBSCAN's spanning tree is built from.

Everything here is independent of min_cluster_size and min_samples, so a change
of either reruns only the cluster stage, which reads this file (a few seconds
at 50k points instead of a new neighbour search).

- The exact K nearest neighbours of every point (K = 32, or the next multiple
  of 32 that min_samples needs: settings.neighbour_count), by brute force with
  BLAS: exact, and in 50 dimensions faster than trees.
- Edges between the connected components of that K-NN graph. For a pair of
  points that are not among each other's K nearest neighbours, the distance
  exceeds both core distances (any min_samples <= K), so its mutual
  reachability is the plain distance: these edges do not depend on
  min_samples either. They are found by Boruvka's algorithm over the
  components with brute-force nearest-outside-neighbour searches (every
  point's nearest point in another component, then again for the points whose
  nearest was swallowed by a merge), and every edge found is kept as a
  candidate for the spanning tree.
"""

import numpy as np
from _stage import InputError

# scipy.sparse is imported where it is used: `prepare`, which the export and metrics
# stages take from here, needs only numpy.


def prepare(matrix, metric):
    """float64 vectors in which euclidean distance orders pairs as `metric` does.

    Cosine is euclidean on L2-normalised vectors: |a-b|^2 = 2 - 2 cos(a, b) for
    unit vectors, so neighbours, trees and HDBSCAN's soft memberships all work."""
    x = np.asarray(matrix, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InputError(f"{int((norms == 0).sum())} all-zero vectors have no cosine direction; use metric=euclidean")
        x = x / norms
    return x


def nearest_neighbours(x, k):
    """(distances, indices), N x (k+1), nearest first; column 0 is the point itself
    (or an exact duplicate of it)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k + 1, len(x))
    return NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(x)


def first_per_group(group, *keys):
    """Index of the smallest row of each group, ordered by `keys` (most significant first)."""
    order = np.lexsort(tuple(reversed(keys)) + (group,))
    return order[np.r_[True, np.diff(group[order]) != 0]]


def knn_components(indices):
    """(count, label per point) of the connected components of the K-NN graph."""
    import scipy.sparse

    n = len(indices)
    rows = np.repeat(np.arange(n), indices.shape[1])
    graph = scipy.sparse.coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, indices.ravel())), shape=(n, n))
    return scipy.sparse.csgraph.connected_components(graph, directed=True, connection="weak")


def nearest_outside(x, sq, core, label, rows, block=256):
    """For each point in `rows`, by brute force in blocks of rows: the nearest
    point outside its component by mutual reachability (partner, weight), and
    the plain distance to the nearest point outside it."""
    # Columns grouped by component, so a row's own component is one slice to blank;
    # rows grouped the same way, so a block holds few components.
    columns = np.argsort(label, kind="stable")
    column_label = label[columns]
    by_component = np.argsort(label[rows], kind="stable")
    rows = rows[by_component]
    # One product gives squared distances: [x, |x|^2, 1] . [-2a, 1, |a|^2].
    right = np.hstack([x[columns], sq[columns, None], np.ones((len(x), 1))]).astype(np.float32).T.copy()
    core2 = (core[columns] ** 2).astype(np.float32)
    partner = np.empty(len(rows), dtype=np.int64)
    nearest = np.empty(len(rows))
    for start in range(0, len(rows), block):
        r = rows[start : start + block]
        left = np.hstack([-2 * x[r], np.ones((len(r), 1)), sq[r, None]]).astype(np.float32)
        d = left @ right
        own = label[r]
        for component in np.unique(own):
            first, last = np.searchsorted(own, [component, component + 1])
            lo, hi = np.searchsorted(column_label, [component, component + 1])
            d[first:last, lo:hi] = np.inf
        nearest[start : start + len(r)] = d.min(axis=1)
        np.maximum(d, core2, out=d)
        partner[start : start + len(r)] = columns[d.argmin(axis=1)]
    back = np.argsort(by_component)  # to the caller's order of rows
    rows, partner, nearest = rows[back], partner[back], nearest[back]
    distance = np.sqrt(((x[rows] - x[partner]) ** 2).sum(axis=1))
    # float32 rounding: a floor must stay below the true distance.
    floor = np.maximum(np.sqrt(np.maximum(nearest, 0)) * (1 - 1e-4) - 1e-6, 0)
    return partner, np.maximum(distance, np.maximum(core[rows], core[partner])), floor


def cross_component_edges(x, component, n_components, log=None):
    """(pairs E x 2, distances E): candidate edges between K-NN components, among
    them a minimum spanning tree of the components by Euclidean distance."""
    import scipy.sparse

    n = len(x)
    sq = (x**2).sum(axis=1)
    no_core = np.zeros(n)  # plain distances: mutual reachability with no core distance
    label = component.copy()  # merged component of each point, as Boruvka proceeds
    best = np.full(n, -1)
    best_distance = np.full(n, np.inf)
    pending = np.arange(n)  # points whose nearest outside neighbour is unknown
    pairs, distances = [], []
    n_left = n_components
    while n_left > 1:
        if len(pending):
            found, found_distance, _ = nearest_outside(x, sq, no_core, label, pending)
            best[pending], best_distance[pending] = found, found_distance
            pairs.append(np.column_stack([pending, found]))
            distances.append(found_distance)
            if log:
                log.info(f"components: {n_left}; searched {len(pending)} points for their nearest outside neighbour")
        # Each component's shortest edge out (ties broken by the point index).
        first = first_per_group(label, best_distance, np.arange(n))
        _, merged = scipy.sparse.csgraph.connected_components(
            scipy.sparse.coo_matrix((np.ones(len(first)), (label[first], label[best[first]])), shape=(n, n)),
            directed=True,
            connection="weak",
        )
        label = merged[label]
        n_left = len(np.unique(label))
        # A point's nearest outside neighbour stays valid unless a merge swallowed it.
        pending = np.flatnonzero(label[best] == label)
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return np.concatenate(pairs), np.concatenate(distances)


def neighbour_graph(x, k, log=None):
    distances, indices = nearest_neighbours(x, k)
    n_components, component = knn_components(indices)
    if log:
        log.info(f"{k}-NN graph of {len(x)} points: {n_components} connected components")
    cross_pairs, cross_distances = cross_component_edges(x, component, n_components, log)
    return {
        "distances": distances,
        "indices": indices,
        "cross_pairs": cross_pairs,
        "cross_distances": cross_distances,
    }


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    metric, k = snakemake.params.graph["metric"], snakemake.params.graph["k"]
    x = prepare(matrix, metric)
    if len(x) < 2:
        raise InputError(f"{len(x)} file is too few to cluster")
    log.info(f"exact {k} nearest neighbours of {x.shape[0]} x {x.shape[1]} ({metric})")
    np.savez(snakemake.output.graph, **neighbour_graph(x, k, log))


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
