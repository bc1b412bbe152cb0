"""What was tried beside the workflow, on the sets and sweeps of an earlier quality run:
other selection criteria, other poolings, and PLSCAN (bench/README.md, "Tried beside the workflow").

    .venv/bin/python bench/quality.py --seeds 0 1 2 3 4   # first: the sets and the sweeps
    .venv/bin/python bench/quality_offline.py             # then these tables, about 9 minutes

Nothing here feeds the workflow; it reads <workdir>/sets and <workdir>/runs and prints
three markdown tables:

  criteria  for every sweep under runs/ (each draw's standard sweep and the euclidean
            sweeps), how far below the sweep's best ARI each label-free criterion's pick
            is: the workflow's (Calinski-Harabasz x clustered fraction), stability under
            resampling (RESAMPLES subsamples of RESAMPLE_FRACTION of the files, each
            result's settings rerun in its own space, mean ARI to the result, noise as
            clusters of one; alone and times the clustered fraction), stability under seeds
            (UMAP's and spectral clustering's seed set to OTHER_SEEDS, the space made
            again; alone and times the workflow's score), scores in one shared
            space (the pooled vectors, L2-normalised), the majority partition, the sweep's
            medoid, and two combinations of Calinski-Harabasz with the majority partition
  pooling   each speech draw pooled by mean, meanstd and max, UMAP to 10 dimensions
            (euclidean, cosine), HDBSCAN mcs 5: ARI (clusters)
  plscan    fast_hdbscan's PLSCAN (no parameters; bench/requirements-quality.txt) in each
            of the standard sweep's six spaces: ARI (clusters)

ARI as the workflow's metrics give it: every labelled file, noise one more cluster.
"""

import argparse
import csv
import glob
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts"))
import quality_sets  # noqa: E402
from quality import majority_scores, pick, times_clustered  # noqa: E402
from select_best import singletons  # noqa: E402

RESAMPLES = 8
RESAMPLE_FRACTION = 0.8
OTHER_SEEDS = [1, 2]
POOLINGS = ["mean", "meanstd", "max"]
SPACES = ["pca-5", "pca-10", "pca-50", "umap-5-cosine-s0", "umap-10-cosine-s0", "umap-50-cosine-s0"]


def ari(a, b):
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b)


def sweeps(runs):
    """Dataset names of the sweeps under runs/, in the order quality.py runs them."""
    names = [os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(runs, "*", "summary.tsv"))]

    def order(name):
        base = name.removesuffix("-euclidean")
        seed = int(base.rsplit("-s", 1)[1]) if "-s" in base else 0
        return (name.endswith("-euclidean"), seed, quality_sets.SETS.index(base.split("-s")[0]))

    return sorted(names, key=order)


def set_dir(workdir, dataset):
    base = dataset.removesuffix("-euclidean")
    return os.path.join(workdir, "sets", base if "-s" in base else f"{base}-s0")


def group_column(set_path):
    return json.load(open(os.path.join(set_path, "manifest.json")))["group_column"]


def truth(set_path, ids):
    """(mask of labelled files, their group labels), in the order of ids."""
    column = group_column(set_path)
    with open(os.path.join(set_path, "labels.csv")) as f:
        group = {r["id"]: r[column] for r in csv.DictReader(f)}
    labelled = np.array([group.get(i, "") != "" for i in ids])
    return labelled, np.array([group.get(i, "") for i in ids])[labelled]


def load_sweep(workdir, dataset):
    root = os.path.join(workdir, "runs", dataset)
    with open(os.path.join(root, "summary.tsv")) as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    group = group_column(set_dir(workdir, dataset))
    ch_clustered = times_clustered("calinski_harabasz")  # selection: auto's score
    results = []
    for row in table:
        path = os.path.join(root, row["result"])
        results.append({
            "row": row, "ari": float(row[f"{group}_ari_all"]), "space": os.path.dirname(path),
            "labels": np.load(os.path.join(path, "clusters.npz"))["labels"], "noise": float(row["noise_fraction"]),
            "ch_clustered": ch_clustered(row),
        })
    pooled = np.load(os.path.join(root, "pooled", "mean.npy")).astype(np.float64)
    return results, pooled


def clusterer(row, seed=None):
    """The cluster stage's parameters of a summary row; spectral with the k it found."""
    if row["algorithm"] == "hdbscan":
        mcs = int(row["min_cluster_size"])
        return {"algorithm": "hdbscan", "metric": row["metric"], "min_cluster_size": mcs, "min_samples": int(row["min_samples"] or mcs)}
    seed = int(row["seed"] or 0) if seed is None else seed
    return {"algorithm": "spectral", "metric": row["metric"], "n_clusters": int(row["n_clusters_found"]), "seed": seed}


def reduced(result, spaces):
    """The result's space (reduced.npy), read once per space."""
    if result["space"] not in spaces:
        spaces[result["space"]] = np.load(os.path.join(result["space"], "reduced.npy"))
    return spaces[result["space"]]


def seed_stability(result, spaces, layouts, pooled):
    """Mean ARI between the result and its settings rerun with OTHER_SEEDS: UMAP's seed
    (the space made again from the pooled vectors) and spectral clustering's. 1.0 for
    HDBSCAN on PCA, which has no seed."""
    from cluster import cluster
    from reduce import umap

    row = result["row"]
    if row["reduce"] != "umap" and row["algorithm"] == "hdbscan":
        return 1.0
    scores = []
    for seed in OTHER_SEEDS:
        if row["reduce"] == "umap":
            key = (int(row["reduce_dim"]), row["metric"], seed)
            if key not in layouts:
                layouts[key] = umap(pooled.astype(np.float32), key[0], key[1], seed)
            x = layouts[key]
        else:
            x = reduced(result, spaces)
        labels = cluster(x, clusterer(row, seed), pooled=pooled).labels
        scores.append(ari(singletons(result["labels"]), singletons(labels)))
    return float(np.mean(scores))


def resampled_stability(result, spaces, pooled, rng_seed=0):
    """Mean ARI between the result and its settings rerun on subsamples of its space."""
    from cluster import cluster

    x = reduced(result, spaces)
    params = clusterer(result["row"])
    rng = np.random.default_rng(rng_seed)
    scores = []
    for _ in range(RESAMPLES):
        rows = np.sort(rng.choice(len(x), int(RESAMPLE_FRACTION * len(x)), replace=False))
        labels = cluster(x[rows], params, pooled=pooled[rows]).labels
        scores.append(ari(singletons(result["labels"][rows]), singletons(labels)))
    return float(np.mean(scores))


def clustered_score(score, x, labels):
    """score(x, labels) on the clustered files, times their fraction; None under two clusters."""
    keep = labels >= 0
    if len(np.unique(labels[keep])) < 2:
        return None
    return score(x[keep], labels[keep]) * keep.mean()


def criteria_scores(results, pooled):
    from scipy.stats import rankdata
    from sklearn.metrics import calinski_harabasz_score, silhouette_score

    shared = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    ch = [r["ch_clustered"] for r in results]
    ch_filled = np.array([c if c is not None else -1.0 for c in ch])
    majority = np.array(majority_scores([r["labels"] for r in results]))
    dense = [singletons(r["labels"]) for r in results]
    medoid = [np.mean([ari(a, b) for j, b in enumerate(dense) if j != i]) for i, a in enumerate(dense)]
    spaces, layouts = {}, {}
    stability = [resampled_stability(r, spaces, pooled) for r in results]
    seeds = [seed_stability(r, spaces, layouts, pooled) for r in results]
    top = ch_filled >= 0.9 * ch_filled.max()
    return {
        "Calinski-Harabasz x clustered (selection: auto)": ch,
        f"resampling stability ({RESAMPLES} x {RESAMPLE_FRACTION:.0%})": stability,
        "resampling stability x clustered": [s * (1 - r["noise"]) for s, r in zip(stability, results)],
        f"seed stability (seeds {', '.join(map(str, OTHER_SEEDS))})": seeds,
        "Calinski-Harabasz x clustered x seed stability": [None if c is None else c * s for c, s in zip(ch, seeds)],
        "Calinski-Harabasz x clustered, shared space": [clustered_score(calinski_harabasz_score, shared, r["labels"]) for r in results],
        "cosine silhouette x clustered, shared space": [
            clustered_score(lambda a, b: silhouette_score(a, b, metric="cosine"), shared, r["labels"]) for r in results
        ],
        "majority partition": list(majority),
        "medoid (mean ARI to the others)": medoid,
        "ranks: Calinski-Harabasz + majority": list(rankdata(ch_filled) + rankdata(majority)),
        "most majority-like within 90% of the top Calinski-Harabasz": [m if t else None for m, t in zip(majority, top)],
    }


def criteria_table(workdir):
    gaps, lines = {}, []
    for dataset in sweeps(os.path.join(workdir, "runs")):
        t = time.perf_counter()
        results, pooled = load_sweep(workdir, dataset)
        best = max(r["ari"] for r in results)
        for name, scores in criteria_scores(results, pooled).items():
            gaps.setdefault(name, []).append(best - results[pick(scores, lambda score: score)]["ari"])
        print(f"  criteria: {dataset} ({len(results)} results) {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    n = len(next(iter(gaps.values())))
    lines += [f"Gaps to each sweep's best ARI over {n} sweeps.", "", "| criterion | mean gap | worst | within 0.02 |", "| --- | --- | --- | --- |"]
    for name, g in gaps.items():
        g = np.array(g)
        lines.append(f"| {name} | {g.mean():.3f} | {g.max():.3f} | {int((g <= 0.02 + 1e-9).sum())} of {n} |")
    return lines


def speech_draws(workdir):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(workdir, "sets", "voices*-s*")))


def pooling_table(workdir):
    from cluster import cluster
    from pool import pool_array
    from reduce import umap

    head = [f"{p}, {m}" for p in POOLINGS for m in ("euclidean", "cosine")]
    lines = ["| set | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for name in speech_draws(workdir):
        path = os.path.join(workdir, "sets", name)
        files = sorted(glob.glob(os.path.join(path, "emb", "*.npy")))
        labelled, y = truth(path, [os.path.basename(f)[: -len(".npy")] for f in files])
        frames = [np.load(f) for f in files]
        cells = []
        for pooling in POOLINGS:
            x = np.stack([pool_array(a, pooling) for a in frames])
            for metric in ("euclidean", "cosine"):
                labels = cluster(umap(x, 10, metric, 0), {"algorithm": "hdbscan", "metric": metric, "min_cluster_size": 5, "min_samples": 5}).labels
                cells.append(f"{ari(y, labels[labelled]):.3f} ({labels.max() + 1})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(f"  pooling: {name}", file=sys.stderr, flush=True)
    return lines


def plscan_table(workdir):
    from fast_hdbscan import PLSCAN

    runs = os.path.join(workdir, "runs")
    lines = ["| set | " + " | ".join(SPACES) + " |", "| --- |" + " --- |" * len(SPACES)]
    for dataset in [d for d in sweeps(runs) if not d.endswith("-euclidean")]:
        ids = [line.split("\t")[0] for line in open(os.path.join(runs, dataset, "pooled", "mean.ids.tsv")).read().splitlines()[1:]]
        labelled, y = truth(set_dir(workdir, dataset), ids)
        cells = []
        for space in SPACES:
            x = np.load(os.path.join(runs, dataset, "mean", space, "reduced.npy")).astype(np.float64)
            if space.startswith("pca"):  # the sweep's metric is cosine: angles, as on the unit sphere
                x = x / np.linalg.norm(x, axis=1, keepdims=True)
            labels = PLSCAN(reproducible=True).fit(x).labels_
            cells.append(f"{ari(y, labels[labelled]):.3f} ({labels.max() + 1})")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/embclust-quality")
    ap.add_argument("--tables", nargs="+", choices=["criteria", "pooling", "plscan"], default=["criteria", "pooling", "plscan"])
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # spectral clustering's "not fully connected", UMAP's n_jobs
    make = {"criteria": criteria_table, "pooling": pooling_table, "plscan": plscan_table}
    for name in args.tables:
        t = time.perf_counter()
        lines = make[name](args.workdir)
        print(f"### {name}\n\n" + "\n".join(lines) + f"\n\n({time.perf_counter() - t:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
