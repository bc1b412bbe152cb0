"""Reduce stage: PCA or UMAP of the pooled matrix to `dim` dimensions."""

import json

import numpy as np
from _stage import InputError

# Above this width the D x D covariance gets too big and randomized SVD wins.
COVARIANCE_EIGH_MAX_WIDTH = 4096


def pca(matrix, dim):
    """Deterministic PCA: exact covariance eigendecomposition, or randomized SVD
    with a fixed random_state for very wide inputs."""
    from sklearn.decomposition import PCA

    n, width = matrix.shape
    if dim > min(n, width):
        raise InputError(
            f"reduce_dim={dim} is more than PCA can give: {n} files of width {width} allow at most {min(n, width)}"
        )
    solver = "covariance_eigh" if width <= COVARIANCE_EIGH_MAX_WIDTH else "randomized"
    model = PCA(n_components=dim, svd_solver=solver, random_state=0)
    reduced = model.fit_transform(matrix)
    return reduced.astype(np.float32), model.explained_variance_ratio_


def umap(matrix, dim, metric, seed):
    """UMAP embedding; a fixed random_state makes it deterministic (and single-threaded)."""
    n = matrix.shape[0]
    if dim >= n - 1:
        raise InputError(f"reduce_dim={dim} is too large for UMAP on {n} files (needs fewer than {n - 1})")
    import umap as umap_learn

    model = umap_learn.UMAP(n_components=dim, n_neighbors=min(15, n - 1), metric=metric, random_state=seed)
    return model.fit_transform(matrix).astype(np.float32)


def reduce_matrix(matrix, params, log):
    """(reduced matrix, summary dict); PCA's summary has the explained variance per component."""
    summary = dict(params, input_shape=list(matrix.shape))
    if params["method"] == "pca":
        reduced, ratio = pca(matrix, params["dim"])
        log.info(f"PCA to {params['dim']} dims keeps {ratio.sum():.1%} of the variance")
        return reduced, dict(summary, explained_variance_ratio=[round(float(r), 8) for r in ratio])
    return umap(matrix, params["dim"], params["metric"], params["seed"]), summary


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    reduced, summary = reduce_matrix(matrix, snakemake.params.reducer, log)
    np.save(snakemake.output.matrix, reduced)
    with open(snakemake.output.summary, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
