"""Write a synthetic Whisper-like embedding set: <out>/<id>.npy, one file per clip.

Structure: `clusters` centres in a `latent`-dim space, each clip a point near one
centre (Gaussian, spread `spread`; cluster sizes equal or, with `--power`, a power law), plus a share `noise` of clips drawn uniformly
over the latent box (HDBSCAN noise). Latent points go to `dim` (1280, Whisper
large-v2) through one fixed random linear map. Frame-level files (`--frames T` or
`--frames LO-HI` for variable T) add independent Gaussian noise to every frame
around the clip's vector; `--frames 0` writes pooled `(D,)` vectors.

    python bench/make_data.py --out /tmp/embclust-bench/pooled-20k --n 20000
    python bench/make_data.py --out /tmp/embclust-bench/frames --n 2000 --frames 1500 --dtype float16
    python bench/make_data.py --out /tmp/embclust-bench/nested-1M --n 1000000 --dim 8 --dtype float16 --subdirs 1000

`--generator pareto` is a second generator, written apart from the first so that a
method tuned on one can be checked on the other (issue 24): `clusters` sizes drawn
from a Pareto law of shape `--pareto-shape` (1.5: a few clusters hold most clips,
most hold a handful) and rounded to whole clips, at least one each; centres uniform
in a `latent`-dim cube (default 24 here), each clip its centre plus isotropic
Gaussian spread, noise clips uniform over the cube; an orthonormal map (not a
Gaussian one) to `dim` dims. `--latent`, `--noise` and `--spread` apply to both.

    python bench/make_data.py --generator pareto --out /tmp/embclust-bench/data/pareto-50k --n 50000 --clusters 2000 --noise 0.1

`--subdirs K` spreads the files over K subfolders `<out>/d000/...` (clip i in
folder i mod K), as a million clips would be stored.

Also writes <out>.labels.csv (id, true cluster; -1 for noise files), outside the
embedding directory so the workflow never sees it. Deterministic for a seed.
"""

import argparse
import io
import os

import numpy as np


def clip_vectors(n, clusters, latent, dim, noise, spread, seed, power=0.0):
    """(labels [n], vectors [n, dim] float32) with real cluster structure. Cluster k
    (from 0) draws clips with weight (k + 1) ** -power: 0 gives equal sizes, 1 a
    power law (Zipf) like real data, where a few clusters are large and most small."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(clusters, latent))
    n_noise = int(round(n * noise))
    if power:
        weights = np.arange(1, clusters + 1, dtype=float) ** -power
        members = rng.choice(clusters, size=n - n_noise, p=weights / weights.sum())
    else:  # the draw of earlier versions, so their data sets stay the same
        members = rng.integers(0, clusters, n - n_noise)
    labels = np.concatenate([members, np.full(n_noise, -1)])
    rng.shuffle(labels)
    z = np.empty((n, latent))
    real = labels >= 0
    z[real] = centres[labels[real]] + rng.normal(0, spread, size=(real.sum(), latent))
    z[~real] = rng.uniform(-12, 12, size=((~real).sum(), latent))
    projection = rng.normal(0, 1 / np.sqrt(latent), size=(latent, dim))
    return labels, (z @ projection).astype(np.float32)


def pareto_vectors(n, clusters, latent, dim, noise, spread, seed, shape=1.5):
    """(labels [n], vectors [n, dim] float32) from the second generator (see the
    docstring): exact Pareto cluster sizes, a uniform cube, an orthonormal map."""
    rng = np.random.default_rng([seed, 24])  # a stream of its own, never make_data's first one
    n_members = n - int(round(n * noise))
    # Classical Pareto (minimum 1) weights; sizes by largest remainder so they sum to n_members.
    weights = 1 + rng.pareto(shape, clusters)
    share = weights / weights.sum() * (n_members - clusters)
    sizes = 1 + np.floor(share).astype(np.int64)
    sizes[np.argsort(share - np.floor(share))[::-1][: n_members - sizes.sum()]] += 1
    labels = np.concatenate([np.repeat(np.arange(clusters), sizes), np.full(n - n_members, -1)])
    labels = labels[rng.permutation(n)]
    half = 10.0
    centres = rng.uniform(-half, half, size=(clusters, latent))
    z = np.where(
        (labels >= 0)[:, None],
        centres[np.maximum(labels, 0)] + rng.normal(0, spread, size=(n, latent)),
        rng.uniform(-half, half, size=(n, latent)),
    )
    basis, _ = np.linalg.qr(rng.normal(size=(dim, latent)))  # dim x latent, orthonormal columns
    return labels, (z @ basis.T).astype(np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory to write (created)")
    p.add_argument("--n", type=int, required=True, help="number of files")
    p.add_argument("--frames", default="0", help="0 = pooled (D,); T = (T, D); LO-HI = T uniform in [LO, HI]")
    p.add_argument("--dtype", default="float32", choices=["float16", "float32"])
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--generator", default="make_data", choices=["make_data", "pareto"], help="which generator (see above)")
    p.add_argument("--latent", type=int, default=None, help="latent dims (default 16; pareto 24)")
    p.add_argument("--clusters", type=int, default=40)
    p.add_argument("--power", type=float, default=0.0, help="cluster sizes ~ rank ** -power (0: equal, 1: Zipf)")
    p.add_argument("--noise", type=float, default=0.05, help="share of noise files")
    p.add_argument("--spread", type=float, default=1.0, help="std of a cluster in latent units")
    p.add_argument("--frame-noise", type=float, default=1.0, help="std of per-frame noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pareto-shape", type=float, default=1.5, help="pareto generator: the size law's shape")
    p.add_argument("--subdirs", type=int, default=0, help="spread the files over this many subfolders (0 = none)")
    a = p.parse_args(argv)

    if a.generator == "pareto":
        latent = 24 if a.latent is None else a.latent
        labels, vectors = pareto_vectors(a.n, a.clusters, latent, a.dim, a.noise, a.spread, a.seed, a.pareto_shape)
    else:
        latent = 16 if a.latent is None else a.latent
        labels, vectors = clip_vectors(a.n, a.clusters, latent, a.dim, a.noise, a.spread, a.seed, a.power)
    if "-" in a.frames:
        lo, hi = map(int, a.frames.split("-"))
    else:
        lo = hi = int(a.frames)
    rng = np.random.default_rng(a.seed + 1)
    dtype = np.dtype(a.dtype)
    # Per-frame noise: slices of one bank at random offsets (fast, and frames of one
    # file are still independent of its clip vector).
    bank = rng.normal(0, a.frame_noise, size=(max(hi, 1) * 4, a.dim)).astype(np.float32) if hi else None
    os.makedirs(a.out, exist_ok=True)
    width = len(str(a.n - 1))
    ids = [f"clip{i:0{width}d}" for i in range(a.n)]
    folders = [a.out]
    if a.subdirs:
        digits = len(str(a.subdirs - 1))
        folders = [os.path.join(a.out, f"d{k:0{digits}d}") for k in range(a.subdirs)]
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
    # Pooled vectors all share one header: written once, then raw bytes per file (a
    # million np.save calls would take several times longer).
    header = None
    if hi == 0:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": dtype.str, "fortran_order": False, "shape": (a.dim,)})
        header = buffer.getvalue()
    for i, name in enumerate(ids):
        path = os.path.join(folders[i % len(folders)], name + ".npy")
        if hi == 0:
            with open(path, "wb") as f:
                f.write(header + vectors[i].astype(dtype).tobytes())
            continue
        t = int(rng.integers(lo, hi + 1))
        start = int(rng.integers(0, len(bank) - t + 1))
        np.save(path, (vectors[i] + bank[start : start + t]).astype(dtype))
    with open(a.out.rstrip("/") + ".labels.csv", "w") as f:
        f.write("id,true_cluster\n")
        f.writelines(f"{name},{label}\n" for name, label in zip(ids, labels))
    print(f"wrote {a.n} files to {a.out} (frames {a.frames}, {a.dtype}, {a.clusters} clusters, {a.noise:.0%} noise)")


if __name__ == "__main__":
    main()
