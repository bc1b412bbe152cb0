"""Cluster stage: hard labels, membership strengths, outlier scores and the condensed tree.

HDBSCAN: the exact minimum spanning tree of mutual reachability is built here
from the neighbours stage's graph (scripts/neighbours.py; about 5 s at 50k
points), then hdbscan's own code condenses it, selects clusters and scores
outliers (GLOSH). That skips hdbscan's own tree building, about a minute at 50k
points in 50 dimensions. HDBSCAN's soft memberships are computed from the
condensed tree by the export stage (scripts/export.py), as it writes them.

Cosine is euclidean on L2-normalised vectors (see neighbours.prepare), so soft
memberships are real probabilities.
"""

import functools
from typing import NamedTuple, Optional

import numpy as np
from _stage import InputError
from neighbours import first_per_group, nearest_outside, neighbour_count, neighbour_graph, prepare

# Spectral clustering: neighbours in the affinity graph, also used for soft memberships.
SPECTRAL_NEIGHBOURS = 10
# Share of the points to search first (every SEARCH_SAMPLE-th), so that their
# distances can rule out their neighbours.
SEARCH_SAMPLE = 10
# How far along the K-NN graph those bounds are carried.
FLOOR_HOPS = 4
# Rows per block of a brute-force search: the block's distances to every point (12.8 MB at
# 50k points) stay in cache; 256 rows took 15% longer (the same trees on the bench data).
SEARCH_BLOCK = 64
# n_clusters=auto searches 2..EIGENGAP_MAX_K clusters, by the eigengap of a self-tuning
# graph (Zelnik-Manor & Perona 2004) of the pooled vectors: PCA to AUTO_K_DIMS dimensions,
# L2-normalised (cosine), AUTO_K_NEIGHBOURS neighbours, each point's scale its distance to
# its AUTO_K_SCALE_NEIGHBOUR-th. Within +-1 of the true number of groups on 9 of 11 draws
# of the quality sets (10 of 11 on their first version, where the clustered space's 10-NN
# graph was on 3; bench/README.md).
EIGENGAP_MAX_K = 20
AUTO_K_DIMS = 50
AUTO_K_NEIGHBOURS = 15
AUTO_K_SCALE_NEIGHBOUR = 7

# hdbscan's condensed tree as a structured array; spectral clustering has none.
NO_TREE = np.zeros(0, dtype=[("parent", np.intp), ("child", np.intp), ("lambda_val", float), ("child_size", np.intp)])


class Clustering(NamedTuple):
    labels: np.ndarray  # int, -1 = noise
    probabilities: np.ndarray  # membership strength in the point's own cluster, 0..1
    outlier_scores: np.ndarray  # 0..1, higher = more outlying (GLOSH for HDBSCAN)
    condensed_tree: np.ndarray  # hdbscan's condensed tree (empty for spectral)
    # Spectral: N x n_clusters neighbour votes. HDBSCAN: None (export computes them).
    soft: Optional[np.ndarray] = None
    # Spectral n_clusters=auto: the smallest Laplacian eigenvalues k was read from.
    eigenvalues: Optional[np.ndarray] = None


def mutual_reachability(graph, min_samples):
    """(core distance per point, mutual reachability of each K-NN edge, N x K)."""
    distances, indices = graph["distances"], graph["indices"]
    core = distances[:, min_samples]
    return core, np.maximum(distances, np.maximum(core[:, None], core[indices]))


def spanning_tree(x, graph, min_samples, log=None):
    """The exact minimum spanning tree of mutual reachability, as hdbscan's
    single-linkage input: (N-1) x 3 rows of (a, b, distance), by distance.

    Boruvka's algorithm: each round, every component joins along its shortest
    edge out. A point's candidates are its K nearest neighbours and the
    neighbours stage's cross-component edges; a point outside its K-NN list is
    at least its K-th neighbour distance away (and its mutual reachability is
    that distance), so a candidate no longer than that is exact. Only points
    that could still beat their component's best candidate are searched by
    brute force. Core distance = distance to the min_samples-th nearest other
    point, as in hdbscan. Ties go to the lower point indices."""
    # Imported here, not at the top: the provenance stage imports this module's constants.
    import scipy.sparse

    distances, indices = graph["distances"], graph["indices"]
    n = len(indices)
    points = np.arange(n)
    core, knn_weight = mutual_reachability(graph, min_samples)
    bound = distances[:, -1]
    pairs = graph["cross_pairs"]
    cross_a = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cross_b = np.concatenate([pairs[:, 1], pairs[:, 0]])
    cross_w = np.tile(graph["cross_distances"], 2)
    searched_b = np.full(n, -1)  # exact nearest point outside the component, from a search
    searched_w = np.full(n, np.inf)
    # Lower bound on each point's distance to anything outside its component; it
    # only grows as components merge.
    outside_floor = np.zeros(n)
    sq = (x**2).sum(axis=1)
    label = points.copy()
    edges = np.zeros((0, 3))
    n_searched = 0
    while len(edges) < n - 1:
        # Best candidate of each point: (weight, partner), ties to the lower partner.
        w = np.where(label[indices] != label[:, None], knn_weight, np.inf)
        best_w = w.min(axis=1)
        best_b = np.where(w == best_w[:, None], indices, n).min(axis=1)
        valid = label[cross_a] != label[cross_b]
        if valid.any():
            first = first_per_group(cross_a[valid], cross_w[valid], cross_b[valid])
            a, b, cw = cross_a[valid][first], cross_b[valid][first], cross_w[valid][first]
            take = (cw < best_w[a]) | ((cw == best_w[a]) & (b < best_b[a]))
            best_w[a[take]], best_b[a[take]] = cw[take], b[take]
        known = (searched_b >= 0) & (label[np.maximum(searched_b, 0)] != label)
        best_w[known], best_b[known] = searched_w[known], searched_b[known]
        exact = known | (best_w <= bound)
        # Points that might hide a shorter edge than their component's best are
        # searched: a sample first, whose distances bound their neighbours'
        # (triangle inequality), then those the bounds cannot rule out.
        component_best = np.full(n, np.inf)
        np.minimum.at(component_best, label, best_w)
        open_ = ~exact & (bound < component_best[label])
        for sample in (SEARCH_SAMPLE, 1):
            floor = outside_floor
            for _ in range(FLOOR_HOPS):
                floor = np.maximum(floor, (floor[indices] - distances).max(axis=1))
            search = np.flatnonzero(open_ & (floor < component_best[label]))[::sample]
            if not len(search):
                continue
            found_b, found_w, found_d = nearest_outside(x, sq, core, label, search, block=SEARCH_BLOCK)
            searched_b[search], searched_w[search], outside_floor[search] = found_b, found_w, found_d
            best_b[search], best_w[search] = found_b, found_w
            open_[search] = False
            np.minimum.at(component_best, label[search], found_w)
            n_searched += len(search)
        # Each component's shortest edge out, ties to the lower (min, max) point pair.
        lo, hi = np.minimum(points, best_b), np.maximum(points, best_b)
        first = first_per_group(label, best_w, lo, hi)
        # Near-equal weights computed two ways can make a cycle: keep a forest.
        order = np.lexsort((hi[first], lo[first], best_w[first]))
        a, b, w = lo[first][order], hi[first][order], best_w[first][order]
        # One edge per pair of components (the shortest), as the sparse matrix sums repeats.
        ca, cb = np.minimum(label[a], label[b]), np.maximum(label[a], label[b])
        _, once = np.unique(ca * n + cb, return_index=True)
        once.sort()
        a, b, w = a[once], b[once], w[once]
        forest = scipy.sparse.csgraph.minimum_spanning_tree(
            scipy.sparse.coo_matrix((np.arange(1.0, len(a) + 1), (label[a], label[b])), shape=(n, n))
        )
        kept = np.sort(forest.tocoo().data).astype(np.int64) - 1
        edges = np.concatenate([edges, np.column_stack([a[kept], b[kept], w[kept]])])
        _, merged = scipy.sparse.csgraph.connected_components(forest, directed=False)
        label = merged[label]
        if log:
            log.info(f"spanning tree: {len(edges)} of {n - 1} edges; {n_searched} brute-force searches so far")
    return edges[np.argsort(edges[:, 2], kind="stable")]


def candidate_spanning_tree(graph, min_samples):
    """The minimum spanning tree of mutual reachability over the graph's own edges
    (K-NN lists and cross-component edges), no searches beyond them: exact when
    the graph is, approximate for an approximate graph. Same format as spanning_tree."""
    import scipy.sparse

    indices = graph["indices"]
    n = len(indices)
    core, knn_weight = mutual_reachability(graph, min_samples)
    pairs, first = np.unique(np.sort(graph["cross_pairs"], axis=1), axis=0, return_index=True)
    cross_weight = np.maximum(graph["cross_distances"][first], np.maximum(core[pairs[:, 0]], core[pairs[:, 1]]))
    a = np.concatenate([np.repeat(np.arange(n), indices.shape[1]), pairs[:, 0]])
    b = np.concatenate([indices.ravel(), pairs[:, 1]])
    w = np.concatenate([knn_weight.ravel(), cross_weight])
    keep = a != b
    # scipy reads the matrix as an undirected graph, so (i, j) and (j, i) may both be
    # there; no entry repeats (a K-NN row lists each neighbour once, and a cross edge
    # joins points no K-NN edge joins), so the sparse matrix sums nothing. It reads a
    # zero weight as no edge: exact duplicates weigh the smallest float instead.
    tiny = np.finfo(float).tiny
    tree = scipy.sparse.csgraph.minimum_spanning_tree(
        scipy.sparse.csr_matrix((np.maximum(w[keep], tiny), (a[keep], b[keep])), shape=(n, n))
    ).tocoo()
    if tree.nnz != n - 1:
        raise RuntimeError(f"the neighbour graph does not connect all {n} points")
    weight = np.where(tree.data <= tiny, 0.0, tree.data)
    edges = np.column_stack([tree.row, tree.col, weight]).astype(np.float64)
    return edges[np.lexsort((edges[:, 1], edges[:, 0], edges[:, 2]))]


@functools.cache
def hdbscan_tree_code():
    """hdbscan's compiled condensed-tree module (condensing, cluster selection, GLOSH),
    loaded from its file without running hdbscan's __init__, which imports scikit-learn
    and scipy.stats: 2 to 4 s of this job's start-up, more than its work on a rerun.
    The module itself imports only numpy."""
    import importlib.machinery
    import importlib.util
    import sys

    name = "hdbscan._hdbscan_tree"
    if name in sys.modules:  # hdbscan itself was imported
        return sys.modules[name]
    package = importlib.util.find_spec("hdbscan")
    spec = importlib.machinery.PathFinder.find_spec(name, package.submodule_search_locations)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def single_linkage(tree):
    """hdbscan's `label`: a spanning tree, rows (a, b, distance) sorted by distance, as the
    single-linkage hierarchy hdbscan condenses: rows (cluster of a, cluster of b, distance,
    size of the merged cluster), clusters made by the i-th merge numbered N + i. The same
    union-find, in Python lists (faster than hdbscan's, which indexes a numpy array per step)."""
    n = len(tree) + 1
    parent = [-1] * (2 * n - 1)
    size = [1] * n + [0] * (n - 1)
    roots_a, roots_b, sizes = [0] * (n - 1), [0] * (n - 1), [0] * (n - 1)
    for i, (a, b) in enumerate(tree[:, :2].astype(np.intp).tolist()):
        roots = []
        for point in (a, b):
            root = point
            while parent[root] != -1:
                root = parent[root]
            while point != root and parent[point] != root:  # path compression
                point, parent[point] = parent[point], root
            roots.append(root)
        ra, rb = roots
        roots_a[i], roots_b[i] = ra, rb
        sizes[i] = size[n + i] = size[ra] + size[rb]
        parent[ra] = parent[rb] = n + i
    return np.column_stack([np.array(roots_a, dtype=float), np.array(roots_b, dtype=float),
                            np.asarray(tree[:, 2], dtype=float), np.array(sizes, dtype=float)])


def hdbscan_clusters(x, min_cluster_size, min_samples, graph=None, log=None):
    """HDBSCAN (hdbscan's defaults: EOM selection, no single cluster) on the exact
    spanning tree, with hdbscan's own condensed tree and GLOSH code.
    `graph`: the neighbours stage's output; built here when absent."""
    if len(x) < min_cluster_size:
        raise InputError(f"{len(x)} files are fewer than min_cluster_size={min_cluster_size}")
    if len(x) <= min_samples:
        raise InputError(f"{len(x)} files are too few for min_samples={min_samples}")
    if graph is None:
        graph = neighbour_graph(x, neighbour_count(min_samples))
    approximate = bool(graph.get("approximate", False))
    tree = candidate_spanning_tree(graph, min_samples) if approximate else spanning_tree(x, graph, min_samples, log)
    hierarchy = single_linkage(tree)
    # hdbscan.hdbscan_._tree_to_labels with its defaults (EOM, no epsilon, no single cluster).
    tree_code = hdbscan_tree_code()
    condensed_tree = tree_code.condense_tree(hierarchy, min_cluster_size)
    stability = tree_code.compute_stability(condensed_tree)
    labels, probabilities, _ = tree_code.get_clusters(condensed_tree, stability, "eom", False, False, 0.0, 0, float("inf"))
    # GLOSH is undefined (NaN) for exact duplicates: they are as inlying as it gets.
    glosh = np.nan_to_num(tree_code.outlier_scores(condensed_tree).astype(np.float64), nan=0.0)
    return Clustering(labels.astype(np.int64), probabilities.astype(np.float64), glosh, condensed_tree)


def neighbour_memberships(x, labels, n_clusters, k=SPECTRAL_NEIGHBOURS):
    """Soft memberships for a partition: the share of each cluster among a point's
    k nearest neighbours and the point itself (so each row sums to 1)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    # The point itself, then its k nearest others. Among exact duplicates the search may
    # list the point anywhere, or not at all: it is put first, and dropped from the rest.
    rows = np.arange(len(x))
    drop = idx == rows[:, None]
    drop[~drop.any(axis=1), -1] = True
    idx = np.column_stack([rows, idx[~drop].reshape(len(x), k)])
    soft = np.zeros((len(x), n_clusters))
    for column in idx.T:
        soft[rows, labels[column]] += 1
    return soft / (k + 1)


def affinity_graph(x):
    """The symmetric k-nearest-neighbour graph SpectralClustering builds for us."""
    from sklearn.neighbors import kneighbors_graph

    connectivity = kneighbors_graph(x, n_neighbors=min(SPECTRAL_NEIGHBOURS, len(x) - 1), include_self=True)
    return 0.5 * (connectivity + connectivity.T)


def smallest_laplacian_eigenvalues(affinity, m):
    """The m smallest eigenvalues of the normalised graph Laplacian, ascending.

    Component by component: the Laplacian of a graph in c pieces is block-diagonal with
    eigenvalue 0 c times, and Lanczos (eigsh) finds a repeated eigenvalue only once, so
    on the whole graph it reported 3 zeros where a UMAP space's k-NN graph had 14. In a
    connected piece 0 is a single eigenvalue."""
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components, laplacian
    from scipy.sparse.linalg import eigsh

    affinity = scipy.sparse.csr_matrix(affinity)
    n_pieces, piece = connected_components(affinity, directed=False)
    order = np.argsort(piece, kind="stable")
    bounds = np.searchsorted(piece[order], np.arange(n_pieces + 1))
    values = []
    for p in range(n_pieces):
        rows = order[bounds[p] : bounds[p + 1]]
        lap = laplacian(affinity[rows][:, rows], normed=True)
        n = len(rows)
        if n <= 500:
            values.append(np.linalg.eigvalsh(lap.toarray())[:m])
        else:
            # Smallest eigenvalues of L are the largest of 2I - L (its spectrum lies in
            # [0, 2]); a fixed start vector keeps the result deterministic.
            k = min(m, n - 2)
            shifted = 2 * scipy.sparse.identity(n) - lap
            values.append(2 - eigsh(shifted, k=k, which="LA", v0=np.ones(n), tol=1e-8)[0])
    return np.sort(np.concatenate(values))[:m]


def eigengap_k(affinity, max_k=EIGENGAP_MAX_K):
    """(k, eigenvalues): k is where the gap between consecutive smallest eigenvalues of
    the normalised graph Laplacian is largest, searched over 2..min(max_k, n - 1)."""
    n = affinity.shape[0]
    if n < 3:
        raise InputError(f"{n} files are too few for n_clusters=auto, which needs at least 3")
    values = smallest_laplacian_eigenvalues(affinity, min(max_k + 1, n))  # 0..k for k up to n - 1 clusters
    if no_eigengap(values):
        return 2, values
    gaps = np.diff(values)  # gaps[k - 1] = values[k] - values[k - 1]
    k = int(np.argmax(gaps[1:])) + 2
    return k, values


def no_eigengap(values):
    """Whether the eigenvalues show no group structure: the largest gap is the first,
    after the single 0 of a connected graph (the graph is one group), or there is no gap
    at all (identical vectors: [0, 1, 1, ..., 1]). n_clusters=auto then takes 2, the
    fewest spectral clustering makes, and says so, rather than a k read from noise."""
    gaps = np.diff(values)
    return len(gaps) < 2 or gaps[0] >= gaps[1:].max()


# An eigengap less than this many times the next largest is reported as weak: k could as
# well have been the other one (bench/README.md, "n_clusters: auto").
WEAK_GAP = 1.5


def gap_strength(values, k):
    """(the eigengap at k over the largest other gap beyond the first, that other gap's k)."""
    gaps = np.diff(values)[1:]  # gaps[j] = values[j + 2] - values[j + 1]: the gap for k = j + 2
    chosen = k - 2
    others = np.delete(gaps, chosen)
    if others.size == 0 or others.max() <= 0:
        return float("inf"), None
    j = int(np.argmax(np.where(np.arange(len(gaps)) == chosen, -np.inf, gaps)))
    return float(gaps[chosen] / others.max()), j + 2


def self_tuning_graph(x, n_neighbours=AUTO_K_NEIGHBOURS, scale_neighbour=AUTO_K_SCALE_NEIGHBOUR):
    """Sparse symmetric affinity exp(-d^2 / (s_i s_j)) between each point and its
    n_neighbours nearest, s_i the distance from point i to its scale_neighbour-th nearest;
    where only one of a pair lists the other, that weight for both."""
    import scipy.sparse

    from neighbours import nearest_neighbours

    n = len(x)
    distances, indices = nearest_neighbours(x, min(n_neighbours, n - 1))
    scale = distances[:, min(scale_neighbour, distances.shape[1] - 1)]
    rows = np.repeat(np.arange(n), distances.shape[1])
    squared, product = distances.ravel() ** 2, scale[rows] * scale[indices.ravel()]
    # Where a scale is 0 (a point with that many exact duplicates): weight 1 to its
    # duplicates, 0 to anything farther.
    ratio = np.divide(squared, product, out=np.where(squared > 0, np.inf, 0.0), where=product > 0)
    weights = np.exp(-ratio)
    affinity = scipy.sparse.csr_matrix((weights, (rows, indices.ravel())), shape=(n, n))
    return affinity.maximum(affinity.T)


def auto_k_space(pooled):
    """The pooled vectors as n_clusters=auto reads them: PCA to AUTO_K_DIMS dimensions
    (fewer where the matrix has fewer rows or columns), L2-normalised."""
    from sklearn.decomposition import PCA

    x = np.asarray(pooled, dtype=np.float64)
    reduced = PCA(n_components=min(AUTO_K_DIMS, *x.shape), random_state=0).fit_transform(x)
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return reduced / np.where(norms > 0, norms, 1.0)


def auto_k(pooled, max_k=EIGENGAP_MAX_K):
    """(k, eigenvalues) for n_clusters=auto: the eigengap of the self-tuning graph of the
    pooled vectors (auto_k_space), not of the space being clustered: a UMAP space breaks
    groups into compact pieces (digits' into 12 to 14), which its graph counts."""
    return eigengap_k(self_tuning_graph(auto_k_space(pooled)), max_k)


def spectral_clusters(x, n_clusters, seed, log=None, pooled=None):
    """Spectral clustering of x; n_clusters="auto" reads k from `pooled` (auto_k)."""
    from sklearn.cluster import SpectralClustering

    affinity = affinity_graph(x)
    values = None
    if n_clusters == "auto":
        n_clusters, values = auto_k(pooled)
        if log and no_eigengap(values):
            log.say(
                f"no eigengap in the pooled vectors' ({pooled.shape[0]} x {pooled.shape[1]}) self-tuning graph: it shows "
                f"one group, not several (smallest Laplacian eigenvalues: {np.round(values, 4).tolist()}); n_clusters=auto "
                "takes 2, the fewest spectral clustering makes"
            )
        elif log:
            strength, other_k = gap_strength(values, n_clusters)
            weak = (
                f"; the gap is weak, {strength:.2f} times the next largest (at k={other_k}): see eigengap.png"
                if strength < WEAK_GAP
                else f"; the gap is {strength:.2f} times the next largest" if other_k else ""
            )
            log.say(
                f"k read from the eigengap of the pooled vectors' ({pooled.shape[0]} x {pooled.shape[1]}) self-tuning "
                f"graph: {n_clusters}{weak} (smallest Laplacian eigenvalues: {np.round(values, 4).tolist()})"
            )
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
    return Clustering(labels, probabilities, 1.0 - probabilities, NO_TREE, soft, values)


def cluster(matrix, params, graph=None, log=None, pooled=None):
    """`graph`: the neighbours stage's output for HDBSCAN; built here when absent.
    `pooled`: the pooled matrix, which spectral n_clusters=auto reads k from (None: matrix,
    as with reduce=none, where they are the same)."""
    x = prepare(matrix, params["metric"])
    if params["algorithm"] == "hdbscan":
        return hdbscan_clusters(x, params["min_cluster_size"], params["min_samples"], graph, log)
    return spectral_clusters(x, params["n_clusters"], params["seed"], log, matrix if pooled is None else pooled)


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    params = snakemake.params.clusterer
    graph = dict(np.load(snakemake.input.graph)) if snakemake.input.get("graph") else None
    pooled = np.load(snakemake.input.pooled, mmap_mode="r") if snakemake.input.get("pooled") else None
    log.info(f"{params} on {matrix.shape[0]} x {matrix.shape[1]}")
    result = cluster(matrix, params, graph, log, pooled)
    n_clusters, noise = int(result.labels.max(initial=-1)) + 1, float((result.labels < 0).mean())
    log.info(f"{n_clusters} clusters, {noise:.1%} noise")
    if n_clusters == 0:
        log.say(f"no clusters found: all {len(result.labels)} files are noise (-1); try a smaller min_cluster_size")
    np.savez(snakemake.output.clusters, **{k: v for k, v in result._asdict().items() if v is not None})


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
