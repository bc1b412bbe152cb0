"""Plot stage: the 2-D layout coloured by cluster, noise small and grey."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

NOISE_COLOUR = "#b0b0b0"


def palette(n):
    """n distinguishable colours: tab10 first, then the 20-colour tables; greys are
    left out, because grey means noise."""
    cmaps = ["tab10", "tab20b", "tab20c", "Set3"]
    colours = [c for name in cmaps for c in plt.get_cmap(name).colors if max(c) - min(c) > 0.1]
    return [colours[i % len(colours)] for i in range(n)]


def draw(layout, labels, probabilities, title, path):
    fig, ax = plt.subplots(figsize=(7, 6), dpi=150)
    noise = labels < 0
    ax.scatter(layout[noise, 0], layout[noise, 1], s=4, c=NOISE_COLOUR, alpha=0.6, linewidths=0, label="noise")
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    for c, colour in zip(range(n_clusters), palette(n_clusters)):
        members = labels == c
        # Weak members fade, so cluster cores stand out.
        alpha = 0.35 + 0.65 * np.clip(probabilities[members], 0, 1)
        rgba = np.tile(matplotlib.colors.to_rgba(colour), (members.sum(), 1))
        rgba[:, 3] = alpha
        ax.scatter(layout[members, 0], layout[members, 1], s=10, c=rgba, linewidths=0)
        # The id sits just above the cluster's median point, so small clusters stay visible.
        ax.annotate(str(c), np.median(layout[members], axis=0), xytext=(0, 7), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, weight="bold",
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec=colour, alpha=0.7))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.01, 0.01, f"{len(labels)} files, {n_clusters} clusters, {noise.mean():.0%} noise (grey)",
            transform=ax.transAxes, fontsize=8, va="bottom")
    fig.tight_layout()
    # No software/date metadata, so the same inputs give the same bytes.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main(snakemake, log):
    clusters = np.load(snakemake.input.clusters)
    layout = np.load(snakemake.input.layout)
    draw(layout, clusters["labels"], clusters["probabilities"], snakemake.params.title, snakemake.output.plot)


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
