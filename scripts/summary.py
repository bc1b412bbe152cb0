"""Summary stage: one row per result of a sweep, and a figure of metrics against settings."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _stage import read_json_files  # noqa: E402

SETTING_COLUMNS = [
    "pooling", "flatten_frames", "reduce", "reduce_dim", "algorithm",
    "min_cluster_size", "min_samples", "n_clusters", "metric", "seed",
]
METRIC_COLUMNS = ["n_clusters_found", "noise_fraction", "silhouette", "calinski_harabasz", "davies_bouldin", "dbcv"]
PLOTTED = ["dbcv", "silhouette", "noise_fraction", "n_clusters_found"]


def metric_row(metrics):
    row = {"n_clusters_found": metrics["n_clusters"], "noise_fraction": metrics["noise_fraction"]}
    row.update({k: metrics["internal"][k] for k in METRIC_COLUMNS[2:]})
    for column, scores in metrics["labels"].items():
        row[f"{column}_fraction_clustered"] = scores["fraction_clustered"]
        for part in ("all", "clustered"):
            for name, value in (scores[part] or {}).items():
                row[f"{column}_{name}_{part}"] = value
    return row


def summary_rows(results, metrics_list):
    """results: [{"dir", "settings"}] in the same order as metrics_list."""
    rows = []
    for result, metrics in zip(results, metrics_list):
        row = {"result": result["name"]}
        row.update({k: result["settings"].get(k) for k in SETTING_COLUMNS})
        row.update(metric_row(metrics))
        rows.append(row)
    return rows


def write_tsv(rows, path):
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + "\n")


def varying(rows):
    """Settings that differ between rows, leaving out copies of an earlier one
    (min_samples follows min_cluster_size when it is null)."""
    keys = []
    for k in SETTING_COLUMNS:
        if len({str(r.get(k)) for r in rows}) > 1 and not any(all(r[k] == r[j] for r in rows) for j in keys):
            keys.append(k)
    return keys


def draw(rows, path, title):
    """One panel per metric; x is the one varying setting when there is one, else each result."""
    keys = varying(rows)
    label_ari = sorted(k for k in rows[0] if k.endswith("_ari_all"))
    panels = PLOTTED + label_ari
    numeric = len(keys) == 1 and all(isinstance(r[keys[0]], int) for r in rows)
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), dpi=120, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, panels):
        if numeric:
            pairs = sorted((r[keys[0]], r.get(name)) for r in rows)
            xs = [x for x, y in pairs if y is not None]
            ax.plot(xs, [y for _, y in pairs if y is not None], "o-")
            ax.set_xlabel(keys[0])
        else:
            names = [", ".join(f"{k}={r[k]}" for k in keys) or "result" for r in rows]
            xs = range(len(rows))
            ax.plot(list(xs), [r.get(name) if r.get(name) is not None else float("nan") for r in rows], "o")
            ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main(snakemake, log):
    metrics_list = read_json_files(snakemake.input.metrics)
    rows = summary_rows(snakemake.params.results, metrics_list)
    write_tsv(rows, snakemake.output.table)
    draw(rows, snakemake.output.figure, f"{snakemake.params.dataset}: {len(rows)} results")
    log.info(f"{len(rows)} rows")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
