"""Baseline: the original single script (`python -m Data.clustering --reduce pca
--reduce-dim 50 --plot umap`) as a plain single process, for comparison.

Loop over np.load, mean-pool each file, scikit-learn PCA to 50 dims (default
solver), hdbscan.HDBSCAN(min_cluster_size=5, prediction_data=True) and
hdbscan.all_points_membership_vectors, umap-learn 2-D for the plot; writes
clusters_hard.json (id, cluster, probability), clusters_soft.json (id,
probabilities) and a matplotlib scatter PNG. Prints the time of each step.

    python bench/baseline.py --embedding-dir DIR --output-dir OUT
"""

import argparse
import glob
import json
import os
import time

T0 = time.perf_counter()
import hdbscan  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import umap  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedding-dir", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--reduce-dim", type=int, default=50)
    p.add_argument("--min-cluster-size", type=int, default=5)
    p.add_argument("--min-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    steps = {"imports": time.perf_counter() - T0}

    def step(name, start):
        steps[name] = time.perf_counter() - start
        print(f"baseline {name}: {steps[name]:.1f} s", flush=True)

    t = time.perf_counter()
    paths = sorted(glob.glob(os.path.join(a.embedding_dir, "*.npy")))
    ids = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    rows = []
    for path in paths:
        x = np.load(path).astype(np.float32)
        if x.ndim == 3:
            x = x[0]
        rows.append(x.mean(axis=0) if x.ndim == 2 else x)
    x = np.stack(rows)
    step("load+pool", t)

    t = time.perf_counter()
    reduced = PCA(n_components=a.reduce_dim).fit_transform(x)
    step("pca", t)

    t = time.perf_counter()
    model = hdbscan.HDBSCAN(
        min_cluster_size=a.min_cluster_size, min_samples=a.min_samples, prediction_data=True
    ).fit(reduced)
    labels = model.labels_
    n_clusters = int(labels.max()) + 1
    soft = hdbscan.all_points_membership_vectors(model) if n_clusters > 0 else np.zeros((len(x), 0))
    soft = np.asarray(soft).reshape(len(x), n_clusters)
    step("hdbscan", t)

    t = time.perf_counter()
    os.makedirs(a.output_dir, exist_ok=True)
    with open(os.path.join(a.output_dir, "clusters_hard.json"), "w") as f:
        json.dump(
            [{"id": i, "cluster": int(c), "probability": float(pr)} for i, c, pr in zip(ids, labels, model.probabilities_)],
            f,
            indent=1,
        )
    with open(os.path.join(a.output_dir, "clusters_soft.json"), "w") as f:
        json.dump([{"id": i, "probabilities": [float(v) for v in s]} for i, s in zip(ids, soft)], f, indent=1)
    step("json", t)

    t = time.perf_counter()
    xy = umap.UMAP(n_components=2, random_state=a.seed).fit_transform(reduced)
    step("umap", t)

    t = time.perf_counter()
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=2, cmap="tab20")
    ax.set_title(f"HDBSCAN, {n_clusters} clusters")
    fig.savefig(os.path.join(a.output_dir, "plot_umap.png"), dpi=150)
    step("plot", t)
    steps["total_in_process"] = time.perf_counter() - T0
    with open(os.path.join(a.output_dir, "steps.json"), "w") as f:
        json.dump(steps, f, indent=1)
    print(f"baseline: {len(x)} files, {n_clusters} clusters, {(labels < 0).mean():.1%} noise")


if __name__ == "__main__":
    main()
