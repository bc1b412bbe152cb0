"""Provenance stage: what made a result, so it can be reproduced and cited.

Writes provenance.json (settings, digests, versions, processor) and methods.md, a methods
paragraph for a paper naming every step that made the result, with its settings,
the package versions, the seed, and references. Neither holds times or absolute
paths, so two runs of the same commit on the same inputs, on the same kind of
machine, write the same bytes.
"""

import hashlib
import json
import platform
import subprocess
from importlib import metadata

import numpy as np
from _stage import read_ids, read_json_files
from padding import PADDING_SAMPLE
from paths import parse_layout
from pool import PADDING_DISTANCE, WHISPER_FRAMES

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


def cpu_model():
    """The processor's model name (Linux's /proc/cpuinfo, else platform's), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        name = None
    return name or platform.processor() or None


def machine():
    """The processor and the BLAS libraries numpy and scipy load, with the kernels they
    chose for it: what decides the last bits of every matrix product, so results are
    byte-identical only between runs on the same kind of machine."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, so that it is listed)
    from threadpoolctl import threadpool_info

    blas = sorted({f"{d['internal_api']} {d['version']} ({d.get('architecture')})" for d in threadpool_info() if d["user_api"] == "blas"})
    return {"cpu": cpu_model(), "blas": blas}


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
    """The reduction as run: every parameter the reduce stage recorded in reduce.json
    (None: reduce=none), the variance shares summed. `dim` is the dimensions kept, which
    PCA clamps to what it can give; `requested_dim` is the setting the result's path
    names; UMAP's `n_neighbors` is the one it ran with. methods() states these, with no
    default of its own: what it says is what the stage recorded."""
    if summary is None:
        return {"method": "none"}
    out = {k: v for k, v in summary.items() if k != "explained_variance_ratio"}
    if "explained_variance_ratio" in summary:
        # null when the vectors have no variance (scripts/reduce.py): no share to state.
        ratio = summary["explained_variance_ratio"]
        out["explained_variance"] = None if ratio is None else round(sum(ratio), 6)
    return out


def provenance(settings, ids, pooled_matrix_path, commit, reduce_summary=None, version=None, frames_pooled=None):
    return {
        "workflow_version": version,
        "settings": settings,
        # What pooling kept of the frames (scripts/merge_pool.py frames_kept).
        "frames_pooled": frames_pooled,
        "reduction": reduction(reduce_summary),
        "n_inputs": len(ids),
        "input_ids_sha256": sha256_lines(ids),
        "pooled_matrix_sha256": sha256_file(pooled_matrix_path),
        "versions": versions(),
        "machine": machine(),
        "workflow_commit": commit,
    }


# ---- methods.md ------------------------------------------------------------------

CALINSKI_HARABASZ = (
    "Caliński, T., & Harabasz, J. (1974). A dendrite method for cluster analysis. *Communications in "
    "Statistics*, 3(1), 1-27. https://doi.org/10.1080/03610927408827101"
)
REFERENCES = {
    "pca": [
        "Pearson, K. (1901). On lines and planes of closest fit to systems of points in space. "
        "*The London, Edinburgh, and Dublin Philosophical Magazine and Journal of Science*, 2(11), 559-572. "
        "https://doi.org/10.1080/14786440109462720",
        "Jolliffe, I. T., & Cadima, J. (2016). Principal component analysis: a review and recent developments. "
        "*Philosophical Transactions of the Royal Society A*, 374(2065), 20150202. https://doi.org/10.1098/rsta.2015.0202",
    ],
    "umap": [
        "McInnes, L., Healy, J., & Melville, J. (2018). UMAP: Uniform Manifold Approximation and Projection for "
        "Dimension Reduction. *arXiv:1802.03426*. https://arxiv.org/abs/1802.03426",
    ],
    "nndescent": [
        "Dong, W., Charikar, M., & Li, K. (2011). Efficient k-nearest neighbor graph construction for generic "
        "similarity measures. In *Proceedings of the 20th International Conference on World Wide Web*, 577-586. "
        "https://doi.org/10.1145/1963405.1963487",
    ],
    "hdbscan": [
        "Campello, R. J. G. B., Moulavi, D., & Sander, J. (2013). Density-based clustering based on hierarchical "
        "density estimates. In *Advances in Knowledge Discovery and Data Mining (PAKDD 2013)*, LNCS 7819, 160-172. "
        "Springer. https://doi.org/10.1007/978-3-642-37456-2_14",
        "McInnes, L., Healy, J., & Astels, S. (2017). hdbscan: Hierarchical density based clustering. "
        "*Journal of Open Source Software*, 2(11), 205. https://doi.org/10.21105/joss.00205",
        "Campello, R. J. G. B., Moulavi, D., Zimek, A., & Sander, J. (2015). Hierarchical density estimates for data "
        "clustering, visualization, and outlier detection. *ACM Transactions on Knowledge Discovery from Data*, "
        "10(1), 5. https://doi.org/10.1145/2733381",
    ],
    "spectral": [
        "Ng, A. Y., Jordan, M. I., & Weiss, Y. (2002). On spectral clustering: Analysis and an algorithm. In "
        "*Advances in Neural Information Processing Systems 14*, 849-856. MIT Press.",
        "von Luxburg, U. (2007). A tutorial on spectral clustering. *Statistics and Computing*, 17(4), 395-416. "
        "https://doi.org/10.1007/s11222-007-9033-z",
        "Knyazev, A. V. (2001). Toward the optimal preconditioned eigensolver: Locally optimal block preconditioned "
        "conjugate gradient method. *SIAM Journal on Scientific Computing*, 23(2), 517-541. "
        "https://doi.org/10.1137/S1064827500366124",
    ],
    "internal": [
        "Moulavi, D., Jaskowiak, P. A., Campello, R. J. G. B., Zimek, A., & Sander, J. (2014). Density-based "
        "clustering validation. In *Proceedings of the 2014 SIAM International Conference on Data Mining*, 839-847. "
        "https://doi.org/10.1137/1.9781611973440.96",
        "Rousseeuw, P. J. (1987). Silhouettes: a graphical aid to the interpretation and validation of cluster "
        "analysis. *Journal of Computational and Applied Mathematics*, 20, 53-65. "
        "https://doi.org/10.1016/0377-0427(87)90125-7",
        CALINSKI_HARABASZ,
        "Davies, D. L., & Bouldin, D. W. (1979). A cluster separation measure. *IEEE Transactions on Pattern "
        "Analysis and Machine Intelligence*, PAMI-1(2), 224-227. https://doi.org/10.1109/TPAMI.1979.4766909",
    ],
    "labels": [
        "Hubert, L., & Arabie, P. (1985). Comparing partitions. *Journal of Classification*, 2(1), 193-218. "
        "https://doi.org/10.1007/BF01908075",
        "Vinh, N. X., Epps, J., & Bailey, J. (2010). Information theoretic measures for clusterings comparison: "
        "Variants, properties, normalization and correction for chance. *Journal of Machine Learning Research*, "
        "11, 2837-2854.",
        "Strehl, A., & Ghosh, J. (2002). Cluster ensembles: A knowledge reuse framework for combining multiple "
        "partitions. *Journal of Machine Learning Research*, 3, 583-617.",
        "Rosenberg, A., & Hirschberg, J. (2007). V-measure: A conditional entropy-based external cluster evaluation "
        "measure. In *Proceedings of EMNLP-CoNLL 2007*, 410-420.",
    ],
    "software": [
        "Pedregosa, F., Varoquaux, G., Gramfort, A., Michel, V., Thirion, B., Grisel, O., et al. (2011). "
        "Scikit-learn: Machine learning in Python. *Journal of Machine Learning Research*, 12, 2825-2830.",
        "Mölder, F., Jablonski, K. P., Letcher, B., Hall, M. B., Tomkins-Tinch, C. H., Sochat, V., et al. (2021). "
        "Sustainable data analysis with Snakemake. *F1000Research*, 10, 33. https://doi.org/10.12688/f1000research.29032.2",
    ],
    "auto_k": [
        "Zelnik-Manor, L., & Perona, P. (2004). Self-tuning spectral clustering. In *Advances in Neural Information "
        "Processing Systems 17*, 1601-1608. MIT Press.",
    ],
    "selection": [CALINSKI_HARABASZ],
}

METRIC_WORDS = {
    "euclidean": "euclidean distance",
    "cosine": "cosine distance (computed as euclidean distance between L2-normalised vectors, which orders "
    "pairs identically)",
}


def pooling_sentence(s, n_items, width, frames_pooled=None):
    method = s["pooling"]
    if method == "flatten":
        frames = s.get("flatten_frames")
        kept = f"its first {frames} frames" if frames else "as many frames as the longest file has"
        text = (
            f"Each of the {n_items} embeddings was flattened into one {width}-dimensional vector: {kept} "
            "were concatenated, shorter files zero-padded"
        )
    else:
        how = {
            "mean": "averaged over its frames (mean pooling)",
            "max": "max-pooled over its frames (the largest value of each dimension)",
            "meanstd": "summarised by the mean and the standard deviation of its frames, concatenated",
        }[method]
        text = f"Each of the {n_items} embeddings was {how} into one {width}-dimensional vector"
    if s.get("trim_padding"):
        text += (
            f", using only the frames that cover the clip's audio (the first ceil(duration x "
            f"{s['frames_per_second']}) frames, the duration read from its audio file)"
        )
    if s.get("detect_padding"):
        text += (
            f", using for each file of {WHISPER_FRAMES} frames (Whisper's 30-s window) only the frames before its padding: "
            f"the end that best separates the frames farther than {PADDING_DISTANCE:g} (relative distance) from Whisper's "
            f"padding at their position (a template, at each position the densest of a fixed sample of up to "
            f"{PADDING_SAMPLE} files' frames) from those nearer"
        )
    text += "."
    f = frames_pooled or {}
    if f.get("by_audio") or f.get("by_frames"):
        least, median, most = f["frames_kept"]
        ways = [f"{f['by_audio']} by their audio's duration"] if f.get("by_audio") else []
        ways += [f"{f['by_frames']} by the padding found in their frames"] if f.get("by_frames") else []
        text += (
            f" Of the {f['files']} files, {' and '.join(ways)} were trimmed, and {f['untrimmed']} kept all their frames; "
            f"a median of {median:g} frames per file was pooled (range {least}-{most})."
        )
    return text


def reduction_sentence(r, width, seed_words, cited):
    if r["method"] == "none":
        return f"The {width}-dimensional vectors were clustered without dimensionality reduction."
    if r["method"] == "pca":
        cited.append("pca")
        n, w = r["input_shape"]
        from reduce import COVARIANCE_EIGH_MAX_WIDTH, uses_gram

        if uses_gram(n, w):
            how = "computed exactly from the eigendecomposition of the centred Gram matrix"
        elif w <= COVARIANCE_EIGH_MAX_WIDTH:
            how = "computed exactly from the eigendecomposition of the covariance matrix"
        else:
            how = "computed by randomized singular value decomposition (random_state=0)"
        if r["explained_variance"] is None:
            kept = f" ({how}; the vectors have no variance, all being identical, so no share of it is stated)"
        else:
            kept = f", which kept {r['explained_variance']:.1%} of the variance ({how})"
        text = (
            f"They were reduced by principal component analysis (PCA; Pearson, 1901; Jolliffe & Cadima, 2016) to "
            f"{r['dim']} components{kept}"
        )
        if r["dim"] < r["requested_dim"]:
            text += (
                f"; {r['requested_dim']} components were requested, but PCA of {n} vectors of width {w} "
                f"gives at most {min(n, w)}"
            )
        return text + "."
    cited.append("umap")
    seed_words.append((r["seed"], "the UMAP reduction"))
    return (
        f"They were reduced by UMAP (McInnes, Healy & Melville, 2018) to {r['dim']} dimensions "
        f"(n_neighbors={r['n_neighbors']}, {r['metric']} metric, other parameters at umap-learn's defaults, "
        f"random_state={r['seed']}, single-threaded so that the result is deterministic)."
    )


def clustering_sentences(s, n_items, n_clusters_used, seed_words, cited, no_gap=False):
    from cluster import AUTO_K_DIMS, AUTO_K_NEIGHBOURS, AUTO_K_SCALE_NEIGHBOUR, EIGENGAP_MAX_K, SPECTRAL_NEIGHBOURS
    from neighbours import BOUNDARY_POINTS, CENTROID_NEIGHBOURS
    from neighbours import neighbour_count

    metric = METRIC_WORDS[s["metric"]]
    if s["algorithm"] == "hdbscan":
        cited.append("hdbscan")
        k = neighbour_count(s["min_samples"])
        if s["neighbour_graph"] == "approximate":
            cited.append("nndescent")
            search = (
                f"Each vector's {k} approximate nearest neighbours in {metric} were found by NN-descent (Dong, Charikar "
                "& Li, 2011; pynndescent, random_state=0), and the neighbour graph's connected components were joined "
                f"by the closest pair among the {BOUNDARY_POINTS} points of each of two components nearest the other's "
                f"centroid, for components whose centroids are among each other's {CENTROID_NEIGHBOURS} nearest or "
                "joined in the centroids' minimum spanning tree."
            )
            tree = "the minimum spanning tree of mutual reachability distances over those edges"
        else:
            search = f"Each vector's {k} exact nearest neighbours in {metric} were found by brute force."
            tree = "the exact minimum spanning tree of mutual reachability distances was built from that neighbour graph by Borůvka's algorithm"
        return [
            search,
            "The vectors were clustered by HDBSCAN (Campello, Moulavi & Sander, 2013; McInnes, Healy & Astels, 2017) "
            f"with min_cluster_size={s['min_cluster_size']} and min_samples={s['min_samples']}, excess-of-mass "
            f"cluster selection and no single-cluster result: {tree}, and the hdbscan "
            "library condensed it, selected the clusters and scored outliers by GLOSH (Campello et al., 2015). "
            "Points in no cluster were labelled noise; soft memberships follow hdbscan's definition "
            "(all_points_membership_vectors).",
        ]
    cited.append("spectral")
    seed_words.append((s["seed"], "spectral clustering"))
    if s["n_clusters"] == "auto":
        cited += ["auto_k", "pca"]
        if no_gap:
            chosen = (
                f"the fewest spectral clustering makes, because the smallest eigenvalues of the normalised graph "
                f"Laplacian showed no eigengap (their largest gap was the first: the graph is one group, so "
                f"the data gave no number of clusters; von Luxburg, 2007)"
            )
        else:
            chosen = (
                f"chosen as the k in 2..{min(EIGENGAP_MAX_K, n_items - 1)} after which the gap between "
                f"consecutive smallest eigenvalues of the normalised graph Laplacian is largest (the eigengap "
                f"heuristic; von Luxburg, 2007)"
            )
        k = (
            f"k={n_clusters_used} clusters, {chosen}, the graph being a self-tuning one (Zelnik-Manor & Perona, 2004; "
            f"{AUTO_K_NEIGHBOURS} nearest neighbours, each vector's scale its distance to its "
            f"{AUTO_K_SCALE_NEIGHBOUR}th) of the pooled vectors reduced by PCA (Pearson, 1901) to at most {AUTO_K_DIMS} dimensions "
            f"and L2-normalised"
        )
    else:
        k = f"k={s['n_clusters']} clusters"
    return [
        f"The vectors were clustered by spectral clustering (Ng, Jordan & Weiss, 2002; von Luxburg, 2007) into {k}, "
        f"on the symmetrised {SPECTRAL_NEIGHBOURS}-nearest-neighbour connectivity graph in {metric}, with "
        f"scikit-learn's SpectralClustering (LOBPCG eigensolver, Knyazev, 2001; k-means label assignment; "
        f"random_state={s['seed']}). A vector's soft membership in a cluster is that cluster's share among the "
        f"vector and its {SPECTRAL_NEIGHBOURS} nearest neighbours.",
    ]


# What initialised a UMAP layout (scripts/layout.py, principal_init).
PRINCIPAL_INIT = "initialised from the clustered vectors' two leading principal components scaled to a ±10 box"


def layout_sentence(layouts, seed_words, cited, n_items=0, graph="exact"):
    from layout import SAMPLE_SIZE
    from layout import UMAP_NEIGHBOURS

    parts = []
    for layout in layouts:
        if layout["method"] == "pca":
            parts.append("the first two principal components")
        else:
            cited.append("umap")
            seed_words.append((layout["seed"], "the UMAP layout"))
            if n_items > SAMPLE_SIZE:
                parts.append(
                    f"UMAP (McInnes, Healy & Melville, 2018) of a random sample of {SAMPLE_SIZE:,} vectors "
                    f"({UMAP_NEIGHBOURS} exact nearest neighbours within the sample, {layout['metric']}, "
                    f"random_state={layout['seed']}; {PRINCIPAL_INIT}), every other vector placed at the inverse-distance weighted mean "
                    f"of the positions of its placed neighbours in the {graph} {layout['metric']} neighbour graph"
                )
            else:
                parts.append(
                    f"UMAP (McInnes, Healy & Melville, 2018; {UMAP_NEIGHBOURS} nearest neighbours from the {graph} "
                    f"{layout['metric']} neighbour graph, random_state={layout['seed']}; {PRINCIPAL_INIT})"
                )
    if not parts:
        return None
    return f"For the figures, the clustered vectors were laid out in two dimensions by {' and by '.join(parts)}."


def validation_sentence(s, cited):
    from metrics import SAMPLE

    cited.append("internal")
    text = (
        "The clustering was scored on its non-noise points by density-based cluster validation (DBCV; Moulavi et "
        "al., 2014), the silhouette coefficient (Rousseeuw, 1987) in the clustering's metric, and the "
        f"Calinski-Harabasz (1974) and Davies-Bouldin (1979) indices (silhouette and DBCV on a seeded random "
        f"sample of {SAMPLE:,} points when more were clustered)."
    )
    if s.get("labels"):
        cited.append("labels")
        text += (
            " It was compared with reference labels by the adjusted Rand index (Hubert & Arabie, 1985), adjusted "
            "and normalised mutual information (Vinh, Epps & Bailey, 2010; Strehl & Ghosh, 2002) and V-measure "
            "(Rosenberg & Hirschberg, 2007), on all labelled points (noise counted as one more cluster) and on "
            "the clustered ones."
        )
    return text


def seed_sentence(seed_words, settings, reduction):
    """Which steps took which random seed, and which are deterministic."""
    steps = {}
    for seed, step in seed_words:
        steps.setdefault(seed, []).append(step)
    used = {"PCA": reduction["method"] == "pca", "HDBSCAN": settings["algorithm"] == "hdbscan"}
    fixed = [name for name, ran in used.items() if ran]
    deterministic = f"{' and '.join(fixed)} {'are' if len(fixed) > 1 else 'is'} deterministic" if fixed else ""
    if not steps:
        return f"No step used a random seed: {deterministic}."
    seeds = "; ".join(f"{seed} for {' and '.join(names)}" for seed, names in steps.items())
    return f"The random seed (random_state) was {seeds}" + (f"; {deterministic}." if deterministic else ".")


def software_sentence(version, versions, used):
    names = ["numpy", "scipy", "scikit-learn", "hdbscan"] + [n for n in ("umap-learn", "matplotlib") if n in used]
    listed = ", ".join(f"{name} {versions.get(name)}" for name in names if versions.get(name))
    return (
        f"The analysis ran in embclust {version or '(unversioned)'}, a Snakemake workflow (Mölder et al., 2021), "
        f"with Python {versions['python']}, {listed} (scikit-learn: Pedregosa et al., 2011)."
    )


def methods(settings, reduction, n_items, width, versions, version, layouts=(), n_clusters_used=None, no_gap=False, frames_pooled=None):
    """methods.md: one paragraph naming every step that made the result, with its settings,
    the versions, the seed, and the references of the methods used."""
    seed_words, cited = [], []
    sentences = [pooling_sentence(settings, n_items, width, frames_pooled), reduction_sentence(reduction, width, seed_words, cited)]
    sentences += clustering_sentences(settings, n_items, n_clusters_used, seed_words, cited, no_gap)
    layout = layout_sentence(layouts, seed_words, cited, n_items, settings["neighbour_graph"])
    sentences += [layout] if layout else []
    sentences.append(validation_sentence(settings, cited))
    sentences.append(seed_sentence(seed_words, settings, reduction))
    used = {"umap-learn"} if "umap" in cited else set()
    used |= {"matplotlib"} if layouts else set()
    sentences.append(software_sentence(version, versions, used))
    cited.append("software")
    references = [ref for key in dict.fromkeys(cited) for ref in REFERENCES[key]]
    return "# Methods\n\n" + " ".join(sentences) + "\n\n## References\n\n" + "".join(f"- {r}\n" for r in references)


def main(snakemake, log):
    ids, _ = read_ids(snakemake.input.ids)
    summary = read_json_files([snakemake.input.reduce])[0] if snakemake.input.get("reduce") else None
    commit = git_commit(snakemake.scriptdir)
    with open(snakemake.input.frames) as f:
        frames_pooled = json.load(f)
    record = provenance(snakemake.params.settings, ids, snakemake.input.pooled, commit, summary, snakemake.params.version,
                        frames_pooled)  # fmt: skip
    with open(snakemake.output.provenance, "w") as f:
        json.dump(record, f, indent=1, allow_nan=False)
        f.write("\n")
    width = np.load(snakemake.input.pooled, mmap_mode="r").shape[1]
    # Spectral clustering's soft memberships have one column per cluster: the k that n_clusters=auto chose.
    clusters = np.load(snakemake.input.clusters)
    soft, values = clusters.get("soft"), clusters.get("eigenvalues")
    layouts = [parse_layout(slug) for slug in snakemake.params.layouts]
    from cluster import no_eigengap

    text = methods(record["settings"], record["reduction"], len(ids), width, record["versions"], snakemake.params.version,
                   layouts, None if soft is None else soft.shape[1], values is not None and no_eigengap(values), frames_pooled)  # fmt: skip
    with open(snakemake.output.methods, "w", encoding="utf-8") as f:
        f.write(text)


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
