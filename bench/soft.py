"""Soft memberships: embclust's export stage against hdbscan's all_points_membership_vectors.

    python bench/soft.py                      # the table in bench/README.md
    python bench/soft.py --sizes 2000:40 8000:300 --reference-limit 60

For each size N:K, points in 16 dimensions from K Gaussian clusters with power-law
sizes plus 10% uniform noise; hdbscan.HDBSCAN(min_cluster_size=5,
approx_min_span_tree=False, prediction_data=True) clusters them once, then both
implementations compute the soft memberships from that same fitted tree. hdbscan's
own function runs only while its predicted time stays under --reference-limit
seconds (it grows with N x K in Python loops). Reports seconds, nanoseconds per
(point, cluster) pair and the largest difference between the two.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))


def data(n, k, seed=0, width=16):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, width))
    weights = 1 / np.arange(1, k + 1)
    labels = rng.choice(k, n, p=weights / weights.sum())
    x = centres[labels] + rng.normal(0, 0.15, size=(n, width))
    noise = rng.random(n) < 0.1
    x[noise] = rng.uniform(-11, 11, size=(noise.sum(), width))
    return x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["2000:40", "5000:200", "10000:500", "20000:1000", "50000:2000"])
    p.add_argument("--reference-limit", type=float, default=120, help="skip hdbscan's function when predicted slower")
    a = p.parse_args(argv)
    import hdbscan
    from export import SoftMemberships, selected_clusters

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| N | clusters found | hdbscan fit (s) | embclust soft (s) | ns per pair | hdbscan's function (s) | max difference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    reference_ns = None  # hdbscan's seconds per (point, cluster) pair, from the last size it ran
    for size in a.sizes:
        n, k = map(int, size.split(":"))
        x = data(n, k)
        t = time.perf_counter()
        fitted = hdbscan.HDBSCAN(min_cluster_size=5, approx_min_span_tree=False, prediction_data=True).fit(x)
        fit_s = time.perf_counter() - t
        tree, labels = fitted.condensed_tree_._raw_tree, fitted.labels_
        found = int(labels.max()) + 1
        t = time.perf_counter()
        soft = SoftMemberships(x, tree, selected_clusters(tree, labels))
        ours = np.vstack([m for _, m, _ in soft.blocks()])
        ours_s = time.perf_counter() - t
        ref_cell, diff_cell = "skipped", ""
        if reference_ns is None or reference_ns * n * found / 1e9 <= a.reference_limit:
            t = time.perf_counter()
            ref = hdbscan.all_points_membership_vectors(fitted)
            ref_s = time.perf_counter() - t
            reference_ns = ref_s / (n * found) * 1e9
            ref_cell, diff_cell = f"{ref_s:.1f}", f"{np.abs(ours - ref).max():.1e}"
        else:
            ref_cell = f"skipped (about {reference_ns * n * found / 1e9:.0f} s predicted)"
        print(f"| {n} | {found} | {fit_s:.1f} | {ours_s:.2f} | {ours_s / (n * found) * 1e9:.0f} | {ref_cell} | {diff_cell} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
