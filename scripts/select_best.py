"""Selection stage: pick the best result of a sweep without labels, copy it to best/.

Criterion: highest DBCV (density-based cluster validity), which judges any
labelling with noise by the same density-based yardstick; ties go to less
noise, then to the earlier result in the summary. Results with fewer than two
clusters have no DBCV and are picked only if nothing else is left.
"""

import json
import shutil

from _stage import read_json_files

CRITERION = "dbcv"


def rank_key(metrics):
    dbcv = metrics["internal"][CRITERION]
    return (dbcv is not None, dbcv if dbcv is not None else 0.0, -metrics["noise_fraction"])


def choose(metrics_list):
    """Index of the best result; the earliest among equals."""
    best = 0
    for i, metrics in enumerate(metrics_list):
        if rank_key(metrics) > rank_key(metrics_list[best]):
            best = i
    return best


def main(snakemake, log):
    metrics_list = read_json_files(snakemake.input.metrics)
    results = snakemake.params.results
    best = choose(metrics_list)
    chosen = results[best]
    for name in ("hard", "soft", "metrics"):
        shutil.copyfile(snakemake.input[name][best], snakemake.output[name])
    selection = {
        "criterion": f"highest {CRITERION}, then lowest noise fraction",
        "chosen": chosen["name"],
        "settings": chosen["settings"],
        "candidates": [
            {"result": r["name"], CRITERION: m["internal"][CRITERION], "noise_fraction": m["noise_fraction"]}
            for r, m in zip(results, metrics_list)
        ],
    }
    with open(snakemake.output.selection, "w") as f:
        json.dump(selection, f, indent=1)
        f.write("\n")
    log.say(f"best of {len(results)} by {CRITERION}: {chosen['name']}")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
