"""Merge stage: the pooled shards joined into one matrix, rows in sorted-id order.

Rows are written through a memory map, shard by shard, so the merged matrix is
never held in memory twice. For flatten with the longest file's frame count,
shards may differ in length: shorter rows are zero-padded (the zero frames a
longer file elsewhere implies).
"""

import json

import numpy as np
from _stage import InputError, read_ids, write_ids
from pool import widths_differ


def merge_shards(matrix_paths, ids_paths, infos, matrix_path, ids_path):
    shard_ids = [read_ids(p) for p in ids_paths]
    widths = {}
    for (_, paths), info in zip(shard_ids, infos):
        widths.setdefault(info["width"], []).extend(paths)
    if len(widths) > 1:
        raise widths_differ({w: sorted(ps) for w, ps in widths.items()})
    ids = [i for ids, _ in shard_ids for i in ids]
    paths = [p for _, ps in shard_ids for p in ps]
    if len(set(ids)) != len(ids):
        raise InputError("the same id appears in two shards; remove stale shard files and rerun")
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    row_of = np.empty(len(ids), dtype=np.int64)
    row_of[order] = np.arange(len(ids))
    dim = max(info["dim"] for info in infos)
    merged = np.lib.format.open_memmap(matrix_path, mode="w+", dtype=np.float32, shape=(len(ids), dim))
    start = 0
    for path in matrix_paths:
        shard = np.load(path, mmap_mode="r")
        rows = row_of[start : start + len(shard)]
        merged[rows, : shard.shape[1]] = shard
        if shard.shape[1] < dim:
            merged[rows, shard.shape[1] :] = 0
        start += len(shard)
    merged.flush()
    del merged
    write_ids([ids[i] for i in order], [paths[i] for i in order], ids_path)
    return len(ids), dim


def main(snakemake, log):
    infos = []
    for path in snakemake.input.info:
        with open(path) as f:
            infos.append(json.load(f))
    n, dim = merge_shards(snakemake.input.matrices, snakemake.input.ids, infos, snakemake.output.matrix, snakemake.output.ids)
    log.info(f"merged {len(infos)} shards: {n} files x {dim} dims")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
