"""Plot stage: publication figures for each result, as PNG and SVG, all of a result's
in one job (`figures`; `figures_spectral` without the tree):

- `plot-{layout}`: the 2-D layout coloured by cluster, noise small and grey, each cluster's id
  at its centre, opacity by membership strength;
- `sizes`: files per cluster, as bars in the same colours;
- `tree`: HDBSCAN's condensed tree (hdbscan's icicle plot), selected clusters ringed;
- `variance` (its own job, per reduction): PCA's explained variance against components.

Files are byte-for-byte reproducible: no software or date metadata, fixed SVG ids.
The map stage (scripts/map.py) takes its colours from `palette` here.
"""

import json

import numpy as np
from export import selected_clusters  # the tree's rings are the clusters the soft memberships use


def _pyplot():
    """matplotlib.pyplot, imported when a figure is drawn: the map (scripts/map.py) takes
    only the palette and titles from here, and matplotlib would add a second to its start-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot

NOISE_COLOUR = "#b0b0b0"
# Figures name at most this many clusters (the largest): more ids are unreadable,
# and placing them apart costs the square of their number.
MAX_LABELS = 60
# Above this many points, or this many condensed-tree nodes, the SVG holds the
# points or bars as one embedded image, so it stays small and quick to open.
RASTERIZE_POINTS = 5_000
# The sizes figure draws a bar per cluster up to this many clusters.
MAX_BARS = 100
RASTERIZE_TREE_NODES = 400
SAVE_RC = {"svg.hashsalt": "embclust", "svg.fonttype": "path"}

# Qualitative tables the palette picks from; tab10 leads, so small results look familiar.
_TABLES = ["tab10", "Dark2", "Set1", "tab20", "tab20b", "tab20c", "Paired", "Set2", "Accent"]


def _lab(rgb):
    """CIE L*a*b* (D65) of sRGB colours in [0, 1], shape (n, 3)."""
    rgb = np.asarray(rgb, dtype=float)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _candidates():
    """Every colour of the tables once, without greys (grey means noise) and without
    colours too pale to see on white. (Computed once, kept as CANDIDATES below, so that
    the palette needs no matplotlib; tests/test_plots.py checks that they agree.)"""
    import matplotlib

    seen, out = set(), []
    for name in _TABLES:
        for c in matplotlib.colormaps[name].colors:
            c = tuple(round(float(v), 4) for v in c[:3])
            if c in seen or max(c) - min(c) < 0.12:
                continue
            if _lab([c])[0, 0] > 80:
                continue
            seen.add(c)
            out.append(c)
    return out


# _candidates() with matplotlib 3.x's tables, rounded to 4 decimals.
CANDIDATES = [
    (0.1216, 0.4667, 0.7059), (1.0, 0.498, 0.0549), (0.1725, 0.6275, 0.1725), (0.8392, 0.1529, 0.1569),
    (0.5804, 0.4039, 0.7412), (0.549, 0.3373, 0.2941), (0.8902, 0.4667, 0.7608), (0.7373, 0.7412, 0.1333),
    (0.0902, 0.7451, 0.8118), (0.1059, 0.6196, 0.4667), (0.851, 0.3725, 0.0078), (0.4588, 0.4392, 0.702),
    (0.9059, 0.1608, 0.5412), (0.4, 0.651, 0.1176), (0.902, 0.6706, 0.0078), (0.651, 0.4627, 0.1137),
    (0.8941, 0.102, 0.1098), (0.2157, 0.4941, 0.7216), (0.302, 0.6863, 0.2902), (0.5961, 0.3059, 0.6392),
    (1.0, 0.498, 0.0), (0.651, 0.3373, 0.1569), (0.9686, 0.5059, 0.749), (0.6824, 0.7804, 0.9098),
    (1.0, 0.5961, 0.5882), (0.7725, 0.6902, 0.8353), (0.7686, 0.6118, 0.5804), (0.2235, 0.2314, 0.4745),
    (0.3216, 0.3294, 0.6392), (0.4196, 0.4314, 0.8118), (0.6118, 0.6196, 0.8706), (0.3882, 0.4745, 0.2235),
    (0.549, 0.6353, 0.3216), (0.7098, 0.8118, 0.4196), (0.549, 0.4275, 0.1922), (0.7412, 0.6196, 0.2235),
    (0.9059, 0.7294, 0.3216), (0.5176, 0.2353, 0.2235), (0.6784, 0.2863, 0.2902), (0.8392, 0.3804, 0.4196),
    (0.9059, 0.5882, 0.6118), (0.4824, 0.2549, 0.451), (0.6471, 0.3176, 0.5804), (0.8078, 0.4275, 0.7412),
    (0.8706, 0.6196, 0.8392), (0.1922, 0.5098, 0.7412), (0.4196, 0.6824, 0.8392), (0.6196, 0.7922, 0.8824),
    (0.902, 0.3333, 0.051), (0.9922, 0.5529, 0.2353), (0.9922, 0.6824, 0.4196), (0.1922, 0.6392, 0.3294),
    (0.4549, 0.7686, 0.4627), (0.4588, 0.4196, 0.6941), (0.6196, 0.6039, 0.7843), (0.7373, 0.7412, 0.8627),
    (0.1216, 0.4706, 0.7059), (0.2, 0.6275, 0.1725), (0.9843, 0.6039, 0.6), (0.8902, 0.102, 0.1098),
    (0.7922, 0.698, 0.8392), (0.4157, 0.2392, 0.6039), (0.6941, 0.349, 0.1569), (0.4, 0.7608, 0.6471),
    (0.9882, 0.5529, 0.3843), (0.5529, 0.6275, 0.7961), (0.9059, 0.5412, 0.7647), (0.498, 0.7882, 0.498),
    (0.7451, 0.6824, 0.8314), (0.2196, 0.4235, 0.6902), (0.9412, 0.0078, 0.498), (0.749, 0.3569, 0.0902),
]


def _hex(rgb):
    """matplotlib.colors.to_hex of an RGB triple in [0, 1]."""
    return "#" + "".join(format(round(v * 255), "02x") for v in rgb)


def palette(n):
    """n colours as hex strings, each as far (in L*a*b*) from those before it as the
    tables allow: tab10 first, then greedy max-min distance, so clusters beyond 10 stay
    distinguishable. Past the tables' size colours repeat (ids on the plot tell them apart)."""
    pool = CANDIDATES
    lab = _lab(pool)
    chosen = list(range(min(9, len(pool))))  # tab10 without its grey
    while len(chosen) < min(n, len(pool)):
        dist = np.min(np.linalg.norm(lab[:, None, :] - lab[None, chosen, :], axis=2), axis=1)
        dist[chosen] = -1
        chosen.append(int(np.argmax(dist)))
    hexes = [_hex(pool[i]) for i in chosen]
    return [hexes[i % len(hexes)] for i in range(n)]


def describe(settings):
    """A title that states the settings, from the parsed path names (see paths.py)."""
    lines = [f"{settings['dataset']}"]
    pooling = settings.get("pooling")
    if pooling:
        p = pooling["method"]
        if p == "flatten":
            p = f"flatten ({pooling['frames'] or 'longest'} frames)"
        lines[0] += f": {p} pooling"
        if pooling.get("frames_per_second"):
            lines[0] += f" of the audio's frames ({pooling['frames_per_second']}/s)"
        elif pooling.get("detect"):
            lines[0] += " of the frames before the padding"
    reducer = settings.get("reducer")
    if reducer:
        r = reducer["method"]
        lines[0] += {
            "none": ", no reduction",
            "pca": f", PCA to {reducer.get('dim')} dims",
            "umap": f", UMAP to {reducer.get('dim')} dims ({reducer.get('metric')}, seed {reducer.get('seed')})",
        }[r]
    parts = []
    clusterer = settings.get("clusterer")
    if clusterer:
        c = clusterer
        if c["algorithm"] == "hdbscan":
            parts.append(f"HDBSCAN min_cluster_size={c['min_cluster_size']} min_samples={c['min_samples']} {c['metric']}")
        else:
            parts.append(f"spectral k={c['n_clusters']} {c['metric']} seed {c['seed']}")
    layout = settings.get("layout")
    if layout:
        parts.append("PCA layout" if layout["method"] == "pca" else f"UMAP layout ({layout['metric']}, seed {layout['seed']})")
    if parts:
        lines.append("; ".join(parts))
    return "\n".join(lines)


def save(fig, png, svg):
    """PNG and SVG with no software/date metadata and fixed SVG ids, so equal inputs give equal bytes."""
    plt = _pyplot()
    with plt.rc_context(SAVE_RC):
        fig.savefig(png, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)


# Where `place` tries a label: rings around its start, out to this many label sizes,
# 16 directions each. A label with no free spot within them stays at its start.
PLACE_RINGS = np.arange(0, 12.25, 0.25)


def place(starts, size, order=None):
    """Label centres (axes fractions), each the free spot nearest its start: boxes of
    `size` (w, h) do not overlap and stay inside the axes. Labels are placed in `order`
    (the first keeps its start); each tries rings around its start, nearest first, so
    no label drifts further than the crowd around it forces."""
    starts = np.array(starts, dtype=float).reshape(-1, 2)
    w, h = size
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    # Rings in label sizes: r widths across, r heights up and down.
    offsets = np.concatenate([[[0.0, 0.0]]] + [np.column_stack([np.cos(angles) * r * w, np.sin(angles) * r * h])
                                              for r in PLACE_RINGS[1:]])
    lo, hi = np.array([w / 2, h / 2]), np.array([1 - w / 2, 1 - h / 2])
    placed = np.empty_like(starts)
    done = []
    for i in range(len(starts)) if order is None else order:
        candidates = np.clip(starts[i] + offsets, lo, hi)
        if done:
            others = placed[done]
            d = np.abs(candidates[:, None, :] - others[None, :, :])
            free = ~np.any((d[:, :, 0] < w) & (d[:, :, 1] < h), axis=1)
        else:
            free = np.ones(len(candidates), bool)
        placed[i] = candidates[np.argmax(free)] if free.any() else candidates[0]
        done.append(i)
    return placed


def largest_clusters(labels, n):
    """Ids of the n largest clusters (ties: lower id), in id order."""
    sizes = np.bincount(labels[labels >= 0], minlength=int(labels.max(initial=-1)) + 1)
    return np.sort(np.argsort(-sizes, kind="stable")[:n])


# A cluster name longer than this is cut, with "…", so that a label stays a label.
NAME_CHARS = 24


def cluster_label(c, names):
    """Cluster c's label: its id, and its name (cut to NAME_CHARS) when cluster_names gives one."""
    name = (names or {}).get(int(c))
    if not name:
        return str(c)
    return f"{c}: {name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + '…'}"


def scatter(layout, labels, probabilities, title, names=None):
    """The layout figure: noise below, grey and small; clusters above with ids (and
    names, given `names`, {cluster: name}) at their centres (of the MAX_LABELS largest
    when there are more)."""
    import matplotlib.colors

    fig, ax = _pyplot().subplots(figsize=(7.5, 6.5), dpi=150)
    noise = labels < 0
    # Past RASTERIZE_POINTS the SVG carries the points as one image (text stays vector).
    rasterized = len(labels) > RASTERIZE_POINTS
    ax.scatter(layout[noise, 0], layout[noise, 1], s=3, c=NOISE_COLOUR, alpha=0.5, linewidths=0, rasterized=rasterized)
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    colours = palette(n_clusters)
    # One draw call for every clustered point: weak members fade, so cluster cores
    # stand out, and strong members are drawn last.
    clustered = np.flatnonzero(~noise)
    order = clustered[np.lexsort((labels[clustered], probabilities[clustered]))]
    rgba = np.array([matplotlib.colors.to_rgba(c) for c in colours]).reshape(-1, 4)[labels[order]]
    rgba[:, 3] = 0.3 + 0.7 * np.clip(probabilities[order], 0, 1)
    ax.scatter(layout[order, 0], layout[order, 1], s=9, c=rgba, linewidths=0, rasterized=rasterized)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.margins(0.04)
    ax.set_title(title, fontsize=9)
    named = largest_clusters(labels, MAX_LABELS)
    ax.text(0.0, -0.02, f"{len(labels)} files, {n_clusters} clusters, {noise.mean() if len(labels) else 0:.0%} noise "
            "(small grey points); fainter points have weaker membership"
            + (f"; ids of the {len(named)} largest clusters shown" if len(named) < n_clusters else "")
            + (f"; {len(names)} clusters named (cluster_names)" if names else ""),
            transform=ax.transAxes, fontsize=7.5, va="top")
    if n_clusters:
        # Fixes the axes limits (the pending autoscale), so data can become axes fractions;
        # a whole draw (fig.canvas.draw) would render every point once more for that.
        ax.get_xlim()
        to_axes = ax.transData + ax.transAxes.inverted()
        bbox = ax.get_window_extent()
        texts = {c: cluster_label(c, names) for c in named}
        digits = max(len(t) for t in texts.values()) if texts else 1
        size = np.array([(7 + 5.5 * digits) * fig.dpi / 72 / bbox.width, 13 * fig.dpi / 72 / bbox.height])
        anchors, starts, counts = [], [], []
        by_cluster = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[by_cluster], np.arange(n_clusters + 1))
        for c in named:
            pts = to_axes.transform(layout[by_cluster[bounds[c] : bounds[c + 1]]])
            centre = np.median(pts, axis=0)
            anchors.append(centre)
            counts.append(len(pts))
            lo, hi = np.percentile(pts, [10, 90], axis=0)
            # A label at the centre of a small or thin cluster would hide it: put it just
            # above its core, the half of its points nearest its centre (never above a
            # stray member, which may lie anywhere in the figure).
            big = np.all(hi - lo > 3 * size)
            distance = np.hypot(*(pts - centre).T)
            core = pts[distance <= np.median(distance)]
            starts.append(centre if big else [centre[0], core[:, 1].max() + 0.7 * size[1]])
        anchors = np.array(anchors)
        # The largest clusters choose their spots first.
        placed = place(starts, size, order=np.argsort(-np.array(counts), kind="stable"))
        for c, anchor, pos in zip(named, anchors, placed):
            far = np.hypot(*((pos - anchor) / size)) > 1.2
            ax.annotate(texts[c], anchor, xytext=pos, xycoords="axes fraction", textcoords="axes fraction",
                        ha="center", va="center", fontsize=8, weight="bold", color="black",
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=colours[c], lw=1.2, alpha=0.85),
                        arrowprops=dict(arrowstyle="-", color=colours[c], lw=0.8) if far else None)
    fig.tight_layout()
    return fig


def sizes_by_rank(counts, noise, title):
    """Cluster sizes largest first, on log axes: with hundreds of clusters a bar each
    is unreadable (and slow, a patch per bar), while the shape of the size
    distribution (a power law is a straight line) is what can be read."""
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.2), dpi=150)
    ranked = np.sort(counts)[::-1]
    ax.step(np.arange(1, len(ranked) + 1), ranked, where="mid", color="#4c72b0", lw=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cluster rank (largest first)")
    ax.set_ylabel("files")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=9)
    ax.text(0.99, 0.97, f"{len(counts)} clusters, median {int(np.median(ranked))} files, largest {ranked[0]}; "
            f"noise: {noise} files", transform=ax.transAxes, ha="right", va="top", fontsize=7.5)
    fig.tight_layout()
    return fig


def sizes(labels, title, names=None):
    """Files per cluster, noise first in grey, counts on the bars, clusters by id (and
    name, given `names`); above MAX_BARS clusters, the sizes by rank."""
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels[labels >= 0], minlength=n_clusters) if n_clusters else np.zeros(0, int)
    if n_clusters > MAX_BARS:
        return sizes_by_rank(counts, int((labels < 0).sum()), title)
    ticks = ["noise"] + [cluster_label(c, names) for c in range(n_clusters)]
    values = np.concatenate([[int((labels < 0).sum())], counts])
    colours = [NOISE_COLOUR] + palette(n_clusters)
    fig, ax = _pyplot().subplots(figsize=(min(4 + 0.32 * len(ticks), 16), 4.2), dpi=150)
    x = np.arange(len(ticks))
    ax.bar(x, values, color=colours, edgecolor="#444444", linewidth=0.4)
    step = max(1, int(np.ceil(len(ticks) / 45)))
    # Names are longer than ids: turned upright, as are many ids.
    ax.set_xticks(x[::step], ticks[::step], fontsize=7, rotation=90 if len(ticks) > 25 or names else 0)
    if len(ticks) <= 45:
        for xi, v in zip(x, values):
            ax.annotate(str(v), (xi, v), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=6.5)
    ax.set_xlabel("cluster" + (f" ({len(names)} named by cluster_names)" if names else ""))
    ax.set_ylabel("files")
    ax.set_xlim(-0.7, len(ticks) - 0.3)
    ax.set_ylim(0, max(values.max(), 1) * 1.12)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _leaves_in_order(parents, children, root):
    """Leaf clusters of the cluster tree, depth first, children in the tree's row order."""
    kids = {}
    for parent, child in zip(parents.tolist(), children.tolist()):
        kids.setdefault(parent, []).append(child)
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node in kids:
            stack.extend(reversed(kids[node]))
        else:
            out.append(node)
    return out


def icicle_data(condensed_tree, max_rectangle_per_icicle=20):
    """The bars, split lines and cluster bounds of HDBSCAN's icicle plot, as
    hdbscan.plots.CondensedTree.get_plot_data(leaf_separation=1) computes them, without
    importing hdbscan (and with it scikit-learn: seconds of a figure job's start-up).
    Rows of a cluster are taken once each (one sort), not by a scan of the tree per cluster."""
    ct = condensed_tree
    parent, child, lam, size = ct["parent"], ct["child"], ct["lambda_val"], ct["child_size"]
    root, last_leaf = int(parent.min()), int(parent.max())
    split = size > 1
    leaves = _leaves_in_order(parent[split], child[split], root) if split.any() else [root]
    x = {leaf: float(i) for i, leaf in enumerate(leaves)}
    y = {root: 0.0}
    order = np.argsort(parent, kind="stable")
    starts = np.searchsorted(parent[order], np.arange(root, last_leaf + 2))
    rows_of = {c: order[starts[c - root]: starts[c - root + 1]] for c in range(root, last_leaf + 1)}
    for c in range(last_leaf, root - 1, -1):
        rows = rows_of[c]
        sub = rows[split[rows]]
        if len(sub) > 1:
            left, right = child[sub[0]], child[sub[1]]
            x[c] = float(np.mean([x[left], x[right]]))
            y[left], y[right] = lam[sub[0]], lam[sub[1]]
    scaling = size[rows_of[root]].sum()
    centres, tops, bottoms, widths, bounds = [], [], [], [], {}
    for c in range(last_leaf, root - 1, -1):
        rows = rows_of[c]
        c_lam, c_size = lam[rows], size[rows]
        current_size, current_lambda = c_size.sum(), y[c]
        max_lambda = c_lam.max()
        step = float(current_size - c_size[c_lam == max_lambda].sum()) / max_rectangle_per_icicle
        bounds[c] = [x[c] * scaling - current_size / 2.0, x[c] * scaling + current_size / 2.0, y[c], max_lambda]
        last_size, last_lambda = current_size, current_lambda
        for i in np.argsort(c_lam):
            if c_lam[i] != current_lambda and (last_size - current_size > step or c_lam[i] == max_lambda):
                centres.append(x[c] * scaling)
                tops.append(c_lam[i] - last_lambda)
                bottoms.append(last_lambda)
                widths.append(last_size)
                last_size, last_lambda = current_size, current_lambda
            current_size -= c_size[i]
            current_lambda = c_lam[i]
    line_xs, line_ys = [], []
    for p, ch, sz in zip(parent[split], child[split], size[split]):
        sign = np.sign(x[ch] - x[p])
        line_xs.append([x[p] * scaling, x[ch] * scaling + sign * (sz / 2.0)])
        line_ys.append([y[ch], y[ch]])
    return {"bar_centers": centres, "bar_tops": tops, "bar_bottoms": bottoms, "bar_widths": widths,
            "line_xs": line_xs, "line_ys": line_ys, "cluster_bounds": bounds}


def tree(condensed_tree, labels, title):
    """hdbscan's condensed-tree icicle plot: bar width is the files still in a
    branch; the selected clusters are ringed in their scatter colours and named by
    id (the MAX_LABELS largest when there are more). Drawn from hdbscan's plot data
    (icicle_data), but as one collection of bars and one of rings: a patch per bar (as
    hdbscan draws it) takes minutes at thousands of clusters."""
    import matplotlib.patches
    from matplotlib.collections import LineCollection, PatchCollection, PolyCollection

    fig, ax = _pyplot().subplots(figsize=(8, 5.5), dpi=150)
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    if len(condensed_tree) == 0:
        ax.text(0.5, 0.5, "no condensed tree", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        return fig
    n_nodes = int((condensed_tree["child_size"] > 1).sum()) + 1
    # Fewer bars per branch when there are thousands of branches.
    data = icicle_data(condensed_tree, max_rectangle_per_icicle=int(np.clip(20_000 // n_nodes, 2, 20)))
    left = np.asarray(data["bar_centers"]) - np.asarray(data["bar_widths"]) / 2
    right = left + np.asarray(data["bar_widths"])
    bottom = np.asarray(data["bar_bottoms"])
    top = bottom + np.asarray(data["bar_tops"])
    bars = np.stack([np.column_stack(c) for c in ((left, bottom), (right, bottom), (right, top), (left, top))], axis=1)
    # Past RASTERIZE_TREE_NODES the SVG holds bars, lines and rings as one image:
    # everything below zorder 1 is rasterized together.
    z = 0.5 if n_nodes > RASTERIZE_TREE_NODES else 1.5
    ax.set_rasterization_zorder(1)
    ax.add_collection(PolyCollection(bars, facecolors="black", linewidths=0, zorder=z))
    lines = [np.column_stack([xs, ys]) for xs, ys in zip(data["line_xs"], data["line_ys"])]
    ax.add_collection(LineCollection(lines, colors="black", linewidths=1, zorder=z))
    finite = np.concatenate([bottom, top])
    finite = finite[np.isfinite(finite)]
    ax.set_xlim(min(left.min(), 0), right.max())
    ax.set_ylim(finite.min(), finite.max())
    if n_clusters:
        # hdbscan's rings, its sizes: twice the cluster's width, 1.2 x its height (at
        # least a tenth of the plot's middle 80% of lambda); ids above the rings.
        min_height = 0.1 * np.diff(np.percentile(finite, [10, 90]))[0]
        named = set(largest_clusters(labels, MAX_LABELS).tolist())
        rings, colours, ring_tops = [], palette(n_clusters), {}
        for c, node in enumerate(selected_clusters(condensed_tree, labels)):
            l, r, b, t = data["cluster_bounds"][node]
            height = max(t - b if np.isfinite(t - b) else 10 * min_height, min_height)
            x, y = (l + r) / 2, (b + t) / 2 if np.isfinite(b + t) else (finite.min() + finite.max()) / 2
            rings.append(matplotlib.patches.Ellipse((x, y), 2.0 * (r - l), 1.2 * height))
            if c in named:
                ring_tops[c] = (x, y - 0.6 * height)  # λ grows downwards: the ring's top is its smallest λ
        ax.add_collection(PatchCollection(rings, facecolors="none", edgecolors=colours,
                                       linewidths=2 if n_clusters <= MAX_LABELS else 0.8, zorder=z))
        # Room above the highest ring for a row of ids, inside the axes.
        highest = min([finite.min()] + [y for _, y in ring_tops.values()])
        ax.set_ylim(highest - 0.08 * (finite.max() - highest), finite.max())
    ax.set_xticks([])
    ax.spines[["right", "top", "bottom"]].set_visible(False)
    ax.invert_yaxis()
    ax.set_ylabel("λ = 1 / distance")
    ax.set_xlabel("clusters (bar width: files still in the cluster)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if n_clusters:
        _name_rings(fig, ax, ring_tops, labels, colours)
    return fig


def _name_rings(fig, ax, ring_tops, labels, colours):
    """Ids just above their rings, moved apart where they would overlap (`place`, the
    largest clusters first), with a line to a ring whose id had to move away."""
    import matplotlib.patheffects

    bbox = ax.get_window_extent()  # after the figure's layout: sizes in axes fractions depend on it
    digits = len(str(max(ring_tops)))
    size = np.array([(4 + 5 * digits) * fig.dpi / 72 / bbox.width, 11 * fig.dpi / 72 / bbox.height])
    to_axes = ax.transData + ax.transAxes.inverted()
    ids = list(ring_tops)
    anchors = to_axes.transform(np.array([ring_tops[c] for c in ids], dtype=float))
    starts = anchors + [0, 0.6 * size[1]]
    counts = np.bincount(labels[labels >= 0])[ids]
    placed = place(starts, size, order=np.argsort(-counts, kind="stable"))
    for c, anchor, pos in zip(ids, anchors, placed):
        far = np.hypot(*((pos - anchor) / size)) > 1.5
        ax.annotate(str(c), anchor, xytext=pos, xycoords="axes fraction", textcoords="axes fraction",
                    ha="center", va="center", fontsize=7.5, weight="bold", color=colours[c],
                    path_effects=[matplotlib.patheffects.withStroke(linewidth=2.5, foreground="white")],
                    arrowprops=dict(arrowstyle="-", color=colours[c], lw=0.6) if far else None)


def variance(ratio, title):
    """PCA: explained variance of each component (bars) and cumulative (line); ratio None
    (vectors with no variance, scripts/reduce.py) draws a figure that says so."""
    if ratio is None:
        fig, ax = _pyplot().subplots(figsize=(7, 4.2), dpi=150)
        ax.set_axis_off()
        ax.set_title(f"{title}\nthe pooled vectors have no variance (all identical): no share to show", fontsize=9)
        return fig
    ratio = np.asarray(ratio, dtype=float)
    k = np.arange(1, len(ratio) + 1)
    fig, ax = _pyplot().subplots(figsize=(7, 4.2), dpi=150)
    ax.bar(k, ratio * 100, color="#4c72b0", width=0.8, label="per component")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance (%)")
    ax.set_xlim(0.3, len(ratio) + 0.7)
    ax.spines[["top"]].set_visible(False)
    right = ax.twinx()
    right.plot(k, np.cumsum(ratio) * 100, color="#c44e52", marker="o", ms=2.5, lw=1.2, label="cumulative")
    right.set_ylabel("cumulative (%)", color="#c44e52")
    right.set_ylim(0, 100)
    right.spines[["top"]].set_visible(False)
    total = float(ratio.sum()) * 100
    # Never round up to a 100% that was not kept.
    kept = f"{total:.1f}" if total < 99.95 else f"{np.floor(total * 100) / 100:.2f}"
    ax.set_title(f"{title}\n{len(ratio)} components keep {kept}% of the variance", fontsize=9)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, ["per component", "cumulative"], loc="center right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def eigengap(values, title):
    """n_clusters=auto's evidence: the smallest Laplacian eigenvalues and the gaps between
    them, the chosen k's gap marked, with how much it stands out (cluster.gap_strength)."""
    from cluster import WEAK_GAP, gap_strength, no_eigengap

    values = np.asarray(values, dtype=float)
    fig, (top, bottom) = _pyplot().subplots(2, 1, figsize=(7, 5.2), dpi=150, sharex=True)
    index = np.arange(len(values))
    top.plot(index, values, marker="o", ms=3, lw=1, color="#4c72b0")
    top.set_ylabel("eigenvalue")
    top.spines[["top", "right"]].set_visible(False)
    ks = index[1:]  # the gap values[k] - values[k - 1] is the evidence for k clusters
    gaps = np.diff(values)
    if no_eigengap(values):
        k, note = 2, "no eigengap (the largest gap is the first): k = 2"
    else:
        k = int(np.argmax(gaps[1:])) + 2
        strength, other = gap_strength(values, k)
        note = f"k = {k}, its gap {strength:.2f}x the next largest" + (f" (k = {other})" if other else "")
        note += ": weak" if strength < WEAK_GAP else ""
    colours = ["#c44e52" if kk == k else "#8c8c8c" for kk in ks]
    bottom.bar(ks, gaps, color=colours, width=0.8)
    bottom.set_xlabel("k (number of clusters)")
    bottom.xaxis.set_major_locator(_pyplot().MaxNLocator(integer=True))
    bottom.set_ylabel("gap to the eigenvalue before")
    bottom.spines[["top", "right"]].set_visible(False)
    top.set_title(f"{title}\nsmallest Laplacian eigenvalues of the self-tuning graph\n{note}", fontsize=9)
    fig.tight_layout()
    return fig


def draw_result(clusters, layouts, settings, plots, sizes_paths, tree_paths=None, names=None):
    """Every figure of one result, in one process: the layout plot on each of `layouts`
    ({slug: 2-D array}) to `plots` ({slug: (png, svg)}), the cluster sizes to
    `sizes_paths` (png, svg) and, given `tree_paths`, HDBSCAN's condensed tree. `names`:
    {cluster: name} from cluster_names, or None. Returns {slug: the layout plot's
    cluster labels}, what it wrote on the clusters."""
    from paths import parse_layout

    labels = clusters["labels"]
    written = {}
    for slug, layout in layouts.items():
        fig = scatter(layout, labels, clusters["probabilities"], describe(dict(settings, layout=parse_layout(slug))),
                      names)
        written[slug] = [t.get_text() for t in fig.axes[0].texts if hasattr(t, "xyann")]  # the annotations
        save(fig, *plots[slug])
    save(sizes(labels, describe(settings), names), *sizes_paths)
    if tree_paths is not None:
        save(tree(clusters["condensed_tree"], labels, describe(settings)), *tree_paths)
    return written


def main(snakemake, log):
    out = snakemake.output
    if snakemake.rule == "variance":
        with open(snakemake.input.summary) as f:
            fig = variance(json.load(f)["explained_variance_ratio"], describe(snakemake.params.settings))
        return save(fig, out.png, out.svg)
    if snakemake.rule == "eigengap":
        values = np.load(snakemake.input.clusters)["eigenvalues"]
        return save(eigengap(values, describe(snakemake.params.settings)), out.png, out.svg)
    # figures, figures_spectral: the layout plots come first in the outputs, PNG then SVG per layout.
    slugs = snakemake.params.layouts
    clusters = np.load(snakemake.input.clusters)
    layouts = {slug: np.load(path) for slug, path in zip(slugs, snakemake.input.layouts)}
    plots = {slug: (out[2 * i], out[2 * i + 1]) for i, slug in enumerate(slugs)}
    tree_paths = (out.tree_png, out.tree_svg) if "tree_png" in out.keys() else None
    labels = clusters["labels"]
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    names = None
    if snakemake.input.get("names"):
        import names as cluster_names
        from _stage import read_ids

        names = cluster_names.load(snakemake.input.names, snakemake.params.result, read_ids(snakemake.input.ids)[0],
                                   n_clusters)
    written = draw_result(clusters, layouts, snakemake.params.settings, plots, (out.sizes_png, out.sizes_svg),
                          tree_paths, names)
    log.info(f"{snakemake.rule}: {len(labels)} files, {n_clusters} clusters, {len(slugs)} layouts")
    if names:
        # The labels the layout plots carry, in the log: the PNG cannot be searched for text.
        log.info(f"{len(names)} clusters named; layout plot labels: {' | '.join(next(iter(written.values()), []))}")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
