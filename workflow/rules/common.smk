# Config validation, sweeps and path templates. Slugs come from scripts/settings.py,
# the one place that maps settings to paths and back.
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
import settings

SCHEMA = settings.load_schema(os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))

try:
    _validated = settings.validate(config, SCHEMA)
    settings.check_paths(_validated)
    EMBEDDINGS = settings.list_embeddings(_validated["embedding_dir"])
    COMBOS = settings.combinations(_validated, SCHEMA)
    settings.check_sizes(len(EMBEDDINGS), COMBOS)
except settings.ConfigError as e:
    sys.exit(f"embclust: {e}")
config.update(_validated)

OUT = f"{config['output_dir']}/{config['dataset']}"
TARGETS = settings.targets(OUT, COMBOS)

POOLED = f"{OUT}/pooled/{{pooling}}.npy"
POOLED_IDS = f"{OUT}/pooled/{{pooling}}.ids.tsv"
REDUCED = f"{OUT}/{{pooling}}/{{reducer}}/reduced.npy"
REDUCE_SUMMARY = f"{OUT}/{{pooling}}/{{reducer}}/reduce.json"
LAYOUT = f"{OUT}/{{pooling}}/{{reducer}}/layout-{{layout}}.npy"
RESULT = f"{OUT}/{{pooling}}/{{reducer}}/{{clusterer}}"
CLUSTERS = f"{RESULT}/clusters.npz"
HARD_JSON = f"{RESULT}/clusters_hard.json"
SOFT_JSON = f"{RESULT}/clusters_soft.json"
PLOT = f"{RESULT}/plot-{{layout}}.png"


def log_path(stage, *wildcard_names):
    """One log per job: <OUT>/logs/<stage>/<wildcard values>.log"""
    return os.path.join(OUT, "logs", stage, *(f"{{{w}}}" for w in wildcard_names)) + ".log"


wildcard_constraints:
    pooling=settings.WILDCARD_PATTERNS["pooling"],
    reducer=settings.WILDCARD_PATTERNS["reducer"],
    clusterer=settings.WILDCARD_PATTERNS["clusterer"],
    layout=settings.WILDCARD_PATTERNS["layout"],


def reduced_matrix(wildcards):
    """reduce=none clusters the pooled matrix itself, without a copy."""
    if wildcards.reducer == "none":
        return POOLED.format(pooling=wildcards.pooling)
    return REDUCED.format(pooling=wildcards.pooling, reducer=wildcards.reducer)


# ---- figures and the interactive map (workflow/rules/plot.smk, map.smk) ----------

PLOT_SVG = f"{RESULT}/plot-{{layout}}.svg"
SIZES_PNG = f"{RESULT}/sizes.png"
SIZES_SVG = f"{RESULT}/sizes.svg"
TREE_PNG = f"{RESULT}/tree.png"
TREE_SVG = f"{RESULT}/tree.svg"
VARIANCE_PNG = f"{OUT}/{{pooling}}/{{reducer}}/variance.png"
VARIANCE_SVG = f"{OUT}/{{pooling}}/{{reducer}}/variance.svg"
MAP = f"{RESULT}/map-{{layout}}.html"


def figure_settings(wildcards):
    """The settings a figure's title states, parsed from the wildcards it has."""
    parse = {
        "pooling": settings.parse_pooling,
        "reducer": settings.parse_reducer,
        "clusterer": settings.parse_clusterer,
        "layout": settings.parse_layout,
    }
    out = {"dataset": config["dataset"]}
    out.update({k: parse[k](v) for k, v in wildcards.items() if k in parse})
    return out


def audio_ids(audio_dir):
    """Ids that have <audio_dir>/<id>.wav, read once when the workflow starts."""
    if not audio_dir:
        return []
    wavs = {name[: -len(".wav")] for name in os.listdir(audio_dir) if name.endswith(".wav")}
    return [i for i, _ in EMBEDDINGS if i in wavs]


AUDIO_IDS = audio_ids(config["audio_dir"])
