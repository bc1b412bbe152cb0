"""Settings to path names and back: each stage's slug (the settings that matter to
it, and no others), their parsing, and the result and target paths of a run.

A result's path names exactly the settings that made it, so this module is the single
place that turns settings into path components and back. The figures and provenance
scripts import it (parse_layout), so the rules that run them name it as an input
(shared_code in workflow/rules/common.smk): a change here reruns them.
"""

import os
import re

from neighbours import neighbour_count


SLUG_PATTERNS = {
    "pooling": r"(?:(?P<method>mean|max|meanstd)|flatten-(?P<frames>\d+|longest))(?:-trim(?P<fps>\d+))?(?P<detect>-detect)?",
    "reducer": r"(?P<method>none)|(?P<pca>pca)-(?P<pca_dim>\d+)|umap-(?P<umap_dim>\d+)-(?P<metric>euclidean|cosine)-s(?P<seed>\d+)",
    "clusterer": (
        r"hdbscan-mcs(?P<mcs>\d+)-ms(?P<ms>\d+)-(?P<h_metric>euclidean|cosine)"
        r"|spectral-k(?P<k>\d+|auto)-(?P<s_metric>euclidean|cosine)-s(?P<s_seed>\d+)"
    ),
    "layout": r"(?P<pca>pca)|umap-(?P<metric>euclidean|cosine)-s(?P<seed>\d+)",
    "neighbours": r"(?P<metric>euclidean|cosine)-k(?P<k>\d+)(?P<approximate>-approx)?",
}


# The same patterns without group names, for Snakemake's wildcard_constraints.
WILDCARD_PATTERNS = {kind: re.sub(r"\(\?P<\w+>", "(?:", p) for kind, p in SLUG_PATTERNS.items()}


def pooling_slug(s):
    slug = f"flatten-{s['flatten_frames'] or 'longest'}" if s["pooling"] == "flatten" else s["pooling"]
    slug += f"-trim{s['frames_per_second']}" if s["trim_padding"] is True else ""
    return slug + ("-detect" if s.get("detect_padding") else "")


def reducer_slug(s):
    if s["reduce"] == "none":
        return "none"
    if s["reduce"] == "pca":
        # PCA is deterministic here (see scripts/reduce.py): no seed in its name.
        return f"pca-{s['reduce_dim']}"
    return f"umap-{s['reduce_dim']}-{s['metric']}-s{s['seed']}"


def clusterer_slug(s):
    if s["algorithm"] == "hdbscan":
        ms = s["min_samples"] if s["min_samples"] is not None else s["min_cluster_size"]
        return f"hdbscan-mcs{s['min_cluster_size']}-ms{ms}-{s['metric']}"
    return f"spectral-k{s['n_clusters']}-{s['metric']}-s{s['seed']}"


def neighbours_slug(metric, needed, approximate=False):
    """The neighbour graph (scripts/neighbours.py) with at least `needed` neighbours per point."""
    return f"{metric}-k{neighbour_count(needed)}" + ("-approx" if approximate else "")


def parse_neighbours(slug):
    g = _match("neighbours", slug)
    return {"metric": g["metric"], "k": int(g["k"]), "approximate": bool(g["approximate"])}


def layout_slug(s):
    """None when no plot is asked for."""
    if s["plot"] == "none":
        return None
    if s["plot"] == "pca":
        return "pca"
    # The layout shares the clustering's geometry (metric) but never its
    # cluster settings, so recolouring after a min_cluster_size change is free.
    return f"umap-{s['metric']}-s{s['seed']}"


def _match(kind, slug):
    m = re.fullmatch(SLUG_PATTERNS[kind], slug)
    if not m:
        raise ValueError(f"not a {kind} name: {slug!r}")
    return m.groupdict()


def parse_pooling(slug):
    g = _match("pooling", slug)
    out = {"method": g["method"] or "flatten", "frames": None, "frames_per_second": None, "detect": bool(g["detect"])}
    if g["frames"] and g["frames"] != "longest":
        out["frames"] = int(g["frames"])
    if g["fps"]:
        out["frames_per_second"] = int(g["fps"])  # set = trim padding by audio duration
    # detect: find Whisper's padding in the frames (scripts/padding.py)
    return out


def parse_reducer(slug):
    g = _match("reducer", slug)
    if g["method"]:
        return {"method": "none"}
    if g["pca"]:
        return {"method": "pca", "dim": int(g["pca_dim"])}
    return {"method": "umap", "dim": int(g["umap_dim"]), "metric": g["metric"], "seed": int(g["seed"])}


def parse_clusterer(slug):
    g = _match("clusterer", slug)
    if g["mcs"]:
        return {
            "algorithm": "hdbscan",
            "min_cluster_size": int(g["mcs"]),
            "min_samples": int(g["ms"]),
            "metric": g["h_metric"],
        }
    k = g["k"] if g["k"] == "auto" else int(g["k"])
    return {"algorithm": "spectral", "n_clusters": k, "metric": g["s_metric"], "seed": int(g["s_seed"])}


def parse_layout(slug):
    g = _match("layout", slug)
    if g["pca"]:
        return {"method": "pca"}
    return {"method": "umap", "metric": g["metric"], "seed": int(g["seed"])}


def result_dir(root, s):
    return f"{root}/{pooling_slug(s)}/{reducer_slug(s)}/{clusterer_slug(s)}"


def targets(root, combos):
    """Final files for every combination and for the dataset, deduplicated, in a stable order."""
    paths = []
    for s in combos:
        d = result_dir(root, s)
        paths += [f"{d}/{name}" for name in ("clusters_hard.json", "clusters_soft.json", "metrics.json", "provenance.json")]
        if s["algorithm"] == "spectral" and s["n_clusters"] == "auto":
            paths += [f"{d}/eigengap.png", f"{d}/eigengap.svg"]  # n_clusters=auto's evidence
        if layout_slug(s):
            paths += figure_targets(root, s)
    # A sweep is summarised (and its best picked) at the dataset level. A single result is
    # not, so that switching one setting back and forth leaves every file as it was.
    if len(results(root, combos)) > 1:
        paths += [f"{root}/summary.tsv", f"{root}/summary.png"]
        if combos[0]["selection"] == "auto":
            paths.append(f"{root}/best/selection.json")
            # The chosen result's map on each layout of the run, with per-file stability.
            paths += [f"{root}/best/map-{layout}.html" for layout in run_layouts(combos)]
    return list(dict.fromkeys(paths))


def relevant_settings(s):
    """The settings that shape one result, by config key (what its path names)."""
    out = {"pooling": s["pooling"]}
    if s["pooling"] == "flatten":
        out["flatten_frames"] = s["flatten_frames"]
    if s["trim_padding"]:
        out["trim_padding"] = True
        out["frames_per_second"] = s["frames_per_second"]
    if s.get("detect_padding"):
        out["detect_padding"] = True
    out["reduce"] = s["reduce"]
    if s["reduce"] != "none":
        out["reduce_dim"] = s["reduce_dim"]
    out["algorithm"] = s["algorithm"]
    if s["algorithm"] == "hdbscan":
        out["min_cluster_size"] = s["min_cluster_size"]
        out["min_samples"] = s["min_samples"] if s["min_samples"] is not None else s["min_cluster_size"]
    else:
        out["n_clusters"] = s["n_clusters"]
    out["metric"] = s["metric"]
    if s["reduce"] == "umap" or s["algorithm"] == "spectral":
        out["seed"] = s["seed"]
    return out


def results(root, combos):
    """One entry per distinct result: {"dir": path, "name": path under root, "settings": ...}."""
    seen = {}
    for s in combos:
        seen.setdefault(result_dir(root, s), relevant_settings(s))
    return [{"dir": d, "name": os.path.relpath(d, root), "settings": v} for d, v in seen.items()]


def run_layouts(combos):
    """Every 2-D layout slug of a run, sorted (none when plot=none)."""
    return sorted({layout_slug(s) for s in combos} - {None})


def figure_targets(root, s):
    """Figures (PNG and SVG) and the interactive map of one combination; plot=none draws none."""
    d, layout = result_dir(root, s), layout_slug(s)
    paths = [f"{d}/plot-{layout}.{ext}" for ext in ("png", "svg")]
    paths += [f"{d}/sizes.{ext}" for ext in ("png", "svg")]
    if s["algorithm"] == "hdbscan":
        paths += [f"{d}/tree.{ext}" for ext in ("png", "svg")]
    if s["reduce"] == "pca":
        paths += [f"{root}/{pooling_slug(s)}/{reducer_slug(s)}/variance.{ext}" for ext in ("png", "svg")]
    paths.append(f"{d}/map-{layout}.html")
    return paths


def result_settings(parts):
    """The config keys and values a result's folder names (pooling, reducer, clusterer slugs)."""
    pooling, reducer, clusterer = parse_pooling(parts[0]), parse_reducer(parts[1]), parse_clusterer(parts[2])
    out = {"pooling": pooling["method"]}
    if pooling["frames"] is not None:
        out["flatten_frames"] = pooling["frames"]
    if pooling["frames_per_second"] is not None:
        out["frames_per_second"] = pooling["frames_per_second"]
    if reducer["method"] != "none":
        out["reduce_dim"] = reducer["dim"]
    out.update({k: v for k, v in clusterer.items() if k != "algorithm"})
    out.update({k: v for k, v in reducer.items() if k in ("metric", "seed")})
    return out


def results_on_disk(root):
    """The results under root that a clustering has made (pooling/reducer/clusterer with clusters.npz)."""
    import glob

    found = glob.glob(os.path.join(glob.escape(root), "*", "*", "*", "clusters.npz"))
    return sorted(os.path.relpath(os.path.dirname(p), root) for p in found)


def assign_targets(root, target, name):
    """The assignment's outputs: <result or best>/assigned/<name>/..."""
    return [f"{root}/{target}/assigned/{name}/{file}" for file in ("clusters_hard.json", "clusters_soft.json", "provenance.json")]
