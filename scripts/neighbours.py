"""Neighbours stage: the graph HDBSCAN's spanning tree is built from.

Everything here is independent of min_cluster_size and min_samples, so a change
of either reruns only the cluster stage, which reads this file (a few seconds
at 50k points instead of a new neighbour search).

Exact search (neighbour_search: exact, and auto up to auto_settings.EXACT_SEARCH_MAX
files, 200,000):
- The exact K nearest neighbours of every point (K = 32, or the next multiple
  of 32 that min_samples needs: neighbour_count): by a k-d tree up to
  KD_TREE_MAX_WIDTH dimensions, by brute force with BLAS above it (in 50
  dimensions faster than trees).
- Edges between the connected components of that K-NN graph. For a pair of
  points that are not among each other's K nearest neighbours, the distance
  exceeds both core distances (any min_samples <= K), so its mutual
  reachability is the plain distance: these edges do not depend on
  min_samples either. They are found by Boruvka's algorithm over the
  components with brute-force nearest-outside-neighbour searches (every
  point's nearest point in another component, then again for the points whose
  nearest was swallowed by a merge), and every edge found is kept as a
  candidate for the spanning tree.

Approximate search (neighbour_search: approximate, and auto above that), where
brute force grows as N^2 (41 s at 100k points, about 70 minutes at 1M on 2 cores):
- The K nearest neighbours by NN-descent (pynndescent, which umap-learn
  already uses), seeded: the same graph on every run with the same threads.
- Edges between the K-NN graph's components from their centroids: for each
  pair of components whose centroids are among each other's
  CENTROID_NEIGHBOURS nearest, or joined in the centroids' minimum spanning
  tree (so that every component is reached), the closest pair among the
  BOUNDARY_POINTS points of each that lie nearest the other's centroid.
The cluster stage then takes the minimum spanning tree of these candidate
edges (cluster.candidate_spanning_tree) instead of searching for exact ones.
"""

import numpy as np
from _stage import InputError

# scipy.sparse is imported where it is used: `prepare`, which the export and metrics
# stages take from here, needs only numpy.

# The neighbours stage keeps this many nearest neighbours per point, or the next
# multiple of it that min_samples needs, so nearby min_samples share one graph.
NEIGHBOUR_STEP = 32


def neighbour_count(min_samples):
    return NEIGHBOUR_STEP * max(1, -(-min_samples // NEIGHBOUR_STEP))


# Approximate search: each component is joined to the components with its nearest centroids ...
CENTROID_NEIGHBOURS = 8
# ... along the closest pair among this many points of each, those nearest the other's centroid.
BOUNDARY_POINTS = 64


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


# Up to this width a k-d tree finds the exact neighbours faster than brute force (at
# 50,000 x 10, UMAP's default reduction: 2.5 s against 4.4 s); above it, brute force.
KD_TREE_MAX_WIDTH = 16


def nearest_neighbours(x, k):
    """(distances, indices), N x (k+1), nearest first; column 0 is the point itself
    (or an exact duplicate of it)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k + 1, len(x))
    algorithm = "kd_tree" if x.shape[1] <= KD_TREE_MAX_WIDTH else "brute"
    return NearestNeighbors(n_neighbors=k, algorithm=algorithm).fit(x).kneighbors(x)


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
    plain = not core.any()
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
        if plain:  # no core distances: one pass finds both
            at = d.argmin(axis=1)
            nearest[start : start + len(r)] = d[np.arange(len(r)), at]
        else:
            nearest[start : start + len(r)] = d.min(axis=1)
            np.maximum(d, core2, out=d)
            at = d.argmin(axis=1)
        partner[start : start + len(r)] = columns[at]
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


def approximate_neighbours(x, k, threads=1):
    """(distances, indices) as nearest_neighbours gives them, by seeded NN-descent:
    column 0 is the point itself (put there when the search did not return it)."""
    from _stage import cache_compiled_code
    from pynndescent import NNDescent

    cache_compiled_code()

    n = len(x)
    k = min(k + 1, n)
    index = NNDescent(x, n_neighbors=k, random_state=0, n_jobs=threads, low_memory=True, compressed=True)
    indices, distances = index.neighbor_graph
    indices, distances = indices.astype(np.int64), distances.astype(np.float64)
    points = np.arange(n)
    missing = ~(indices == points[:, None]).any(axis=1)
    if missing.any():
        indices[missing] = np.column_stack([points[missing], indices[missing, :-1]])
        distances[missing] = np.column_stack([np.zeros(missing.sum()), distances[missing, :-1]])
    return distances, indices


def component_centroids(x, component, n_components):
    import scipy.sparse

    sums = scipy.sparse.csr_matrix(
        (np.ones(len(x)), (component, np.arange(len(x)))), shape=(n_components, len(x))
    ) @ x
    return sums / np.bincount(component, minlength=n_components)[:, None]


def closest_pair(x, a, b):
    """(i, j, distance): the closest pair of points with i in rows a, j in rows b."""
    d = ((x[a, None, :] - x[None, b, :]) ** 2).sum(axis=2)
    flat = int(d.argmin())
    i, j = divmod(flat, len(b))
    return a[i], b[j], float(np.sqrt(d[i, j]))


def approximate_cross_edges(x, component, n_components, log=None):
    """(pairs E x 2, distances E): edges between K-NN components (see the module's
    docstring), at least one tree of them spanning every component."""
    if n_components < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    centroids = component_centroids(x, component, n_components)
    tree_pairs, _ = cross_component_edges(centroids, np.arange(n_components), n_components)
    near = nearest_neighbours(centroids, min(CENTROID_NEIGHBOURS, n_components - 1))[1]
    own = np.repeat(np.arange(n_components), near.shape[1] - 1)
    pairs = np.concatenate([tree_pairs, np.column_stack([own, near[:, 1:].ravel()])])
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    members = np.split(np.argsort(component, kind="stable"), np.cumsum(np.bincount(component))[:-1])

    def boundary(own, other):
        rows = members[own]
        if len(rows) <= BOUNDARY_POINTS:
            return rows
        d = ((x[rows] - centroids[other]) ** 2).sum(axis=1)
        return rows[np.sort(np.argpartition(d, BOUNDARY_POINTS)[:BOUNDARY_POINTS])]

    found = [closest_pair(x, boundary(a, b), boundary(b, a)) for a, b in pairs]
    if log:
        log.info(f"approximate edges between {n_components} components: {len(pairs)} pairs of components searched")
    return np.array([f[:2] for f in found], dtype=np.int64), np.array([f[2] for f in found])


def neighbour_graph(x, k, approximate=False, threads=1, log=None):
    """The neighbours stage's output (also cluster.hdbscan_clusters' input)."""
    distances, indices = approximate_neighbours(x, k, threads) if approximate else nearest_neighbours(x, k)
    n_components, component = knn_components(indices)
    if log:
        log.info(f"{k}-NN graph of {len(x)} points: {n_components} connected components")
    connect = approximate_cross_edges if approximate else cross_component_edges
    cross_pairs, cross_distances = connect(x, component, n_components, log)
    return {
        "distances": distances,
        "indices": indices,
        "cross_pairs": cross_pairs,
        "cross_distances": cross_distances,
        "approximate": np.array(approximate),
    }


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    metric, k, approximate = (snakemake.params.graph[key] for key in ("metric", "k", "approximate"))
    x = prepare(matrix, metric)
    if len(x) < 2:
        raise InputError(f"{len(x)} file is too few to cluster")
    search = "approximate (NN-descent)" if approximate else "exact"
    log.info(f"{search} {k} nearest neighbours of {x.shape[0]} x {x.shape[1]} ({metric})")
    np.savez(snakemake.output.graph, **neighbour_graph(x, k, approximate, snakemake.threads, log))


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
