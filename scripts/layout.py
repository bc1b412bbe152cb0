"""Layout stage: 2-D coordinates for plots, independent of clustering settings."""

import numpy as np


def layout(matrix, params):
    n = matrix.shape[0]
    if params["method"] == "pca" or n < 4:
        # UMAP needs a few neighbours; with a handful of files PCA is the honest picture.
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit_transform(matrix).astype(np.float32)
    import umap

    model = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric=params["metric"], random_state=params["seed"])
    return model.fit_transform(matrix).astype(np.float32)


def main(snakemake, log):
    matrix = np.load(snakemake.input.matrix)
    log.info(f"{snakemake.params.layout['method']} layout of {matrix.shape[0]} x {matrix.shape[1]}")
    np.save(snakemake.output.layout, layout(matrix, snakemake.params.layout))


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
