"""Export stage: the cluster JSONs, one entry per input file in sorted-id order."""

import json

import numpy as np
from _stage import read_ids

DECIMALS = 6  # probabilities are rounded so the JSON is stable and compact


def hard_entries(ids, paths, labels, probabilities, outlier_scores):
    return [
        {
            "id": i,
            "path": p,
            "cluster": int(c),
            "probability": round(float(q), DECIMALS),
            "outlier_score": round(float(o), DECIMALS),
        }
        for i, p, c, q, o in zip(ids, paths, labels, probabilities, outlier_scores)
    ]


def soft_entries(ids, paths, soft):
    return [
        {"id": i, "path": p, "probabilities": [round(float(v), DECIMALS) for v in row]}
        for i, p, row in zip(ids, paths, soft)
    ]


def write_json_array(entries, path):
    """A JSON array with one entry per line: valid JSON that also diffs and greps well."""
    with open(path, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n" if entries else "[]\n")


def main(snakemake, log):
    ids, paths = read_ids(snakemake.input.ids)
    clusters = np.load(snakemake.input.clusters)
    if len(ids) != len(clusters["labels"]):
        raise RuntimeError(f"{len(ids)} ids but {len(clusters['labels'])} labels")
    hard = hard_entries(ids, paths, clusters["labels"], clusters["probabilities"], clusters["outlier_scores"])
    write_json_array(hard, snakemake.output.hard)
    write_json_array(soft_entries(ids, paths, clusters["soft"]), snakemake.output.soft)
    log.info(f"wrote {len(ids)} entries")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
