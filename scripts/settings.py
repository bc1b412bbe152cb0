"""Configuration for the Snakefile: coercion, validation, sweeps and path slugs.

A result's path names exactly the settings that made it, so this module is the
single place that turns settings into path components (slugs) and back.
"""

import collections
import csv
import difflib
import io
import itertools
import os
import re
import zlib

import jsonschema
import yaml

PATH_KEYS = ("embedding_dir", "output_dir", "dataset", "labels", "audio_dir")


class ConfigError(ValueError):
    """A bad setting or input directory, reported to the user as one line."""


def load_schema(path):
    with open(path) as f:
        return yaml.safe_load(f)


def sweep_keys(schema):
    return [k for k, s in schema["properties"].items() if s.get("sweep")]


def _coerce_scalar(value):
    # `--config` values arrive as int/float/bool or, inside lists, as strings
    # (YAML BaseLoader); read strings as YAML so "5" -> 5 and "null" -> None.
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def coerce(config, schema):
    """Return a copy of config with `--config` strings turned into typed values."""
    out = {}
    for key, value in config.items():
        if key in PATH_KEYS:
            # `--config embedding_dir=2024` arrives as an int; it is still a path.
            out[key] = str(value) if isinstance(value, (int, float)) else value
        elif isinstance(value, (list, tuple)):
            out[key] = [_coerce_scalar(v) for v in value]
        else:
            value = _coerce_scalar(value)
            # `--config reduce_dim='[10,20]'` can reach us as one string.
            out[key] = [_coerce_scalar(v) for v in value] if isinstance(value, list) else value
    return out


def describe(prop):
    """What a schema property allows, in words."""
    if "allowed" in prop:
        text = prop["allowed"] + (" or null" if "null" in prop.get("type", []) else "")
    elif "anyOf" in prop:
        text = " or ".join(describe(option) for option in prop["anyOf"])
    elif "const" in prop:
        text = repr(prop["const"])
    elif "enum" in prop:
        text = "one of " + ", ".join(map(str, prop["enum"]))
    else:
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        main = [t for t in types if t != "null"][0]
        text = {"integer": "an integer", "string": "a string", "boolean": "true or false"}[main]
        if "minimum" in prop and "maximum" in prop:
            text += f" from {prop['minimum']} to {prop['maximum']}"
        elif "minimum" in prop:
            text += f" >= {prop['minimum']}"
        if "pattern" in prop:
            text += f" matching {prop['pattern']}"
        if "null" in types:
            text += " or null"
    if prop.get("sweep"):
        text += " (or a list of these, to sweep)"
    return text


def validate(config, schema):
    """Coerce, check and fill in defaults; raise ConfigError with one line."""
    config = coerce(config, schema)
    props = schema["properties"]
    for key, value in config.items():
        if key not in props:
            close = difflib.get_close_matches(key, props, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        prop = props[key]
        values = value if isinstance(value, list) and prop.get("sweep") else [value]
        if isinstance(value, list) and not values:
            raise ConfigError(f"config key '{key}' is an empty list; allowed: {describe(prop)}")
        for item in values:
            check = {k: v for k, v in prop.items() if k not in ("sweep", "default", "description", "allowed")}
            try:
                jsonschema.validate(item, check)
            except jsonschema.ValidationError:
                raise ConfigError(
                    f"config key '{key}' has value {item!r}, which is not allowed; allowed: {describe(prop)}"
                ) from None
    full = {key: prop.get("default") for key, prop in props.items()}
    full.update(config)
    if not full["dataset"]:
        # abspath, so that embedding_dir=. or .. names its folder, never . or .. itself.
        full["dataset"] = os.path.basename(os.path.abspath(full["embedding_dir"])) or "dataset"
    return full


def combinations(config, schema):
    """Every combination of the swept keys, as flat settings dicts."""
    keys = sweep_keys(schema)
    axes = [config[k] if isinstance(config[k], list) else [config[k]] for k in keys]
    fixed = {k: v for k, v in config.items() if k not in keys}
    return [dict(fixed, **dict(zip(keys, combo))) for combo in itertools.product(*axes)]


# ---- slugs: settings -> path component, and back -------------------------

SLUG_PATTERNS = {
    "pooling": r"(?:(?P<method>mean|max|meanstd)|flatten-(?P<frames>\d+|longest))(?:-trim(?P<fps>\d+))?",
    "reducer": r"(?P<method>none)|(?P<pca>pca)-(?P<pca_dim>\d+)|umap-(?P<umap_dim>\d+)-(?P<metric>euclidean|cosine)-s(?P<seed>\d+)",
    "clusterer": (
        r"hdbscan-mcs(?P<mcs>\d+)-ms(?P<ms>\d+)-(?P<h_metric>euclidean|cosine)"
        r"|spectral-k(?P<k>\d+|auto)-(?P<s_metric>euclidean|cosine)-s(?P<s_seed>\d+)"
    ),
    "layout": r"(?P<pca>pca)|umap-(?P<metric>euclidean|cosine)-s(?P<seed>\d+)",
    "neighbours": r"(?P<metric>euclidean|cosine)-k(?P<k>\d+)",
}


# The same patterns without group names, for Snakemake's wildcard_constraints.
WILDCARD_PATTERNS = {kind: re.sub(r"\(\?P<\w+>", "(?:", p) for kind, p in SLUG_PATTERNS.items()}


def pooling_slug(s):
    slug = f"flatten-{s['flatten_frames'] or 'longest'}" if s["pooling"] == "flatten" else s["pooling"]
    return slug + (f"-trim{s['frames_per_second']}" if s["trim_padding"] else "")


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


# The neighbours stage keeps this many nearest neighbours per point, or the next
# multiple of it that min_samples needs, so nearby min_samples share one graph.
NEIGHBOUR_STEP = 32


def neighbour_count(min_samples):
    return NEIGHBOUR_STEP * max(1, -(-min_samples // NEIGHBOUR_STEP))


def neighbours_slug(metric, needed):
    """The neighbour graph (scripts/neighbours.py) with at least `needed` neighbours per point."""
    return f"{metric}-k{neighbour_count(needed)}"


# Neighbours of each point in a UMAP layout; they come from the same graph.
UMAP_NEIGHBOURS = 15


def parse_neighbours(slug):
    g = _match("neighbours", slug)
    return {"metric": g["metric"], "k": int(g["k"])}


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
    out = {"method": g["method"] or "flatten", "frames": None, "frames_per_second": None}
    if g["frames"] and g["frames"] != "longest":
        out["frames"] = int(g["frames"])
    if g["fps"]:
        out["frames_per_second"] = int(g["fps"])  # set = trim padding by audio duration
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


# ---- inputs and targets ------------------------------------------------------


def list_embeddings(directory):
    """Sorted (id, path) pairs of the .npy files in directory; other files are ignored."""
    if not os.path.isdir(directory):
        raise ConfigError(f"embedding_dir '{directory}' does not exist or is not a directory")
    with os.scandir(directory) as entries:
        names = sorted((e.name for e in entries if e.name.endswith(".npy") and e.is_file()), key=lambda n: n[:-4])
    if not names:
        raise ConfigError(f"embedding_dir '{directory}' holds no .npy files")
    return [(name[: -len(".npy")], os.path.join(directory, name)) for name in names]


def check_labels(path):
    """Refuse a labels CSV that metrics and the map would misread: not UTF-8, no `id`
    column or no label column, a column named twice, or an id on more than one row.
    A UTF-8 byte order mark (Excel's "CSV UTF-8") is fine."""
    if not os.path.isfile(path):
        raise ConfigError(f"labels file '{path}' does not exist")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"labels file '{path}' is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        twice = sorted(name for name, n in collections.Counter(header).items() if n > 1)
        if twice:
            raise ConfigError(f"labels file '{path}' names the column(s) {', '.join(map(repr, twice))} more than once")
        if "id" not in header or len(header) < 2:
            raise ConfigError(f"labels file '{path}' needs an 'id' column and at least one label column; it has {header}")
        column = header.index("id")
        rows_of = {}
        for row in reader:
            if row:  # csv.DictReader, which reads the labels, skips blank lines too
                rows_of.setdefault(row[column] if column < len(row) else "", []).append(reader.line_num)
    except csv.Error as e:
        raise ConfigError(f"labels file '{path}' is not a readable CSV: {e} (line {reader.line_num})") from None
    repeated = [(i, lines) for i, lines in rows_of.items() if len(lines) > 1]
    if repeated:
        shown = "; ".join(f"{i!r} on lines {', '.join(map(str, lines))}" for i, lines in repeated[:3])
        more = f" (+{len(repeated) - 3} more)" if len(repeated) > 3 else ""
        raise ConfigError(f"labels file '{path}' gives {len(repeated)} id(s) more than one row: {shown}{more}")


def check_output_dir(output_dir, dataset):
    """Refuse an output_dir (or its dataset folder) that is, or lies under, something
    other than a directory."""
    here = os.path.abspath(os.path.join(output_dir, dataset))
    while not os.path.lexists(here):
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        raise ConfigError(f"output_dir '{output_dir}' cannot hold results: '{here}' exists and is not a directory")


def list_audio(audio_dir, ids):
    """{id: path} of the <id>.wav files in audio_dir for the given ids."""
    with os.scandir(audio_dir) as entries:
        wavs = {e.name[: -len(".wav")] for e in entries if e.name.endswith(".wav")}
    return {i: os.path.join(audio_dir, f"{i}.wav") for i in ids if i in wavs}


def check_paths(config):
    check_output_dir(config["output_dir"], config["dataset"])
    if config["labels"] is not None:
        check_labels(config["labels"])
    if config["audio_dir"] is not None and not os.path.isdir(config["audio_dir"]):
        raise ConfigError(f"audio_dir '{config['audio_dir']}' does not exist or is not a directory")
    trims = config["trim_padding"] if isinstance(config["trim_padding"], list) else [config["trim_padding"]]
    if any(trims) and config["audio_dir"] is None:
        raise ConfigError("trim_padding needs audio_dir: the directory holding <id>.wav, for each clip's duration")


def shard_of(clip_id, n_shards):
    """Stable shard of an id (crc32, the same on every machine and run), so adding
    files re-pools only the shards they fall in."""
    return zlib.crc32(clip_id.encode()) % n_shards


def shards(embeddings, n_shards):
    """{shard name: [(id, path), ...]} for the non-empty shards, names like '3-of-8'."""
    out = {}
    for clip_id, path in embeddings:
        out.setdefault(shard_of(clip_id, n_shards), []).append((clip_id, path))
    return {f"{i}-of-{n_shards}": out[i] for i in sorted(out)}


def result_dir(root, s):
    return f"{root}/{pooling_slug(s)}/{reducer_slug(s)}/{clusterer_slug(s)}"


def targets(root, combos):
    """Final files for every combination and for the dataset, deduplicated, in a stable order."""
    paths = []
    for s in combos:
        d = result_dir(root, s)
        paths += [f"{d}/{name}" for name in ("clusters_hard.json", "clusters_soft.json", "metrics.json", "provenance.json")]
        if layout_slug(s):
            paths += figure_targets(root, s)
    # A sweep is summarised (and its best picked) at the dataset level. A single result is
    # not, so that switching one setting back and forth leaves every file as it was.
    if len(results(root, combos)) > 1:
        paths += [f"{root}/summary.tsv", f"{root}/summary.png"]
        if combos[0]["selection"] == "auto":
            paths.append(f"{root}/best/selection.json")
    return list(dict.fromkeys(paths))


def relevant_settings(s):
    """The settings that shape one result, by config key (what its path names)."""
    out = {"pooling": s["pooling"]}
    if s["pooling"] == "flatten":
        out["flatten_frames"] = s["flatten_frames"]
    if s["trim_padding"]:
        out["trim_padding"] = True
        out["frames_per_second"] = s["frames_per_second"]
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


def check_sizes(n_files, combos):
    """Refuse, before any job runs, settings that cannot work for n_files."""
    where = f"only {n_files} .npy files in '{combos[0]['embedding_dir']}'"
    for s in combos:
        if s["algorithm"] == "hdbscan":
            if n_files < s["min_cluster_size"]:
                raise ConfigError(f"{where}, fewer than min_cluster_size={s['min_cluster_size']}")
            # Each file's core distance is to its min_samples-th neighbour: more files are needed.
            if s["min_samples"] is None and n_files <= s["min_cluster_size"]:
                raise ConfigError(
                    f"{where}, need more than min_cluster_size={s['min_cluster_size']} "
                    "(min_samples, which defaults to it, counts neighbours besides the file itself)"
                )
            if s["min_samples"] is not None and n_files <= s["min_samples"]:
                raise ConfigError(f"{where}, need more than min_samples={s['min_samples']}")
        if s["algorithm"] == "spectral":
            auto = s["n_clusters"] == "auto"
            k = 2 if auto else s["n_clusters"]
            if n_files <= k:
                raise ConfigError(f"{where}, need more than n_clusters={k}" + (" (the least auto picks)" if auto else ""))
        # A PCA reduce_dim above the file count or the pooled width is not refused: the
        # reduce stage keeps what PCA can give and says so (scripts/reduce.py).
        if s["reduce"] == "umap" and s["reduce_dim"] >= n_files - 1:
            raise ConfigError(f"{where}: UMAP needs reduce_dim below {n_files - 1}, not {s['reduce_dim']}")

