"""Selection stage: pick the best result of a sweep without labels, copy it to best/.

Criterion: the Calinski-Harabasz index of the result's clustered files (the ratio
of between-cluster to within-cluster dispersion, each divided by its degrees of
freedom; computed by the metrics stage in the space the clusterer saw), times the
fraction of files clustered, so that a result calling most files noise and keeping
a few tight cores does not win. The highest wins, ties going to less noise, then
to the earlier result; a result with fewer than two clusters has no index and
ranks last. On the quality benchmark (bench/README.md, 11 draws) it came within
0.02 ARI of the sweep's best on 6, 0.023 below it on average and 0.105 at worst,
where the majority partition of the results, the criterion before, was 0.032 and
0.131 (README, "Sweeps"). It is computed in each result's own space, so it
also ranks the spaces: a reducer that squeezes groups into tight clumps scores well.

Per-clip stability: for each file, the mean over the sweep's other results of
the Jaccard overlap between its cluster in the chosen result and its cluster
in that result (a noise file's cluster is the file alone). 1 = the file lands
with exactly the same files whatever the settings; near 0 = its company
changes. Written to best/clusters_hard.json as "stability" and drawn in
best/stability.png.
"""

import json
import shutil
import textwrap

import numpy as np
from _stage import read_json_files
from provenance import REFERENCES

CRITERION = "ch_clustered"
CRITERION_TEXT = (
    "highest Calinski-Harabasz index of the clustered files (in the space the clusterer saw) times the fraction of "
    "files clustered, then lowest noise fraction"
)
DECIMALS = 6


def singletons(labels):
    """Labels with each noise file (-1) as a cluster of its own."""
    labels = np.asarray(labels).copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(noise.sum())
    return labels


def _pair_counts(a, b):
    """(code of each file's (a, b) pair, count of files sharing it), for dense labels a, b >= 0."""
    codes = a.astype(np.int64) * (int(b.max(initial=0)) + 1) + b
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return inverse, counts


def ch_scores(metrics_list):
    """Each result's Calinski-Harabasz index (its metrics.json) times its fraction of
    clustered files; None where it has no index (fewer than two clusters)."""
    scores = []
    for m in metrics_list:
        index = m["internal"]["calinski_harabasz"]
        scores.append(None if index is None else index * (1.0 - m["noise_fraction"]))
    return scores


def rank_key(score, noise_fraction):
    return (score is not None, score if score is not None else 0.0, -noise_fraction)


def choose(scores, noise_fractions):
    """Index of the best result; the earliest among equals."""
    best = 0
    for i in range(len(scores)):
        if rank_key(scores[i], noise_fractions[i]) > rank_key(scores[best], noise_fractions[best]):
            best = i
    return best


def runner_up(scores, noise_fractions, best):
    """Index of the best result other than `best`, or None for a sweep of one."""
    others = [i for i in range(len(scores)) if i != best]
    if not others:
        return None
    return max(others, key=lambda i: (rank_key(scores[i], noise_fractions[i]), -i))


def stability(reference, label_lists):
    """Per file: mean Jaccard overlap between its cluster in `reference` and its cluster in
    each of `label_lists` (noise files are clusters of one). 1.0 everywhere when every
    labelling groups the files as `reference` does; all ones when the list is empty."""
    ref = singletons(reference)
    ref_sizes = np.bincount(ref)[ref]
    total = np.zeros(len(ref))
    for labels in label_lists:
        other = singletons(labels)
        inverse, counts = _pair_counts(ref, other)
        shared = counts[inverse]
        total += shared / (ref_sizes + np.bincount(other)[other] - shared)
    return total / len(label_lists) if label_lists else np.ones(len(ref))


def draw_stability(values, path, title):
    """Histogram of per-file stability, with byte-for-byte reproducible PNG output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0", edgecolor="white")
    ax.set_xlim(0, 1)
    # Wrapped: a result's path is wider than the figure (both were cut off at its edges).
    ax.set_xlabel("stability: mean Jaccard overlap of the file's cluster\nacross the sweep's results")
    ax.set_ylabel("files")
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


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


def selection_paragraph(results, metrics_list, best, scores):
    """How the sweep chose the result, for best/methods.md."""
    chosen = metrics_list[best]
    index = chosen["internal"]["calinski_harabasz"]
    scored = f"its index was {index:.1f} and its score {scores[best]:.1f}" if index is not None else "no result had two clusters"
    return (
        f"This result was selected without labels from the {len(results)} results of a sweep over {swept(results)}: "
        f"the one with the highest Calinski-Harabasz index (Caliński & Harabasz, 1974) of its clustered points, "
        f"computed in the space the clustering saw, times the fraction of points clustered, ties going to the smaller "
        f"noise fraction, then to the earlier result. It is {results[best]['name']}; {scored}, with "
        f"{chosen['noise_fraction']:.1%} of the points labelled noise."
    )


def with_selection(methods_text, paragraph):
    """The chosen result's methods.md with the selection paragraph after its methods paragraph."""
    body, references = methods_text.split("\n\n## References\n", 1)
    for reference in REFERENCES["selection"]:
        if reference not in references:
            references += f"- {reference}\n"
    return f"{body}\n\n{paragraph}\n\n## References\n{references}"


def _round(value):
    return None if value is None else round(float(value), DECIMALS)


def selection_record(results, metrics_list, scores, best, second, stable):
    noise = [m["noise_fraction"] for m in metrics_list]
    return {
        "criterion": CRITERION_TEXT,
        "chosen": results[best]["name"],
        "settings": results[best]["settings"],
        "score": _round(scores[best]),
        "runner_up": None if second is None else {"result": results[second]["name"], "score": _round(scores[second])},
        "margin": None if second is None or scores[second] is None else _round(scores[best] - scores[second]),
        "stability": {"mean": _round(stable.mean()), "median": _round(np.median(stable)), "below_0.5": int((stable < 0.5).sum())},
        "candidates": [
            {"result": r["name"], CRITERION: _round(s), "calinski_harabasz": m["internal"]["calinski_harabasz"], "dbcv": m["internal"]["dbcv"], "noise_fraction": f}
            for r, m, s, f in zip(results, metrics_list, scores, noise)
        ],
    }


def main(snakemake, log):
    metrics_list = read_json_files(snakemake.input.metrics)
    hard_list = read_json_files(snakemake.input.hard)
    results = snakemake.params.results
    ids = [e["id"] for e in hard_list[0]]
    if any([e["id"] for e in hard] != ids for hard in hard_list):
        raise ValueError("the sweep's results list different files")
    labels = [np.array([e["cluster"] for e in hard]) for hard in hard_list]
    scores = ch_scores(metrics_list)
    noise = [m["noise_fraction"] for m in metrics_list]
    best = choose(scores, noise)
    second = runner_up(scores, noise, best)
    stable = stability(labels[best], [l for i, l in enumerate(labels) if i != best])
    chosen = results[best]
    for name in ("soft", "metrics"):
        shutil.copyfile(snakemake.input[name][best], snakemake.output[name])
    with open(snakemake.output.hard, "w") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(dict(e, stability=_round(s))) for e, s in zip(hard_list[best], stable)))
        f.write("\n]\n")
    with open(snakemake.output.selection, "w") as f:
        json.dump(selection_record(results, metrics_list, scores, best, second, stable), f, indent=1)
        f.write("\n")
    draw_stability(stable, snakemake.output.stability, f"{chosen['name']}: stability across {len(results)} results")
    with open(snakemake.input.methods[best], encoding="utf-8") as f:
        methods = f.read()
    with open(snakemake.output.methods, "w", encoding="utf-8") as f:
        f.write(with_selection(methods, selection_paragraph(results, metrics_list, best, scores)))
    second_note = ""
    if second is not None and scores[second] is not None:
        second_note = f"; runner-up {results[second]['name']} ({scores[second]}, margin {scores[best] - scores[second]:.4g})"
    log.say(
        f"best of {len(results)} by {CRITERION}: {chosen['name']} ({scores[best]}){second_note}; "
        f"mean stability {stable.mean():.3f}"
    )


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
