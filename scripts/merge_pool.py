"""Merge stage: the pooled shards joined into one matrix, rows in sorted-id order.

The merged file is written front to back in blocks of about BLOCK_BYTES, and
each shard's rows are read with pread: neither the output nor the shards are
memory-mapped, whose pages would count as this job's memory (15 GB for flatten
on 2,000 Whisper files). Each shard's ids are sorted, so a block needs one
contiguous run of rows from each shard. For flatten with the longest file's
frame count, shards may differ in width: shorter rows are zero-padded (the zero
frames a longer file elsewhere implies).
"""

import json
import os

import numpy as np
from _stage import InputError, read_ids, write_ids, write_npy_header
from pool import widths_differ

BLOCK_BYTES = 256 * 2**20


def read_rows(fd, offset, width, first, last):
    """Rows first..last-1 of a float32 matrix of `width` columns at `offset` in fd."""
    row_bytes = 4 * width
    data = os.pread(fd, (last - first) * row_bytes, offset + first * row_bytes)
    return np.frombuffer(data, dtype=np.float32).reshape(last - first, width)


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
    # Where each merged row comes from: (shard, row in the shard).
    sizes = [len(ids) for ids, _ in shard_ids]
    from_shard = np.repeat(np.arange(len(sizes)), sizes)[order]
    from_row = np.concatenate([np.arange(n) for n in sizes]).astype(np.int64)[order]
    dim = max(info["dim"] for info in infos)
    # Mapped only for their shapes and data offsets; rows are read with pread.
    shards = [np.load(p, mmap_mode="r") for p in matrix_paths]
    files = [os.open(p, os.O_RDONLY) for p in matrix_paths]
    try:
        with open(matrix_path, "wb") as out:
            write_npy_header(out, (len(ids), dim))
            block_rows = max(1, BLOCK_BYTES // (4 * dim))
            for start in range(0, len(ids), block_rows):
                shard, row = from_shard[start : start + block_rows], from_row[start : start + block_rows]
                block = np.zeros((len(shard), dim), dtype=np.float32)
                for s in np.unique(shard):
                    here = shard == s
                    first, last = row[here].min(), row[here].max() + 1
                    width = shards[s].shape[1]
                    block[here, :width] = read_rows(files[s], shards[s].offset, width, first, last)[row[here] - first]
                out.write(block.tobytes())
    finally:
        for fd in files:
            os.close(fd)
    write_ids([ids[i] for i in order], [paths[i] for i in order], ids_path)
    return len(ids), dim


def frames_kept(infos):
    """What pooling kept of the files' frames, over all shards: how many files were trimmed
    by their audio's duration, by the padding found in their frames, or not at all, and
    the frames pooled per file (least, median, most)."""
    kept = np.concatenate([np.asarray(info["kept"], dtype=np.int64) for info in infos])
    by = [b for info in infos for b in info["trimmed_by"]]
    out = {"files": int(kept.size), "by_audio": by.count("audio"), "by_frames": by.count("frames"), "untrimmed": by.count(None)}
    if kept.size:
        out["frames_kept"] = [int(kept.min()), float(np.median(kept)), int(kept.max())]
    return out


def describe_frames_kept(summary):
    """One line for the log: how many frames were kept and how they were found."""
    least, median, most = summary["frames_kept"]
    ways = [f"{summary[k]} by {what}" for k, what in (("by_audio", "their audio's duration"),
            ("by_frames", "the padding found in their frames")) if summary[k]]  # fmt: skip
    trimmed = f"trimmed {', '.join(ways)}; {summary['untrimmed']} untrimmed" if ways else "all frames of every file"
    return f"frames pooled per file: median {median:g} ({least}-{most}); {trimmed}"


def main(snakemake, log):
    infos = []
    for path in snakemake.input.info:
        with open(path) as f:
            infos.append(json.load(f))
    n, dim = merge_shards(snakemake.input.matrices, snakemake.input.ids, infos, snakemake.output.matrix, snakemake.output.ids)
    log.info(f"merged {len(infos)} shards: {n} files x {dim} dims")
    summary = frames_kept(infos)
    if summary["by_audio"] or summary["by_frames"]:
        log.say(describe_frames_kept(summary))
    with open(snakemake.output.frames, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
