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


def swept(results):
    """'min_cluster_size (5, 10, 20)' for each setting that differs between results, leaving
    out one that only follows an earlier one (min_samples defaults to min_cluster_size)."""
    keys, columns = [], []
    for key in results[0]["settings"]:
        values = [r["settings"].get(key) for r in results]
        if len({json.dumps(v) for v in values}) > 1 and values not in columns:
            keys.append(f"{key} ({', '.join(map(str, dict.fromkeys(values)))})")
            columns.append(values)
    return " and ".join(keys) or "its settings"


def selection_paragraph(results, metrics_list, best):
    """How the sweep chose the result, for best/methods.md."""
    chosen = metrics_list[best]
    dbcv = chosen["internal"][CRITERION]
    score = (
        f"it scored a DBCV of {dbcv:.3f}" if dbcv is not None else "no result had a DBCV score (fewer than two clusters)"
    )
    return (
        f"This result was selected without labels from the {len(results)} results of a sweep over {swept(results)}: "
        f"the one with the highest DBCV (Moulavi et al., 2014), ties going to the smaller noise fraction, then to the "
        f"earlier result. It is {results[best]['name']}; {score}, with {chosen['noise_fraction']:.1%} of the points "
        f"labelled noise."
    )


def with_selection(methods_text, paragraph):
    """The chosen result's methods.md with the selection paragraph after its methods paragraph."""
    body, references = methods_text.split("\n\n## References\n", 1)
    return f"{body}\n\n{paragraph}\n\n## References\n{references}"


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
    with open(snakemake.input.methods[best], encoding="utf-8") as f:
        methods = f.read()
    with open(snakemake.output.methods, "w", encoding="utf-8") as f:
        f.write(with_selection(methods, selection_paragraph(results, metrics_list, best)))
    log.say(f"best of {len(results)} by {CRITERION}: {chosen['name']}")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
