"""Metrics stage: how good is one clustering, with and without labels.

Internal scores are computed on clustered (non-noise) points only: silhouette in
the metric used, Calinski-Harabasz and Davies-Bouldin in the space the
clusterer saw, and DBCV (density-based cluster validity, as hdbscan's
validity_index computes it). Above SAMPLE clustered points, silhouette and DBCV
use a seeded random sample of SAMPLE points, since both cost O(n^2).

The internal scores are computed here in numpy, as scikit-learn and hdbscan define
them (tests/test_metrics.py checks them against both to 1e-9): importing the two took
seconds of every rerun, more than the scores themselves, and hdbscan's DBCV compares
clusters pair by pair in Python. scikit-learn is imported only for the label scores.
"""

import json

import numpy as np
from _stage import read_ids, read_labels
from neighbours import prepare

SAMPLE = 5000
# Rows of a block of pairwise distances (silhouette, DBCV's separations): 2 to 3 MB at
# 5,000 points, so the block stays in cache.
ROW_BLOCK = 64
EXEMPLARS = 5
DECIMALS = 6


def _round(value):
    return None if value is None or not np.isfinite(value) else round(float(value), DECIMALS)


def euclidean_distances(a, b=None):
    """Euclidean distances as scikit-learn's pairwise_distances computes them:
    sqrt(|a|^2 - 2 a.b + |b|^2), negatives clipped, and 0 on the diagonal of a with itself."""
    same = b is None
    b = a if same else b
    aa = np.einsum("ij,ij->i", a, a)[:, None]
    bb = aa.T if same else np.einsum("ij,ij->i", b, b)[None, :]
    d = -2 * (a @ b.T)
    d += aa
    d += bb
    np.maximum(d, 0, out=d)
    if same:
        np.fill_diagonal(d, 0)
    return np.sqrt(d)


def _row_blocks(n, width=ROW_BLOCK):
    return [slice(start, min(start + width, n)) for start in range(0, n, width)]


def silhouette(x, y, metric):
    """Mean silhouette coefficient (scikit-learn's silhouette_score): per point, a = mean
    distance to the rest of its cluster, b = smallest mean distance to another cluster,
    (b - a) / max(a, b), and 0 for a point alone in its cluster. `y`: 0..k-1, all used.
    Distances by blocks of rows, which stay in cache (the whole matrix is 200 MB at 5,000)."""
    k = int(y.max()) + 1
    freqs = np.bincount(y, minlength=k)
    members = (y[:, None] == np.arange(k)).astype(np.float64)
    sums = np.empty((len(y), k))  # distance from each point to each cluster
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        norms[norms == 0] = 1
        unit = x / norms[:, None]
    else:
        sq = np.einsum("ij,ij->i", x, x)
    for rows in _row_blocks(len(y)):
        if metric == "cosine":
            d = 1 - unit[rows] @ unit.T
            np.clip(d, 0, 2, out=d)
        else:
            d = -2 * (x[rows] @ x.T)
            d += sq[rows, None]
            d += sq[None, :]
            np.maximum(d, 0, out=d)
        d[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = 0
        if metric != "cosine":
            np.sqrt(d, out=d)
        sums[rows] = d @ members
    at = np.arange(len(y))
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = sums[at, y] / (freqs[y] - 1)
        sums[at, y] = np.inf
        inter = (sums / freqs).min(axis=1)
        s = (inter - intra) / np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(s)))


def calinski_harabasz(x, y):
    """scikit-learn's calinski_harabasz_score; `y`: 0..k-1, all used."""
    k = int(y.max()) + 1
    extra, intra = 0.0, 0.0
    mean = x.mean(axis=0)
    for c in range(k):
        members = x[y == c]
        centre = members.mean(axis=0)
        extra += len(members) * np.sum((centre - mean) ** 2)
        intra += np.sum((members - centre) ** 2)
    return 1.0 if intra == 0.0 else float(extra * (len(x) - k) / (intra * (k - 1.0)))


def davies_bouldin(x, y):
    """scikit-learn's davies_bouldin_score; `y`: 0..k-1, all used."""
    k = int(y.max()) + 1
    spread, centres = np.zeros(k), np.zeros((k, x.shape[1]))
    for c in range(k):
        members = x[y == c]
        centres[c] = members.mean(axis=0)
        spread[c] = euclidean_distances(members, centres[c][None]).mean()
    between = euclidean_distances(centres)
    if np.all(np.isclose(spread, 0)) or np.all(np.isclose(between, 0)):
        return 0.0
    between[between == 0] = np.inf
    return float(np.mean(np.max((spread[:, None] + spread) / between, axis=1)))


def _prim(mr):
    """hdbscan's mst_linkage_core: Prim's algorithm on a dense matrix from point 0, rows
    (source, new point, distance) in the order points join; ties to the lower index."""
    m = len(mr)
    out = np.zeros((m - 1, 3))
    in_tree = np.zeros(m, dtype=bool)
    best, source = np.full(m, np.finfo(np.float64).max), np.zeros(m, dtype=np.intp)
    current = 0
    for i in range(m - 1):
        in_tree[current] = True
        closer = (mr[current] < best) & ~in_tree
        best[closer], source[closer] = mr[current][closer], current
        candidates = np.where(in_tree, np.inf, best)
        new = int(np.argmin(candidates))
        out[i] = source[new], new, candidates[new]
        current = new
    return out


def _internal_tree(mr):
    """hdbscan's internal_minimum_spanning_tree: (internal nodes, their edges). hdbscan
    re-attaches each edge to the lowest-numbered point already in the tree at (isclose)
    the same distance, and keeps the edges between points of degree > 1 (all edges when
    none are)."""
    tree = _prim(mr)
    if len(tree) > 1:
        joined = np.concatenate([[0], tree[:, 1].astype(np.intp)])  # points in the order they join
        position = np.empty(len(mr), dtype=np.intp)
        position[joined] = np.arange(len(joined))
        rows = np.arange(1, len(tree))
        new = tree[rows, 1].astype(np.intp)
        # Row r may re-attach to the points in the tree before it: positions 0..r.
        close = np.isclose(mr[new], tree[rows, 2][:, None]) & (position[None, :] <= rows[:, None])
        tree[rows, 0] = np.argmax(close, axis=1)
    degree = np.bincount(tree[:, :2].astype(np.intp).ravel(), minlength=len(mr))
    nodes = np.flatnonzero(degree > 1)
    if not len(nodes):
        nodes = np.array([0])
    keep = np.isin(tree[:, 0], nodes) & np.isin(tree[:, 1], nodes)
    return nodes, tree[keep] if keep.any() else tree


def dbcv(x, y):
    """Density-based clustering validation (Moulavi et al. 2014) as hdbscan's
    validity_index(x, y) computes it (euclidean, d = x's width, mutual reachability
    from all-points core distances); every cluster in `y` needs two points. The
    separations of all pairs of clusters come from one matrix between their internal
    nodes instead of a loop over pairs."""
    n, width = x.shape
    clusters = np.unique(y)
    sparseness = np.zeros(len(clusters))
    inner, inner_core, inner_cluster = [], [], []
    for i, c in enumerate(clusters):
        members = x[y == c]
        d = euclidean_distances(members)
        with np.errstate(divide="ignore", over="ignore"):
            density = np.where(d != 0, (1.0 / np.where(d != 0, d, 1)) ** width, 0).sum(axis=1) / (len(members) - 1)
        core = np.zeros(len(members)) if density.sum() == 0 else density ** (-1.0 / width)
        mr = np.maximum(d, np.maximum(core[None, :], core[:, None]))
        nodes, edges = _internal_tree(mr)
        sparseness[i] = edges[:, 2].max()
        inner.append(members[nodes])
        inner_core.append(core[nodes])
        inner_cluster.append(np.full(len(nodes), i))
    points, core, owner = np.concatenate(inner), np.concatenate(inner_core), np.concatenate(inner_cluster)
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    separation = np.full((len(clusters), len(clusters)), np.inf)
    for rows in _row_blocks(len(points)):
        mr = np.maximum(euclidean_distances(points[rows], points), np.maximum(core[rows, None], core[None, :]))
        np.minimum.at(separation, owner[rows], np.minimum.reduceat(mr, starts, axis=1))
    np.fill_diagonal(separation, np.inf)
    nearest = separation.min(axis=1)
    validity = (nearest - sparseness) / np.maximum(nearest, sparseness)
    result = 0.0
    for c, v in zip(clusters, validity):  # summed in hdbscan's order
        result += (np.sum(y == c) / float(n)) * v
    return float(result)


def internal_scores(matrix, labels, metric, seed):
    """silhouette, Calinski-Harabasz, Davies-Bouldin and DBCV of the non-noise points."""
    clustered = np.flatnonzero(labels >= 0)
    scores = {"silhouette": None, "calinski_harabasz": None, "davies_bouldin": None, "dbcv": None, "sample_size": None, "dbcv_sample_size": None}
    if len(np.unique(labels[clustered])) < 2 or len(clustered) < 3:
        return scores  # every score needs at least two clusters
    if len(clustered) > SAMPLE:
        clustered = np.sort(np.random.default_rng(seed).choice(clustered, SAMPLE, replace=False))
        scores["sample_size"] = SAMPLE
    raw = np.asarray(matrix[clustered], dtype=np.float64)
    space = prepare(raw, metric)
    # Clusters numbered 0..k-1 in the order of their ids, as scikit-learn's LabelEncoder does.
    _, y = np.unique(labels[clustered], return_inverse=True)
    if y.max() < 1:
        return scores
    # Silhouette is defined up to one cluster per point but one (scikit-learn refuses more).
    if y.max() + 1 <= len(y) - 1:
        scores["silhouette"] = _round(silhouette(raw, y, metric))
        scores["calinski_harabasz"] = _round(calinski_harabasz(space, y))
        scores["davies_bouldin"] = _round(davies_bouldin(space, y))
    # DBCV needs two points of a cluster to measure its density (hdbscan's
    # validity_index fails on one): clusters with a single file, in the data or in
    # the sample (common with thousands of small clusters), are left out.
    sizes = np.bincount(y)
    dense = sizes[y] >= 2
    if len(np.unique(y[dense])) >= 2:
        if not dense.all():
            scores["dbcv_sample_size"] = int(dense.sum())
        with np.errstate(all="ignore"):
            scores["dbcv"] = _round(dbcv(space[dense], y[dense]))
    return scores


def label_scores(labels, ids, truth):
    """ARI, AMI, NMI and V-measure against one label column, on all labelled points
    (noise counts as one more cluster) and on the clustered ones."""
    from sklearn import metrics as skm

    keep = [i for i, clip in enumerate(ids) if truth.get(clip, "") != ""]
    y_pred = labels[keep]
    y_true = np.array([truth[ids[i]] for i in keep])

    def scores(mask):
        if mask.sum() == 0:
            return None
        t, p = y_true[mask], y_pred[mask]
        return {
            "ari": _round(skm.adjusted_rand_score(t, p)),
            "ami": _round(skm.adjusted_mutual_info_score(t, p)),
            "nmi": _round(skm.normalized_mutual_info_score(t, p)),
            "v_measure": _round(skm.v_measure_score(t, p)),
        }

    clustered = y_pred >= 0
    return {
        "n_labelled": len(keep),
        "fraction_clustered": _round(clustered.mean()) if keep else None,
        "all": scores(np.ones(len(keep), dtype=bool)),
        "clustered": scores(clustered),
    }


def exemplars(space, labels, probabilities, k=EXEMPLARS):
    """Per cluster, the indices of its k most representative members: highest
    membership first, ties broken by closeness to the cluster's mean."""
    out = []
    # Members of every cluster from one sort: a scan per cluster would cost files x clusters.
    by_cluster = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[by_cluster], np.arange(int(labels.max(initial=-1)) + 2))
    for c in range(len(bounds) - 1):
        members = by_cluster[bounds[c] : bounds[c + 1]]
        distance = np.linalg.norm(space[members] - space[members].mean(0), axis=1)
        order = np.lexsort((distance, -probabilities[members]))
        out.append(members[order[:k]])
    return out


def compute_metrics(matrix, clusters, ids, metric, seed, labels_by_column=None):
    labels, probabilities = clusters["labels"], clusters["probabilities"]
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels[labels >= 0], minlength=n_clusters)
    space = prepare(matrix, metric)
    return {
        "n_files": len(labels),
        "n_clusters": n_clusters,
        "noise_fraction": _round((labels < 0).mean()),
        "cluster_sizes": sizes.tolist(),
        "internal": internal_scores(matrix, labels, metric, seed),
        "labels": {col: label_scores(labels, ids, truth) for col, truth in (labels_by_column or {}).items()},
        "clusters": [
            {"cluster": c, "size": int(sizes[c]), "exemplars": [ids[i] for i in members]}
            for c, members in enumerate(exemplars(space, labels, probabilities))
        ],
    }


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    clusters = np.load(snakemake.input.clusters)
    ids, _ = read_ids(snakemake.input.ids)
    labels_by_column = None
    if snakemake.input.get("labels"):
        columns, rows = read_labels(snakemake.input.labels)
        labels_by_column = {c: {clip: row[c] for clip, row in rows.items()} for c in columns}
        missing = sum(1 for clip in ids if clip not in rows)
        if missing:
            log.say(f"{missing} of {len(ids)} files have no row in {snakemake.input.labels}; label metrics leave them out")
    params = snakemake.params.clusterer
    result = compute_metrics(matrix, clusters, ids, params["metric"], params.get("seed", 0), labels_by_column)
    with open(snakemake.output.metrics, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    log.info(json.dumps(result["internal"]))


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
