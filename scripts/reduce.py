"""Reduce stage: PCA or UMAP of the pooled matrix to `dim` dimensions.

PCA gives at most min(files, pooled width) dimensions: a larger reduce_dim (the
default 50 on small or narrow inputs) is clamped to that, with one line saying
so, and reduce.json records the dimensions kept.

The pooled matrix is memory-mapped, not loaded: flatten pooling makes it huge
(2,000 Whisper files: 2,000 x 1,920,000 float32, 15 GB). PCA of such a wide
matrix streams it from disk in column blocks (gram_pca).

The fitted reduction is also saved, as plain arrays (reducer.npz, read with
allow_pickle=False), for the assign stage (scripts/assign.py) to place new clips:
PCA's mean and components, so that a new row x goes to (x - mean) @ components.T;
UMAP's neighbour count and metric (its new points are placed as umap's transform
initialises them, from the pooled and reduced matrices: see scripts/assign.py).
"""

import contextlib
import json
import mmap
import os
from typing import Callable, Iterator, NamedTuple

import numpy as np
from _stage import InputError, Progress

# Above this width the D x D covariance gets too big: PCA goes through the N x N Gram matrix instead.
COVARIANCE_EIGH_MAX_WIDTH = 4096
# Bytes of one float64 column block in gram_pca (row block in covariance_pca).
BLOCK_BYTES = 256 << 20
# A narrow matrix bigger than this (as float32) is not copied for scikit-learn's PCA but
# streamed through its covariance (covariance_pca).
STREAM_BYTES = 1 << 30


def uses_gram(n, width):
    """Whether PCA of an n x width matrix goes through the Gram matrix: when it is wide
    and has no more rows than columns, so that the float64 Gram matrix (8 n^2 bytes) is
    no bigger than what randomized SVD holds, the matrix and a centred copy (8 n width)."""
    return COVARIANCE_EIGH_MAX_WIDTH < width and n <= width


def mem_mb(path, size_mb, reducer):
    """The reduce job's memory request: PCA through the Gram matrix holds it (8 N^2 bytes)
    and a column block; streamed covariance PCA holds its float32 scores (4 N dim bytes),
    a row block and its centred copy, and the covariance; otherwise PCA and UMAP hold
    float64 copies of the matrix, and UMAP its neighbour graph."""
    if reducer.startswith("pca-") and os.path.exists(path):
        n, width = np.load(path, mmap_mode="r").shape
        if uses_gram(n, width):
            return 2048 + (8 * n * n + 2 * BLOCK_BYTES) // 10**6
        if width <= COVARIANCE_EIGH_MAX_WIDTH and n * width * 4 > STREAM_BYTES:
            dim = min(int(reducer.split("-")[1]), width)
            return 2048 + (4 * n * dim + 2 * BLOCK_BYTES + 16 * width * width) // 10**6
    return 2048 + 8 * int(size_mb)


def runtime(size_mb, reducer):
    """The reduce job's time request in minutes: PCA reads the matrix three times at
    ~30 MB/s (a million files: 160 s measured), asked for with 4x room; UMAP's time
    grows faster than its input, and it runs only up to 100,000 files (reduce: auto)."""
    if reducer.startswith("pca-"):
        return 20 + int(size_mb / 450)
    return 20 + int(size_mb / 20)


def read_columns(matrix, start, out):
    """out[:] = matrix[:, start:start + out.shape[1]].

    A memory-mapped .npy is read row by row with pread, not through the map: pages
    touched through a map count as the process's resident memory, and for a column
    block the kernel maps much more than is read (for a 1 GB matrix, all of it).
    """
    # np.load's map of the whole file; a view into it would have another offset.
    if isinstance(matrix, np.memmap) and isinstance(matrix.base, mmap.mmap):
        row_bytes = matrix.shape[1] * matrix.itemsize
        first = matrix.offset + start * matrix.itemsize
        with open(matrix.filename, "rb", buffering=0) as f:
            for i, row in enumerate(out):
                os.preadv(f.fileno(), [row], first + i * row_bytes)
    else:
        out[:] = matrix[:, start : start + out.shape[1]]


def column_blocks(matrix, block_bytes):
    """(start, stop, float64 block of those columns): the matrix read in column blocks."""
    n, width = matrix.shape
    columns = max(1, block_bytes // (8 * n))
    # Flat buffers, so that a narrower last block is contiguous too (BLAS would copy it otherwise).
    raw, block = np.empty(n * columns, dtype=matrix.dtype), np.empty(n * columns)
    for start in range(0, width, columns):
        stop = min(start + columns, width)
        x, y = raw[: n * (stop - start)].reshape(n, -1), block[: n * (stop - start)].reshape(n, -1)
        read_columns(matrix, start, x)
        y[:] = x
        yield start, stop, y


def gram_pca(matrix, dim, log, block_bytes=BLOCK_BYTES):
    """Exact PCA of a wide n x width matrix through its centred n x n Gram matrix.

    K = sum over column blocks of Xc_b Xc_b^T (each block centred by its own column
    means, in float64), read block by block, so memory is K plus one block. The top
    eigenpairs (lambda, u) of K give scores u * sqrt(lambda) and explained variance
    ratios lambda / trace(K), as PCA by SVD would. Each component's sign makes its
    largest-magnitude score positive, so the result is deterministic.
    The components (for new rows) take a second pass over the blocks, made while
    they are written to disk (save_fitted), so they are never all in memory:
    V_b = Xc_b^T u / sqrt(lambda), so that Xc V^T gives the scores back.
    Returns (scores float32 [n, dim], explained variance ratio [dim],
    column means [width], the components transposed [width, dim] as Streamed rows).
    """
    from scipy.linalg import eigh
    from scipy.linalg.blas import dsyrk

    n, width = matrix.shape
    gram = np.zeros((n, n), order="F")  # Fortran order: dsyrk adds to it in place
    mean = np.empty(width)
    progress = Progress(log, -(-width // max(1, block_bytes // (8 * n))), "column blocks into the Gram matrix")
    for done, (start, stop, y) in enumerate(column_blocks(matrix, block_bytes), 1):
        mean[start:stop] = y.mean(axis=0)
        y -= mean[start:stop]
        # y.T is Fortran-ordered, so BLAS reads the block without a copy; only the upper triangle is written.
        gram = dsyrk(1.0, y.T, beta=1.0, c=gram, trans=1, overwrite_c=1)
        progress.update(done, stop * n * matrix.itemsize)
    total = np.trace(gram)
    values, vectors = eigh(gram, lower=False, subset_by_index=[n - dim, n - 1], overwrite_a=True, check_finite=False)
    values, vectors = values[::-1], vectors[:, ::-1]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dim)])
    roots = np.sqrt(np.maximum(values, 0))
    scores = vectors * (signs * roots)
    loadings = vectors * (signs / np.where(roots > 0, roots, 1))

    def component_rows():
        for start, stop, y in column_blocks(matrix, block_bytes):
            y -= mean[start:stop]
            yield (y.T @ loadings).astype(np.float32)

    return scores.astype(np.float32), values / total, mean, Streamed((width, dim), component_rows)


def row_blocks(matrix, block_bytes):
    """(start, float64 block of rows): the matrix read in row blocks; a memory-mapped
    .npy by pread (see read_columns), its file opened once."""
    n, width = matrix.shape
    rows = max(1, block_bytes // (8 * width))
    raw = np.empty((rows, width), dtype=matrix.dtype)
    mapped = isinstance(matrix, np.memmap) and isinstance(matrix.base, mmap.mmap)
    with open(matrix.filename, "rb", buffering=0) if mapped else contextlib.nullcontext() as f:
        for start in range(0, n, rows):
            x = raw[: min(rows, n - start)]
            if mapped:
                os.preadv(f.fileno(), [x], matrix.offset + start * width * matrix.itemsize)
            else:
                x[:] = matrix[start : start + len(x)]
            yield start, x.astype(np.float64)


def covariance_pca(matrix, dim, log, block_bytes=BLOCK_BYTES):
    """Exact PCA of a tall matrix too big to copy (a million files: 5 GB in float32,
    which scikit-learn's PCA would copy and centre), streamed in row blocks: the
    column means in one pass, the centred covariance in a second, its top
    eigenvectors, then the scores block by block. Components' signs as
    scikit-learn's (each component's largest-magnitude loading positive), so the
    result is scikit-learn's covariance_eigh PCA up to rounding."""
    from scipy.linalg import eigh

    n, width = matrix.shape
    mean = np.zeros(width)
    for _, x in row_blocks(matrix, block_bytes):
        mean += x.sum(axis=0)
    mean /= n
    covariance = np.zeros((width, width))
    progress = Progress(log, n, "rows into the covariance")
    for start, x in row_blocks(matrix, block_bytes):
        x -= mean
        covariance += x.T @ x
        progress.update(start + len(x), (start + len(x)) * width * matrix.itemsize)
    covariance /= max(n - 1, 1)
    values, vectors = eigh(covariance, subset_by_index=[width - dim, width - 1])
    components = vectors[:, ::-1].T
    signs = np.sign(components[np.arange(dim), np.abs(components).argmax(axis=1)])
    components *= signs[:, None]
    scores = np.empty((n, dim), dtype=np.float32)
    for start, x in row_blocks(matrix, block_bytes):
        scores[start : start + len(x)] = (x - mean) @ components.T
    return scores, values[::-1] / np.trace(covariance), mean, components.T.astype(np.float32)


def pca(matrix, dim, log, block_bytes=BLOCK_BYTES):
    """Deterministic PCA: exact covariance eigendecomposition for narrow matrices,
    exact Gram eigendecomposition for wide ones, else randomized SVD with a fixed
    random_state (wide, and more files than columns)."""
    n, width = matrix.shape
    if dim > min(n, width):
        raise InputError(
            f"reduce_dim={dim} is more than PCA can give: {n} files of width {width} allow at most {min(n, width)}"
        )
    if uses_gram(n, width):
        return gram_pca(matrix, dim, log, block_bytes)
    if width <= COVARIANCE_EIGH_MAX_WIDTH and n * width * 4 > STREAM_BYTES:
        return covariance_pca(matrix, dim, log, block_bytes)
    from sklearn.decomposition import PCA

    solver = "covariance_eigh" if width <= COVARIANCE_EIGH_MAX_WIDTH else "randomized"
    model = PCA(n_components=dim, svd_solver=solver, random_state=0)
    reduced = model.fit_transform(np.asarray(matrix))
    return reduced.astype(np.float32), model.explained_variance_ratio_, model.mean_, model.components_.T.astype(np.float32)


# UMAP's n_neighbors for reduce=umap (umap-learn's default is 15). With 15, UMAP splits the
# voices of the quality benchmark's voices8 set by phrase (each phrase's 5 takes form a
# tight clump); with 50 it keeps each voice whole, on every seed tried, and still
# separates voices20's smallest voices (6 clips) and the digits (bench/README.md, "Quality").
UMAP_REDUCE_NEIGHBOURS = 50


def umap_neighbours(n):
    """UMAP's n_neighbors for n rows."""
    return min(UMAP_REDUCE_NEIGHBOURS, n - 1)


def umap(matrix, dim, metric, seed):
    """UMAP embedding; a fixed random_state makes it deterministic (and single-threaded)."""
    n = matrix.shape[0]
    if dim >= n - 1:
        raise InputError(f"reduce_dim={dim} is too large for UMAP on {n} files (needs fewer than {n - 1})")
    import umap as umap_learn
    from _stage import cache_compiled_code

    cache_compiled_code()

    model = umap_learn.UMAP(n_components=dim, n_neighbors=umap_neighbours(n), metric=metric, random_state=seed)
    return model.fit_transform(matrix).astype(np.float32)


def pca_dim(requested, n, width):
    """The dimensions PCA gives for a requested reduce_dim: at most one per file and one
    per column of the pooled matrix."""
    return min(requested, n, width)


class Streamed(NamedTuple):
    """A float32 array too big to hold: its shape, and a function giving its rows in blocks."""

    shape: tuple
    blocks: Callable[[], Iterator[np.ndarray]]


def save_fitted(path, arrays):
    """An .npz of plain arrays (np.load(path, allow_pickle=False) reads it), written as
    np.savez would; a Streamed entry is written block by block."""
    import zipfile

    from _stage import write_npy_header

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                if isinstance(value, Streamed):
                    write_npy_header(f, value.shape)
                    for block in value.blocks():
                        f.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
                else:
                    np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)


def reduce_matrix(matrix, params, log):
    """(reduced matrix, summary dict, fitted reduction as plain arrays). `dim` in the
    summary is the dimensions kept and `requested_dim` the setting (the path's); PCA
    keeps fewer when the pooled matrix has fewer files or columns than requested, and
    says so. PCA's summary has the explained variance per component (null when the
    vectors have no variance at all). UMAP's has its n_neighbors."""
    n, width = matrix.shape
    summary = dict(params, requested_dim=params["dim"], input_shape=[n, width])
    if params["method"] == "pca":
        dim = pca_dim(params["dim"], n, width)
        if dim < params["dim"]:
            log.say(
                f"reduce_dim={params['dim']} is more than PCA can give ({n} files of width {width}): "
                f"keeping {dim} dims (the path still names pca-{params['dim']}; reduce.json records {dim})"
            )
        reduced, ratio, mean, components_t = pca(matrix, dim, log)
        fitted = {"method": np.array("pca"), "mean": mean, "components_t": components_t}
        if not np.isfinite(ratio).all():
            # Identical vectors: zero total variance, so each share is 0 / 0. Recorded as
            # null (never NaN, which is not JSON), and said.
            log.say(
                f"the {n} pooled vectors have no variance (all identical): PCA keeps {dim} dims of zeros, and the share "
                "of variance they keep is undefined (reduce.json: explained_variance_ratio null)"
            )
            return reduced, dict(summary, dim=dim, explained_variance_ratio=None), fitted
        log.info(f"PCA to {dim} dims keeps {ratio.sum():.1%} of the variance")
        return reduced, dict(summary, dim=dim, explained_variance_ratio=[round(float(r), 8) for r in ratio]), fitted
    reduced = umap(matrix, params["dim"], params["metric"], params["seed"])
    fitted = {"method": np.array("umap"), "n_neighbors": np.array(umap_neighbours(n)), "metric": np.array(params["metric"])}
    return reduced, dict(summary, n_neighbors=umap_neighbours(n)), fitted


def main(snakemake, log):
    # Memory-mapped: only what a reduction reads is in memory.
    matrix = np.load(snakemake.input.matrix, mmap_mode="r")
    reduced, summary, fitted = reduce_matrix(matrix, snakemake.params.reducer, log)
    np.save(snakemake.output.matrix, reduced)
    save_fitted(snakemake.output.fitted, fitted)
    with open(snakemake.output.summary, "w") as f:
        json.dump(summary, f, indent=1, allow_nan=False)
        f.write("\n")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
