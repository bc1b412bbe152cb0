# Config validation, sweeps and path templates. Slugs come from scripts/paths.py, the one
# place that maps settings to paths and back; the config from scripts/configuration.py and
# auto_settings.py; the input files and their manifests from scripts/inputs.py and manifests.py.
import functools
import json
import os
import sys
import types

import numpy as np

# This workflow's own folder (the repository root). Not workflow.basedir: when another
# project's Snakefile uses this one as a module, that is the other project's folder.
# Files that Python code here opens are found from EMBCLUST_DIR; `script:`, `conda:` and
# report captions are relative to each .smk file, which Snakemake resolves by itself.
EMBCLUST_DIR = os.path.dirname(os.path.dirname(workflow.current_basedir.get_path_or_uri(secret_free=True)))
if not os.path.isdir(os.path.join(EMBCLUST_DIR, "scripts")):
    sys.exit(f"embclust: the workflow must be a local folder (a clone) to run; {EMBCLUST_DIR} is not one")
sys.path.insert(0, os.path.join(EMBCLUST_DIR, "scripts"))
sys.path.insert(0, os.path.join(EMBCLUST_DIR, "workflow"))
import auto_settings
import configuration
import inputs
import layout as layout_stage
import manifests
import paths
import pool
import names
from _stage import InputError, manifest_digest, read_manifest
from snakemake_exit import finish_quickly


def _say(note):
    print(f"embclust: {note}", file=sys.stderr)


def shared_code(*modules):
    """scripts/<module>.py for each module, as inputs of the rules whose scripts import them.

    Snakemake reruns a `script:` rule when its script is newer than the outputs, but not
    when a module the script imports changes: as an input, the module counts as the script
    does. tests/test_settings.py checks that each rule names the modules its script imports."""
    return [os.path.join(EMBCLUST_DIR, "scripts", f"{module}.py") for module in modules]


SCHEMA = configuration.load_schema(os.path.join(EMBCLUST_DIR, "workflow/schemas/config.schema.yaml"))

try:
    _validated = configuration.validate(config, SCHEMA)
    # The demo (the default embedding_dir) is in this folder, also when the working directory is another project's.
    configuration.find_in_workflow(_validated, EMBCLUST_DIR, _say if workflow.is_main_process else lambda note: None)
    inputs.check_paths(_validated)
    configuration.check_snakemake_paths(_validated)
    COMBOS = configuration.combinations(_validated, SCHEMA)
    OUT = f"{_validated['output_dir']}/{_validated['dataset']}"
    # Each pool job's files, in a manifest per shard (scripts/manifests.py), listed and
    # written once by the main process. A job that parses this file again (on a
    # cluster node) reads the manifests instead of listing every file.
    MANIFESTS = f"{OUT}/pooled/files"
    # The files trim_padding: auto makes Whisper's padding template of (scripts/padding.py).
    PADDING_SAMPLE = f"{OUT}/pooled/padding-sample.tsv"
    if workflow.is_main_process:
        SHARDS, AUDIO = manifests.prepare_inputs(_validated, COMBOS, MANIFESTS, _say)
    else:
        SHARDS, AUDIO = manifests.read_manifests(MANIFESTS)
    # reduce: auto and reduce_dim: auto depend on the number of files; pooling: auto and
    # trim_padding: auto on whether they look like Whisper's padded outputs.
    WHISPER_SHAPED = auto_settings.whisper_shaped(SHARDS, pool.header_problem)
    COMBOS = auto_settings.resolve_auto(COMBOS, sum(len(rows) for rows in SHARDS.values()), WHISPER_SHAPED)
    if workflow.is_main_process:
        if any(s["detect_padding"] for s in COMBOS):
            manifests.write_padding_sample(PADDING_SAMPLE, [row for rows in SHARDS.values() for row in rows])
        # Every file's header, before any job runs, so that all bad files are named in
        # one line (the pool jobs, one per shard, would each name only their own). The
        # files of a shard pooled from its current manifest were read by its pool job:
        # only the first one's header is read again, for the shard's width. A shard
        # pooled from another manifest (rewritten while it pooled) is pooled again.
        _shard_dirs = sorted({f"{OUT}/pooled/{paths.pooling_slug(s)}.shards" for s in COMBOS})
        _pooled, _stale = manifests.check_shards(SHARDS, MANIFESTS, _shard_dirs)
        if _stale:
            _say(
                f"pooling again {len(_stale)} shards whose manifest changed while they were pooled: {', '.join(_stale)}"
            )
        _width, _longest = pool.check_files(
            sorted(row.path for name, rows in SHARDS.items() if name not in _pooled for row in rows),
            pooled=[
                (pool.read_header(SHARDS[name][0].path)[1], [row.path for row in SHARDS[name]]) for name in _pooled
            ],
        )
    # New clips to place into an existing result (workflow/rules/assign.smk): their own
    # manifests, one per shard, as for embedding_dir.
    ASSIGN_TO = configuration.assign_result(_validated, OUT, COMBOS, SCHEMA)
    ASSIGN_SHARDS, ASSIGN_AUDIO = {}, {}
    if ASSIGN_TO is not None:
        ASSIGN_ROOT = f"{OUT}/assigned/{_validated['assign_name']}"
        if workflow.is_main_process:
            ASSIGN_SHARDS, ASSIGN_AUDIO = manifests.prepare_assign(
                _validated, f"{ASSIGN_ROOT}/files", _width, _say, pool.check_files
            )
            _dirs = sorted({f"{ASSIGN_ROOT}/pooled/{paths.pooling_slug(s)}.shards" for s in COMBOS})
            _stale = manifests.check_shards(ASSIGN_SHARDS, f"{ASSIGN_ROOT}/files", _dirs)[1]
            if _stale:
                _say(f"pooling again {len(_stale)} assign_dir shards whose manifest changed while they were pooled")
        else:
            ASSIGN_SHARDS, ASSIGN_AUDIO = manifests.read_manifests(f"{ASSIGN_ROOT}/files")
except (configuration.ConfigError, InputError) as e:
    sys.exit(f"embclust: {e}")
except OSError as e:  # permissions, a read-only file system, a full disk: one line, no traceback
    sys.exit(f"embclust: {manifests.os_error_line(e)}")
config.update(_validated)

TARGETS = paths.targets(OUT, COMBOS)
if ASSIGN_TO is not None:
    TARGETS += paths.assign_targets(OUT, ASSIGN_TO, config["assign_name"])
RESULTS = paths.results(OUT, COMBOS)
# The cluster_names files, each for the result its first line names (scripts/names.py).
try:
    NAMES_FILES = names.by_result(configuration.cluster_names_files(config), {r["name"] for r in RESULTS})
except InputError as e:
    sys.exit(f"embclust: {e}")

POOLED = f"{OUT}/pooled/{{pooling}}.npy"
POOLED_IDS = f"{OUT}/pooled/{{pooling}}.ids.tsv"
# What pooling kept of each file's frames (trimmed by audio, by the padding found, or not).
POOLED_FRAMES = f"{OUT}/pooled/{{pooling}}.frames.json"
PADDING_TEMPLATE = f"{OUT}/pooled/padding-template.npz"
SHARD = f"{OUT}/pooled/{{pooling}}.shards/{{shard}}"
REDUCED = f"{OUT}/{{pooling}}/{{reducer}}/reduced.npy"
REDUCE_SUMMARY = f"{OUT}/{{pooling}}/{{reducer}}/reduce.json"
REDUCER = f"{OUT}/{{pooling}}/{{reducer}}/reducer.npz"
LAYOUT = f"{OUT}/{{pooling}}/{{reducer}}/layout-{{layout}}.npy"
NEIGHBOURS = f"{OUT}/{{pooling}}/{{reducer}}/neighbours-{{neighbours}}.npz"
RESULT = f"{OUT}/{{pooling}}/{{reducer}}/{{clusterer}}"
CLUSTERS = f"{RESULT}/clusters.npz"
HARD_JSON = f"{RESULT}/clusters_hard.json"
SOFT_JSON = f"{RESULT}/clusters_soft.json"
# One export_block job's rows of the soft JSON (export_shards), removed once joined.
SOFT_BLOCK = f"{RESULT}/soft-blocks/{{block}}.jsonl"
EXPORT_BLOCKS = auto_settings.export_blocks(config["export_shards"], sum(len(rows) for rows in SHARDS.values()))
PLOT = f"{RESULT}/plot-{{layout}}.png"
METRICS = f"{RESULT}/metrics.json"
PROVENANCE = f"{RESULT}/provenance.json"
SUMMARY_TABLE = f"{OUT}/summary.tsv"
SUMMARY_FIGURE = f"{OUT}/summary.png"
BEST = f"{OUT}/best"


def log_path(stage, *wildcard_names):
    """One log per job: <OUT>/logs/<stage>/<wildcard values>.log"""
    return os.path.join(OUT, "logs", stage, *(f"{{{w}}}" for w in wildcard_names)) + ".log"


wildcard_constraints:
    pooling=paths.WILDCARD_PATTERNS["pooling"],
    reducer=paths.WILDCARD_PATTERNS["reducer"],
    clusterer=paths.WILDCARD_PATTERNS["clusterer"],
    layout=paths.WILDCARD_PATTERNS["layout"],
    neighbours=paths.WILDCARD_PATTERNS["neighbours"],
    shard=r"\d+-of-\d+",
    block=r"\d+-of-\d+",


COSINE_CHECKED = f"{OUT}/pooled/{{pooling}}.cosine-check.txt"


def cosine_checked(metric_of):
    """An input function: the pooling's cosine check (scripts/cosine_check.py) when the
    stage measures cosine (metric_of(wildcards) == "cosine"), else nothing."""
    return lambda wildcards: (
        [COSINE_CHECKED.format(pooling=wildcards.pooling)] if metric_of(wildcards) == "cosine" else []
    )


def reduced_matrix(wildcards):
    """reduce=none clusters the pooled matrix itself, without a copy."""
    if wildcards.reducer == "none":
        return POOLED.format(pooling=wildcards.pooling)
    return REDUCED.format(pooling=wildcards.pooling, reducer=wildcards.reducer)


# Above a size, the neighbour graph is searched approximately (neighbour_search).
APPROXIMATE_SEARCH = auto_settings.approximate_search(
    config["neighbour_search"], sum(len(rows) for rows in SHARDS.values())
)


def neighbours_file(wildcards, metric, needed):
    slug = paths.neighbours_slug(metric, needed, APPROXIMATE_SEARCH)
    return NEIGHBOURS.format(pooling=wildcards.pooling, reducer=wildcards.reducer, neighbours=slug)


def neighbour_graph(wildcards):
    """HDBSCAN's neighbour graph; spectral clustering needs none."""
    clusterer = paths.parse_clusterer(wildcards.clusterer)
    if clusterer["algorithm"] != "hdbscan":
        return []
    return neighbours_file(wildcards, clusterer["metric"], clusterer["min_samples"])


def auto_k_matrix(wildcards):
    """The pooled matrix, which spectral n_clusters=auto reads k from; reduce=none
    clusters that matrix itself (reduced_matrix), so needs no second input."""
    clusterer = paths.parse_clusterer(wildcards.clusterer)
    if clusterer["algorithm"] != "spectral" or clusterer["n_clusters"] != "auto" or wildcards.reducer == "none":
        return []
    return POOLED.format(pooling=wildcards.pooling)


def layout_graph(wildcards):
    """UMAP's neighbours; a PCA layout needs none."""
    layout = paths.parse_layout(wildcards.layout)
    if layout["method"] != "umap":
        return []
    return neighbours_file(wildcards, layout["metric"], layout_stage.UMAP_NEIGHBOURS)


MANIFEST = f"{MANIFESTS}/{{shard}}.tsv"


def shard_audio(wildcards):
    """The manifest of the shard's wav files when this pooling trims padding by audio duration."""
    if not paths.parse_pooling(wildcards.pooling)["frames_per_second"]:
        return []
    return f"{MANIFESTS}/{wildcards.shard}{manifests.AUDIO_SUFFIX}.tsv"


def padding_template(wildcards):
    """The padding template, when this pooling finds Whisper's padding in the frames."""
    return PADDING_TEMPLATE if paths.parse_pooling(wildcards.pooling)["detect"] else []


def manifest_digests(files, audio):
    """The digests of a shard's manifest and audio manifest (audio: a path or [])."""
    return [manifest_digest(files)] + ([manifest_digest(audio)] if audio else [])


def shard_mb(wildcards):
    """MiB of .npy data in one shard, from its manifest's sizes."""
    return sum(row.size for row in SHARDS[wildcards.shard]) / 2**20


def every_shard(suffix):
    return lambda wildcards: [SHARD.format(pooling=wildcards.pooling, shard=name) + suffix for name in SHARDS]


def result_settings(wildcards):
    """The settings behind one result directory, for its provenance."""
    directory = RESULT.format(**wildcards)
    found = next(r["settings"] for r in RESULTS if r["dir"] == directory)
    return dict(
        found,
        embedding_dir=config["embedding_dir"],
        dataset=config["dataset"],
        labels=config["labels"],
        neighbour_graph="approximate" if APPROXIMATE_SEARCH else "exact",
    )


def result_name(wildcards):
    """The result's folder under OUT, as cluster_names files name it."""
    return f"{wildcards.pooling}/{wildcards.reducer}/{wildcards.clusterer}"


def cluster_names_file(wildcards):
    """The result's cluster_names file, or nothing: only the figures, maps and hard JSON
    read it, so a new name redraws those and nothing above them."""
    return NAMES_FILES.get(result_name(wildcards)) or []


def _mb(path):
    """MiB of a file; 0 before it exists (Snakemake evaluates resources again once a
    job's inputs are there, before it runs)."""
    return os.path.getsize(path) / 2**20 if os.path.exists(path) else 0


def export_mem_mb(input, soft=True):
    """MiB for the export and export_block jobs: the ids and paths as Python strings
    (~4x their text), the clusters file twice (read, then its tree's tables) and 512 for
    the interpreter; computing soft memberships (soft), 1 GiB more for blocks of ~32 MB,
    the exemplars and numba (scripts/export.py). The matrix
    is read a row block at a time, not held."""
    return 512 + 1024 * soft + int(4 * _mb(input.ids) + 2 * _mb(input.clusters))


# Seconds per file, cluster and (dimension + 10) of the soft memberships: the distances to
# exemplars grow with the width, the tree part does not. Measured 4e-10 at 200,000 files
# x 20,000 clusters x 50 dimensions with one BLAS thread on a loaded 2-core machine (25 ns
# per file and cluster, bench/README.md); asked for with 7x room for slower nodes.
SOFT_SECONDS_PER_CELL = 3e-9


@functools.lru_cache(maxsize=16)
def _files_and_clusters(path, mtime_ns):
    """(files, clusters) of a clusters.npz; cached, as every export_block job of a result
    asks (10M labels are 80 MB to read)."""
    labels = np.load(path)["labels"]
    return len(labels), int(labels.max(initial=-1)) + 1


def export_runtime(input, n_jobs):
    """Minutes for one of n_jobs jobs computing soft memberships: files x clusters x
    (width + 10), the clusters read from the clustering's labels."""
    if not os.path.exists(input.clusters):
        return 10
    n_files, n_clusters = _files_and_clusters(input.clusters, os.stat(input.clusters).st_mtime_ns)
    width = np.load(input.matrix, mmap_mode="r").shape[1]
    cells = n_files / n_jobs * n_clusters * (width + 10)
    return 10 + int(cells * SOFT_SECONDS_PER_CELL / 60)


def soft_blocks(wildcards):
    """The export_block jobs' row ranges of a result's soft JSON (none: one job)."""
    return [SOFT_BLOCK.format(block=block, **wildcards) for block in EXPORT_BLOCKS]


def every_result(name):
    """The file `name` of every result of this run, in summary order."""
    return [f"{r['dir']}/{name}" for r in RESULTS]


# ---- figures and the interactive map (workflow/rules/plot.smk, map.smk) ----------

PLOT_SVG = f"{RESULT}/plot-{{layout}}.svg"
SIZES_PNG = f"{RESULT}/sizes.png"
SIZES_SVG = f"{RESULT}/sizes.svg"
TREE_PNG = f"{RESULT}/tree.png"
TREE_SVG = f"{RESULT}/tree.svg"
VARIANCE_PNG = f"{OUT}/{{pooling}}/{{reducer}}/variance.png"
VARIANCE_SVG = f"{OUT}/{{pooling}}/{{reducer}}/variance.svg"
MAP = f"{RESULT}/map-{{layout}}.html"
# Every 2-D layout of the run. A result is drawn on each (its figures are one job): with
# a sweep over metric and plot=umap, on every metric's UMAP of its reduction.
LAYOUTS = paths.run_layouts(COMBOS)


def figure_outputs(tree):
    """A result's figures, PNG and SVG, each in the report: one layout plot per layout of
    the run (LAYOUTS), then the cluster sizes, then (HDBSCAN) the condensed tree."""

    def entry(path, caption, category, labels):
        return report(
            path,
            caption=f"../report/{caption}.rst",
            category=category,
            subcategory="{pooling} / {reducer}",
            labels=dict({"clustering": "{clusterer}"}, **labels),
        )

    out = [
        entry(f"{RESULT}/plot-{layout}.{ext}", "plot", "Cluster layouts", {"layout": layout, "format": ext.upper()})
        for layout in LAYOUTS
        for ext in ("png", "svg")
    ]
    figures = [("sizes", SIZES_PNG, SIZES_SVG, "Cluster sizes")] + (
        [("tree", TREE_PNG, TREE_SVG, "Condensed trees")] if tree else []
    )
    named = {
        f"{name}_{ext}": entry(path, name, category, {"format": ext.upper()})
        for name, png, svg, category in figures
        for ext, path in (("png", png), ("svg", svg))
    }
    return out, named


def figure_settings(wildcards):
    """The settings a figure's title states, parsed from the wildcards it has."""
    parse = {
        "pooling": paths.parse_pooling,
        "reducer": paths.parse_reducer,
        "clusterer": paths.parse_clusterer,
        "layout": paths.parse_layout,
    }
    out = {"dataset": config["dataset"]}
    out.update({k: parse[k](v) for k, v in wildcards.items() if k in parse})
    return out


AUDIO_IDS = list(AUDIO)


# ---- provenance and the methods paragraph (workflow/rules/metrics.smk) ------------

# The workflow's version (VERSION; CITATION.cff names the same), recorded in each provenance.json.
with open(os.path.join(EMBCLUST_DIR, "VERSION")) as _version:
    WORKFLOW_VERSION = _version.read().strip()


def reduce_summary(wildcards):
    """reduce.json of a result's reduction (the dimensions kept); reduce=none has none."""
    if wildcards.reducer == "none":
        return []
    return REDUCE_SUMMARY.format(pooling=wildcards.pooling, reducer=wildcards.reducer)


def result_layouts(wildcards):
    """The 2-D layouts drawn for a result (plot can be swept), for its methods paragraph."""
    directory = RESULT.format(**wildcards)
    slugs = {paths.layout_slug(s) for s in COMBOS if paths.result_dir(OUT, s) == directory}
    return sorted(slugs - {None})


# ---- new clips placed into an existing result (workflow/rules/assign.smk) ---------------

ASSIGN_MANIFEST = f"{OUT}/assigned/{{name}}/files/{{shard}}.tsv"
ASSIGN_SHARD = f"{OUT}/assigned/{{name}}/pooled/{{pooling}}.shards/{{shard}}"
ASSIGNED = f"{OUT}/{{target}}/assigned/{{name}}"


def assign_shard_audio(wildcards):
    if not paths.parse_pooling(wildcards.pooling)["frames_per_second"]:
        return []
    return ASSIGN_MANIFEST.format(name=wildcards.name, shard=wildcards.shard).replace(
        ".tsv", f"{manifests.AUDIO_SUFFIX}.tsv"
    )


def assign_shard_mb(wildcards):
    return sum(row.size for row in ASSIGN_SHARDS[wildcards.shard]) / 2**20


def assigned_result(wildcards):
    """The result's folder under OUT: best/ resolves to the result the selection chose."""
    if wildcards.target != "best":
        return wildcards.target
    with open(checkpoints.select_best.get().output.selection) as f:
        return json.load(f)["chosen"]


def assign_inputs(wildcards):
    name = assigned_result(wildcards)
    pooling, reducer, clusterer = name.split("/")
    parts = types.SimpleNamespace(pooling=pooling, reducer=reducer)
    shard = ASSIGN_SHARD.format(name=wildcards.name, pooling=pooling, shard="{shard}")
    out = {
        "shards": [shard.format(shard=s) + ".npy" for s in ASSIGN_SHARDS],
        "shard_ids": [shard.format(shard=s) + ".ids.tsv" for s in ASSIGN_SHARDS],
        "clusters": CLUSTERS.format(pooling=pooling, reducer=reducer, clusterer=clusterer),
        "ids": POOLED_IDS.format(pooling=pooling),
        "matrix": reduced_matrix(parts),
        # export.py's soft-membership code is part of this stage's logic.
        "code": shared_code("export", "_memberships"),
    }
    if reducer != "none":
        out["fitted"] = REDUCER.format(pooling=pooling, reducer=reducer)
    if paths.parse_reducer(reducer)["method"] == "umap":
        out["pooled"] = POOLED.format(pooling=pooling)
    method = paths.parse_clusterer(clusterer)
    if method["algorithm"] == "hdbscan":
        out["graph"] = neighbours_file(parts, method["metric"], method["min_samples"])
    if wildcards.target == "best":
        out["selection"] = f"{BEST}/selection.json"
    return out


def assigned_settings(wildcards):
    name = assigned_result(wildcards)
    pooling, reducer, clusterer = name.split("/")
    return {
        "pooling": paths.parse_pooling(pooling),
        "reducer": paths.parse_reducer(reducer),
        "clusterer": paths.parse_clusterer(clusterer),
    }


def map_assigned(wildcards):
    """The map's layer of new clips: the assignment's points.npz and the matrix the layout
    places them from, for the map of the result they were assigned to (with best/, the
    chosen one, known once the selection has run); nothing for other maps."""
    if ASSIGN_TO is None:
        return {}
    name = f"{wildcards.pooling}/{wildcards.reducer}/{wildcards.clusterer}"
    chosen = assigned_result(types.SimpleNamespace(target=ASSIGN_TO))
    if chosen != name:
        return {}
    return {
        "points": f"{ASSIGNED.format(target=ASSIGN_TO, name=config['assign_name'])}/points.npz",
        "matrix": reduced_matrix(wildcards),
    }


def map_input_mb(input):
    """The map's inputs in MB, clusters.npz (and best/clusters_hard.json, read line by line) left out
    (workflow/rules/map.smk). Before the selection has run, best/'s map has none of them yet."""
    skip = {input.get("clusters"), input.get("stability")}
    return sum(mb for path, mb in zip(input, input.size_files_mb) if path not in skip)


def best_wildcards(wildcards):
    """The wildcards of the result the selection chose (known once it has run), on the
    layout of the best/ map asked for."""
    pooling, reducer, clusterer = assigned_result(types.SimpleNamespace(target="best")).split("/")
    return types.SimpleNamespace(pooling=pooling, reducer=reducer, clusterer=clusterer, layout=wildcards.layout)


def best_map_inputs(wildcards):
    """The map rule's inputs for the chosen result, and the stability of its files across the sweep."""
    chosen = best_wildcards(wildcards)
    return dict(
        map_assigned(chosen),
        clusters=CLUSTERS.format(**vars(chosen)),
        layout=LAYOUT.format(**vars(chosen)),
        ids=POOLED_IDS.format(pooling=chosen.pooling),
        labels=config["labels"] or [],
        names=cluster_names_file(chosen),
        code=shared_code("plot", "names", "export"),
        stability=f"{BEST}/clusters_hard.json",
    )


def map_audio(wildcards):
    """The map's audio: every clip of audio_dir, and the new clips' on the map with their layer."""
    return {"dir": config["audio_dir"], "clips": AUDIO_IDS + (list(ASSIGN_AUDIO) if map_assigned(wildcards) else [])}
