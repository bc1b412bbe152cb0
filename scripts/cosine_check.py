"""Cosine check stage: a pooling's all-zero vectors, named, before anything measures cosine.

An all-zero vector has no cosine direction. Each pool job records the files that
pooled to one (scripts/pool.py, `zero_vectors` in the shard's .json); every stage that
measures cosine (UMAP's reduction and layout, the neighbour graph, spectral clustering)
waits on this check of its pooling, so the files are named right after pooling, also
when PCA would centre the zero vector into a direction of its own.
"""

import json

from _stage import InputError


def zero_vectors(infos):
    """The files, over the shards' records, whose pooled vector is all zeros."""
    return sorted(path for info in infos for path in info["zero_vectors"])


def check(infos):
    zero = zero_vectors(infos)
    if zero:
        shown = ", ".join(zero[:3]) + (f" (+{len(zero) - 3} more)" if len(zero) > 3 else "")
        raise InputError(
            f"{len(zero)} files pool to all-zero vectors, which have no cosine direction: {shown}; "
            "remove them or use metric=euclidean"
        )


def main(snakemake, log):
    infos = []
    for path in snakemake.input.info:
        with open(path) as f:
            infos.append(json.load(f))
    check(infos)
    with open(snakemake.output.checked, "w") as f:
        f.write(f"no all-zero vectors in {sum(info['files'] for info in infos)} files ({len(infos)} shards)\n")
    log.info(f"checked {len(infos)} shards: no all-zero vectors")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
