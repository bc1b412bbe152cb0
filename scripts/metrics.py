"""Metrics stage: how good is one clustering, with and without labels.

Internal scores are computed on clustered (non-noise) points only: silhouette in
the metric used, Calinski-Harabasz and Davies-Bouldin in the space the
clusterer saw, and DBCV (density-based cluster validity, hdbscan's
validity_index). Above SAMPLE clustered points, silhouette and DBCV use a
seeded random sample of SAMPLE points, since both cost O(n^2).
"""

import json

import numpy as np
from _stage import read_ids, read_labels
from cluster import prepare

SAMPLE = 5000
EXEMPLARS = 5
DECIMALS = 6


def _round(value):
    return None if value is None or not np.isfinite(value) else round(float(value), DECIMALS)


def internal_scores(matrix, labels, metric, seed):
    """silhouette, Calinski-Harabasz, Davies-Bouldin and DBCV of the non-noise points."""
    from hdbscan.validity import validity_index
    from sklearn import metrics as skm

    clustered = np.flatnonzero(labels >= 0)
    scores = {"silhouette": None, "calinski_harabasz": None, "davies_bouldin": None, "dbcv": None, "sample_size": None, "dbcv_sample_size": None}
    if len(np.unique(labels[clustered])) < 2 or len(clustered) < 3:
        return scores  # every score needs at least two clusters
    if len(clustered) > SAMPLE:
        clustered = np.sort(np.random.default_rng(seed).choice(clustered, SAMPLE, replace=False))
        scores["sample_size"] = SAMPLE
    raw = np.asarray(matrix[clustered], dtype=np.float64)
    space = prepare(raw, metric)
    y = labels[clustered]
    if len(np.unique(y)) < 2:
        return scores
    scores["silhouette"] = _round(skm.silhouette_score(raw, y, metric=metric))
    scores["calinski_harabasz"] = _round(skm.calinski_harabasz_score(space, y))
    scores["davies_bouldin"] = _round(skm.davies_bouldin_score(space, y))
    # DBCV needs two points of a cluster to measure its density (hdbscan's
    # validity_index fails on one): clusters with a single file, in the data or in
    # the sample (common with thousands of small clusters), are left out.
    sizes = np.bincount(y)
    dense = sizes[y] >= 2
    if len(np.unique(y[dense])) >= 2:
        if not dense.all():
            scores["dbcv_sample_size"] = int(dense.sum())
        with np.errstate(all="ignore"):
            scores["dbcv"] = _round(validity_index(space[dense], y[dense]))
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
