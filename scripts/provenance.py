"""Provenance stage: what made a result, so it can be reproduced and cited.

Holds no times and no absolute paths, so two runs of the same commit on the
same inputs write the same bytes.
"""

import hashlib
import json
import platform
import subprocess
from importlib import metadata

from _stage import read_ids, read_json_files

PACKAGES = ["numpy", "scipy", "scikit-learn", "hdbscan", "umap-learn", "numba", "matplotlib", "snakemake"]


def sha256_file(path, chunk=1 << 22):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_lines(lines):
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def versions():
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(directory):
    """HEAD of the workflow's repository, '+dirty' if it has uncommitted changes; None outside git."""
    try:
        head = subprocess.run(["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def reduction(summary):
    """The reduction as run, from the reduce stage's reduce.json (None: reduce=none).
    `dim` is the dimensions kept, which PCA clamps to what it can give; `requested_dim`
    is the setting the result's path names."""
    if summary is None:
        return {"method": "none"}
    out = {k: summary[k] for k in ("method", "requested_dim", "dim", "metric", "seed", "input_shape") if k in summary}
    if "explained_variance_ratio" in summary:
        out["explained_variance"] = round(sum(summary["explained_variance_ratio"]), 6)
    return out


def provenance(settings, ids, pooled_matrix_path, commit, reduce_summary=None, version=None):
    return {
        "workflow_version": version,
        "settings": settings,
        "reduction": reduction(reduce_summary),
        "n_inputs": len(ids),
        "input_ids_sha256": sha256_lines(ids),
        "pooled_matrix_sha256": sha256_file(pooled_matrix_path),
        "versions": versions(),
        "workflow_commit": commit,
    }


def main(snakemake, log):
    ids, _ = read_ids(snakemake.input.ids)
    summary = read_json_files([snakemake.input.reduce])[0] if snakemake.input.get("reduce") else None
    commit = git_commit(snakemake.scriptdir)
    record = provenance(snakemake.params.settings, ids, snakemake.input.pooled, commit, summary, snakemake.params.version)
    with open(snakemake.output.provenance, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
