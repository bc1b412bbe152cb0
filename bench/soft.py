"""Soft memberships: embclust's export stage against hdbscan's all_points_membership_vectors.

    python bench/soft.py                      # the table in bench/README.md
    python bench/soft.py --sizes 2000:40 8000:300 --reference-limit 60
    python bench/soft.py --compare 228091e --sizes 200000:20000   # old code against new

For each size N:K, points in 16 dimensions from K Gaussian clusters with power-law
sizes plus 10% uniform noise; hdbscan.HDBSCAN(min_cluster_size=5,
approx_min_span_tree=False, prediction_data=True) clusters them once, then both
implementations compute the soft memberships from that same fitted tree. hdbscan's
own function runs only while its predicted time stays under --reference-limit
seconds (it grows with N x K in Python loops). Reports seconds, nanoseconds per
(point, cluster) pair and the largest difference between the two.

--compare REV times the export stage's soft memberships at git revision REV (its
scripts/export.py, loaded beside the current one) against the current code, in one
process on the same fitted trees: N points from K Gaussian centres in 8 dimensions
padded with zeros to 50 (the width the export sees), each centre 5 points plus a
Pareto(1.5) share of the rest, 10% uniform noise; hdbscan.HDBSCAN(min_cluster_size=5)
fits once and is kept in --cache. Alternating rounds (--rounds), best of each: the
memberships alone, then with the top-10 JSON entries (soft_entries, not serialised), of
the first --rows files (all by default). Also the largest difference between the two on
--check-rows random rows.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
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


def padded_pareto(n, k, seed=0, latent=8, width=50):
    """N points from K centres in `latent` dims, zero-padded to `width` (see --compare)."""
    rng = np.random.default_rng(seed)
    members = int(n * 0.9)
    weights = 1 + rng.pareto(1.5, k)
    sizes = 5 + np.floor(weights / weights.sum() * (members - 5 * k)).astype(int)
    labels = np.concatenate([np.repeat(np.arange(k), sizes), np.full(n - sizes.sum(), -1)])[rng.permutation(n)]
    centres = rng.uniform(-10, 10, size=(k, latent))
    z = np.where((labels >= 0)[:, None], centres[np.maximum(labels, 0)] + rng.normal(0, 0.15, size=(n, latent)),
                 rng.uniform(-10, 10, size=(n, latent)))
    x = np.zeros((n, width))
    x[:, :latent] = z
    return x


def fitted_tree(n, k, cache):
    """(x, condensed tree, labels) of padded_pareto(n, k), fitted once and kept in `cache`."""
    path = os.path.join(cache, f"fit-{n}-{k}.npz")
    if not os.path.exists(path):
        import hdbscan

        os.makedirs(cache, exist_ok=True)
        x = padded_pareto(n, k)
        t = time.perf_counter()
        fitted = hdbscan.HDBSCAN(min_cluster_size=5).fit(x)
        print(f"fitted {n} x {k} in {time.perf_counter() - t:.0f} s", flush=True)
        np.savez(path, x=x, tree=fitted.condensed_tree_._raw_tree, labels=fitted.labels_)
    f = np.load(path)
    return f["x"], f["tree"], f["labels"]


def export_at(rev):
    """scripts/export.py as it was at git revision `rev`, as a module of its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = subprocess.run(["git", "show", f"{rev}:scripts/export.py"], cwd=root, check=True, capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), f"export_{rev}.py")
    with open(path, "w") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(f"export_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(a):
    """--compare: the table of old against new (see the docstring)."""
    import export

    old = export_at(a.compare)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"| files x clusters found (exemplars) | {a.compare} memberships (s) | new (s) | speed-up | {a.compare} with top-10 entries (s) | new (s) | speed-up | largest difference |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in a.sizes:
        n, k = map(int, size.split(":"))
        x, tree, labels = fitted_tree(n, k, a.cache)
        selected = export.selected_clusters(tree, labels)
        ids = [f"f{i}" for i in range(n)]
        soft = {"old": old.SoftMemberships(x, tree, selected), "new": export.SoftMemberships(x, tree, selected)}
        module = {"old": old, "new": export}
        rows = np.sort(np.random.default_rng(1).choice(n, min(a.check_rows, n), replace=False))
        diff = max(np.abs(soft["old"].block(r)[0] - soft["new"].block(r)[0]).max() for r in np.array_split(rows, max(1, len(rows) // 50)))

        n_rows = min(n, a.rows or n)

        def blocks(which):  # the first n_rows, in each one's own blocks
            size = soft[which].block_size()
            for start in range(0, n_rows, size):
                rows = np.arange(start, min(start + size, n_rows))
                yield (rows, *soft[which].block(rows))

        def memberships(which):
            for _ in blocks(which):
                pass

        def entries(which):
            for _ in module[which].soft_entries(ids, ids, blocks(which), "top", 10):
                pass

        for which in soft:  # numba's compiled code loaded before timing
            list(module[which].soft_entries(ids, ids, [(rows[:5], *soft[which].block(rows[:5]))], "top", 10))
        best = {}
        for r in range(a.rounds):
            for task in (memberships, entries):
                for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    t = time.perf_counter()
                    task(which)
                    s = time.perf_counter() - t
                    print(f"  round {r + 1}: {task.__name__} {which} {s:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
                    best[task, which] = min(best.get((task, which), np.inf), s)
        cells = []
        for task in (memberships, entries):
            cells += [f"{best[task, 'old']:.1f}", f"{best[task, 'new']:.1f}", f"{best[task, 'old'] / best[task, 'new']:.2f}x"]
        print(f"| {n_rows} of {n} x {soft['new'].n_clusters} ({len(soft['new'].exemplars)}) | " + " | ".join(cells) + f" | {diff:.1e} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["2000:40", "5000:200", "10000:500", "20000:1000", "50000:2000"])
    p.add_argument("--reference-limit", type=float, default=120, help="skip hdbscan's function when predicted slower")
    p.add_argument("--compare", metavar="REV", help="time export.py at git revision REV against the current one instead")
    p.add_argument("--rounds", type=int, default=3, help="--compare: alternating rounds (best of them)")
    p.add_argument("--check-rows", type=int, default=2000, help="--compare: rows on which the two are compared")
    p.add_argument("--rows", type=int, default=0, help="--compare: time only the first ROWS files (0: all)")
    p.add_argument("--cache", default="/tmp/softbench", help="--compare: where the fitted trees are kept")
    a = p.parse_args(argv)
    if a.compare:
        return compare(a)
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
