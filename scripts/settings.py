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
import stat
import zlib
from typing import NamedTuple

from _stage import manifest_digest, manifest_text, read_manifest

# jsonschema and yaml are imported where they are used (validating the config at
# start-up): the stage jobs that take slugs and constants from here do not need them.

PATH_KEYS = ("embedding_dir", "output_dir", "dataset", "labels", "audio_dir", "assign_dir", "assign_to", "assign_name")


class ConfigError(ValueError):
    """A bad setting or input directory, reported to the user as one line."""


def load_schema(path):
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def sweep_keys(schema):
    return [k for k, s in schema["properties"].items() if s.get("sweep")]


def _coerce_scalar(value):
    # `--config` values arrive as int/float/bool or, inside lists, as strings
    # (YAML BaseLoader); read strings as YAML so "5" -> 5 and "null" -> None.
    import yaml

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


def allowed(value, prop):
    """Whether one value is allowed by a schema property (a sweep's item, for lists)."""
    import jsonschema

    check = {k: v for k, v in prop.items() if k not in ("sweep", "default", "description", "allowed")}
    try:
        jsonschema.validate(value, check)
    except jsonschema.ValidationError:
        return False
    return True


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
            if not allowed(item, prop):
                raise ConfigError(f"config key '{key}' has value {item!r}, which is not allowed; allowed: {describe(prop)}")
    full = {key: prop.get("default") for key, prop in props.items()}
    full.update(config)
    if full["assign_dir"] is not None and not full["assign_name"]:
        full["assign_name"] = os.path.basename(os.path.abspath(full["assign_dir"]))
        if not re.fullmatch(r"(?!\.\.?$)[A-Za-z0-9._-]+", full["assign_name"]):
            raise ConfigError(
                f"assign_name '{full['assign_name']}' (the basename of assign_dir) is not a name of letters, digits, "
                "'.', '_' and '-'; set assign_name=NAME"
            )
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


# reduce: auto. UMAP separates the groups of the quality benchmark (bench/README.md,
# "Quality") far better than PCA, but costs minutes at 100,000 files and hours at a
# million, and on a few files its neighbour graph connects nearly everything: it is
# chosen from UMAP_AUTO_FILES[0] to UMAP_AUTO_FILES[1] files, PCA outside.
UMAP_AUTO_FILES = (200, 100_000)
# reduce_dim: auto, per reducer.
AUTO_DIM = {"umap": 10, "pca": 50}


def auto_reducer(n_files):
    """What reduce: auto means for n_files files."""
    low, high = UMAP_AUTO_FILES
    return "umap" if low <= n_files <= high else "pca"


def resolve_auto(combos, n_files, whisper_shaped=False):
    """The combinations with the auto settings made concrete for n_files files (the paths
    name what was used): reduce and reduce_dim by the file count; pooling and
    trim_padding by whether the files look like Whisper's padded outputs (whisper_shaped)
    and whether audio_dir is given."""
    out = []
    for s in combos:
        reduce = auto_reducer(n_files) if s["reduce"] == "auto" else s["reduce"]
        dim = AUTO_DIM.get(reduce, AUTO_DIM["pca"]) if s["reduce_dim"] == "auto" else s["reduce_dim"]
        s = dict(s, reduce=reduce, reduce_dim=dim)
        if s["pooling"] == "auto":
            s["pooling"] = AUTO_POOLING[whisper_shaped]
        if s["trim_padding"] == "auto":
            # Only Whisper's outputs are padded, and their padding is found in the frames,
            # wav or not: a wav's duration also counts the silence around the speech, which
            # pooled worse on the Whisper sets (bench/README.md, "Whisper").
            s["trim_padding"] = False
            s["detect_padding"] = whisper_shaped
        s.setdefault("detect_padding", False)
        out.append(s)
    return out


# pooling: auto. On the quality bench's Whisper sets (bench/README.md, "Whisper"), max
# pooling groups clips by what is said far better than mean pooling, with or without the
# padding trimmed; on the speaker-encoder and digit sets mean pooling does better.
AUTO_POOLING = {True: "max", False: "mean"}


def whisper_shaped(shard_files, header_problem, frames=1500):
    """Whether the files look like Whisper's padded outputs: the first file of every shard
    has `frames` frames (headers only; the same answer in every process, which reads the
    same manifests). Files of other lengths in such a set keep all their frames. A file
    whose header cannot be read counts as not Whisper's (the full check names it)."""
    firsts = [header_problem(rows[0].path) for rows in shard_files.values() if rows]
    return bool(firsts) and all(isinstance(h, tuple) and h[0] == frames for h in firsts)


# trim_padding: auto finds Whisper's padding from a template made of this many files.
PADDING_SAMPLE = 128


def padding_sample(embeddings, n=PADDING_SAMPLE):
    """The files the padding template is made of: the n whose ids hash lowest (crc32, salted
    apart from the shards'), in id order, so that added files seldom change the sample."""
    ranked = sorted(embeddings, key=lambda row: (zlib.crc32(b"padding:" + row.id.encode()), row.id))
    return sorted(ranked[:n], key=lambda row: row.id)


# ---- slugs: settings -> path component, and back -------------------------

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


# The neighbours stage keeps this many nearest neighbours per point, or the next
# multiple of it that min_samples needs, so nearby min_samples share one graph.
NEIGHBOUR_STEP = 32


def neighbour_count(min_samples):
    return NEIGHBOUR_STEP * max(1, -(-min_samples // NEIGHBOUR_STEP))


def neighbours_slug(metric, needed, approximate=False):
    """The neighbour graph (scripts/neighbours.py) with at least `needed` neighbours per point."""
    return f"{metric}-k{neighbour_count(needed)}" + ("-approx" if approximate else "")


# neighbour_search: auto searches exactly up to this many files (scripts/neighbours.py).
EXACT_SEARCH_MAX = 200_000


def approximate_search(setting, n_files):
    """Whether the neighbour graph is searched approximately (NN-descent)."""
    return setting == "approximate" or (setting == "auto" and n_files > EXACT_SEARCH_MAX)


# Neighbours of each point in a UMAP layout; they come from the same graph.
UMAP_NEIGHBOURS = 15


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


# ---- inputs and targets ------------------------------------------------------


class Embedding(NamedTuple):
    """One input file: its id (the file name without .npy), path, and the size and
    mtime (ns) that tell whether it changed since the manifest was written."""

    id: str
    path: str
    size: int
    mtime_ns: int


# Characters that would break the one-row-per-file TSVs (manifests, ids.tsv).
_UNSAFE = {"\t": "a tab", "\n": "a newline", "\r": "a carriage return"}


def _untabular(text):
    """Why text cannot be a TSV field (tab, newline, not UTF-8), or None."""
    for char, what in _UNSAFE.items():
        if char in text:
            return what
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "bytes that are not UTF-8"
    return None


def _encodes(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unusable(relpath):
    """Why a file's path (relative to embedding_dir) cannot be an input, or None."""
    if os.path.basename(relpath) == ".npy":
        return "an empty id"
    return _untabular(relpath)


def _shown(names, limit=3):
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _entries(folder, key, rel=""):
    """os.scandir(folder), or a ConfigError naming it and why it cannot be read."""
    try:
        return os.scandir(folder)
    except OSError as e:
        what = f"{key} subfolder" if rel else key
        raise ConfigError(f"{what} '{folder}' cannot be read ({e.strerror}); fix its permissions or move it out") from None


def _scan(folder, rel, key="embedding_dir"):
    """(.npy files as (relpath, stat), subfolder relpaths, relpaths of links that lead nowhere)."""
    files, folders, broken = [], [], []
    with _entries(folder, key, rel) as entries:
        for e in entries:
            relpath = os.path.join(rel, e.name) if rel else e.name
            try:
                if e.name.endswith(".npy"):
                    st = e.stat()  # follows a link: its target's size and mtime
                    if stat.S_ISREG(st.st_mode):
                        files.append((relpath, st))
                        continue
                if e.is_dir():
                    folders.append(relpath)
            except OSError:  # a dangling link, or a loop of links
                broken.append(relpath)
    return files, folders, broken


def list_embeddings(directory, key="embedding_dir"):
    """(embeddings, notes): the .npy files in directory and in its subfolders (one level;
    deeper folders are not read), as Embedding rows sorted by id, and lines to tell the
    user (links skipped, deeper folders not read).

    The id is the file name without .npy, wherever the file is: two files with the same
    name in two subfolders are refused, and so are names the TSVs cannot hold.
    """
    if not os.path.isdir(directory):
        raise ConfigError(f"{key} '{directory}' does not exist or is not a directory")
    why = _untabular(directory)
    if why:
        raise ConfigError(f"{key} {directory!r} holds {why}, which embclust cannot write to its TSV files")
    files, subfolders, broken = _scan(directory, "", key)
    deeper = []
    for sub in subfolders:
        more, below, gone = _scan(os.path.join(directory, sub), sub, key)
        files += more
        deeper += below
        broken += [g for g in gone if g.endswith(".npy")]
    # Every start lists every file: the names are checked all at once, and one by one
    # (for the message) only when that finds a problem.
    names = "\0" + "\0".join(rel for rel, _ in files) + "\0"  # no file name holds a NUL
    empty_id = "\0.npy\0" in names or "/.npy\0" in names
    if empty_id or any(char in names for char in _UNSAFE) or not _encodes(names):
        bad = [f"{rel!r} holds {why}" for rel in sorted(rel for rel, _ in files) if (why := _unusable(rel))]
        if bad:
            raise ConfigError(f"file names embclust cannot use in '{directory}' (rename them): {_shown(bad)}")
    if not files:
        raise ConfigError(f"{key} '{directory}' holds no .npy files")
    prefix = os.path.join(directory, "")  # os.path.join(directory, rel) for every rel
    rows = sorted(
        Embedding(rel.rpartition("/")[2][: -len(".npy")], prefix + rel, st.st_size, st.st_mtime_ns) for rel, st in files
    )
    same = [(a, b) for a, b in zip(rows, rows[1:]) if a.id == b.id]
    if same:
        a, b = same[0]
        more = f" (+{len(same) - 1} more)" if len(same) > 1 else ""
        raise ConfigError(
            f"id '{a.id}' is in two files, {a.path} and {b.path}{more}: ids are file names without .npy "
            f"and must be unique across the subfolders of {key}"
        )
    notes = []
    if broken:
        notes.append(f"skipped {len(broken)} links in '{directory}' that lead nowhere (dangling or a loop): {_shown(sorted(broken))}")
    if deeper:
        notes.append(
            f"{len(deeper)} folders two levels down in '{directory}' are not read (only its subfolders are): {_shown(sorted(deeper))}"
        )
    return rows, notes


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
    """{id: Embedding row of <audio_dir>/<id>.wav} for the given ids that have a wav."""
    why = _untabular(audio_dir)
    if why:
        raise ConfigError(f"audio_dir {audio_dir!r} holds {why}, which embclust cannot write to its TSV files")
    wanted, out = set(ids), {}
    with _entries(audio_dir, "audio_dir") as entries:
        for e in entries:
            clip_id = e.name[: -len(".wav")]
            if e.name.endswith(".wav") and clip_id in wanted:
                try:
                    st = e.stat()
                except OSError:  # a link that leads nowhere: no audio for this clip
                    continue
                out[clip_id] = Embedding(clip_id, os.path.join(audio_dir, e.name), st.st_size, st.st_mtime_ns)
    return {i: out[i] for i in sorted(out)}


# Inputs that a config may name relative to the workflow's own folder: the demo.
WORKFLOW_RELATIVE_KEYS = ("embedding_dir", "labels")


def find_in_workflow(config, workflow_dir, note):
    """A relative embedding_dir or labels that is not in the working directory but is in
    the workflow's own folder (the demo, `demo/digits`, when the workflow runs as a
    module of another project) is taken from there. It stays a relative path (from the
    working directory), so the outputs hold no absolute path."""
    for key in WORKFLOW_RELATIVE_KEYS:
        path = config.get(key)
        if path is None or os.path.isabs(path) or os.path.exists(path):
            continue
        found = os.path.join(workflow_dir, path)
        if os.path.exists(found):
            config[key] = os.path.relpath(found)
            note(f"{key} '{path}' is not in the working directory; using the workflow's own, {config[key]}")
    return config


def _inside(path, folder):
    """Whether path is folder or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_apart(config):
    """Refuse an embedding_dir or assign_dir that overlaps the results folder,
    <output_dir>/<dataset>, either way: inside it, the workflow would read its own
    outputs (a shard matrix) as clips; holding it, its outputs would be read as inputs
    on the next run. Compared after resolving links."""
    results = os.path.realpath(os.path.join(config["output_dir"], config["dataset"]))
    for key in ("embedding_dir", "assign_dir"):
        if config.get(key) is None:
            continue
        folder = os.path.realpath(config[key])
        if _inside(folder, results) or _inside(results, folder):
            where = "is inside" if _inside(folder, results) and folder != results else "holds" if folder != results else "is"
            raise ConfigError(
                f"{key} '{config[key]}' {where} the results folder '{os.path.join(config['output_dir'], config['dataset'])}' "
                "(output_dir/dataset): the workflow would read its own outputs as clips; keep inputs and outputs apart "
                "(another output_dir or dataset)"
            )


def check_paths(config):
    check_apart(config)
    check_output_dir(config["output_dir"], config["dataset"])
    if config["labels"] is not None:
        check_labels(config["labels"])
    if config["audio_dir"] is not None and not os.path.isdir(config["audio_dir"]):
        raise ConfigError(f"audio_dir '{config['audio_dir']}' does not exist or is not a directory")
    trims = config["trim_padding"] if isinstance(config["trim_padding"], list) else [config["trim_padding"]]
    if any(t is True for t in trims) and config["audio_dir"] is None:
        raise ConfigError("trim_padding needs audio_dir: the directory holding <id>.wav, for each clip's duration")


def shard_of(clip_id, n_shards):
    """Stable shard of an id (crc32, the same on every machine and run), so adding
    files re-pools only the shards they fall in."""
    return zlib.crc32(clip_id.encode()) % n_shards


def shards(embeddings, n_shards):
    """{shard name: [Embedding, ...]} for the non-empty shards, names like '3-of-8'."""
    out = {}
    for row in embeddings:
        out.setdefault(shard_of(row.id, n_shards), []).append(row)
    return {f"{i}-of-{n_shards}": out[i] for i in sorted(out)}


# pool_shards: auto keeps at most this many files per shard, doubling the shard count
# from 8 as the file count doubles (8 up to 131,072 files; 64 for a million).
FILES_PER_SHARD = 16384


def shard_count(setting, n_files):
    """The number of pooling jobs: pool_shards itself, or for 'auto' the smallest of 8,
    16, 32, ... that leaves at most FILES_PER_SHARD files per shard. Doubling, not a
    count per file, so that added files change the count (and re-pool everything)
    only when the total has doubled."""
    if setting != "auto":
        return setting
    n = 8
    while n_files > n * FILES_PER_SHARD:
        n *= 2
    return n


# ---- export_shards: the soft memberships as row-range jobs (workflow/rules/export.smk) ----
#
# Their cost is files x clusters, and the clusters grow with the files: at a million files
# and 20,000 clusters one job takes most of an hour. Their rows are independent, so
# export_block jobs compute row ranges and the export job joins them.
# export_shards: auto gives each job at most this many files (1 job up to 100,000 files,
# 10 for a million, 100 for ten million).
EXPORT_FILES_PER_JOB = 100_000


def export_blocks(setting, n_files):
    """Names of the export_block jobs' row ranges, like '2-of-10'; [] for one job (the
    export job then computes the soft memberships itself)."""
    n = -(-n_files // EXPORT_FILES_PER_JOB) if setting == "auto" else setting
    return [f"{i}-of-{n}" for i in range(n)] if n > 1 else []


# ---- manifests: each pool job's list of files --------------------------------
#
# At start-up the workflow writes, for each shard, a manifest: one row per file with
# its id, path, size and mtime in ns (and one for the shard's wav files, for
# trim_padding). A manifest is rewritten only when its text changes, so Snakemake sees
# one input per pool job, and a file added, removed, or changed in size or mtime (older
# as well as newer) re-pools exactly its shard.

AUDIO_SUFFIX = ".audio"


def _write_if_changed(path, text):
    """Write text to path unless it already holds exactly that; True if written."""
    data = text.encode("utf-8")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)  # never a half-written manifest, even if killed
    return True


def write_manifests(directory, shard_files, audio=None):
    """Write each shard's manifest (and audio manifest, when audio is not None) into
    directory, rewriting only those whose text changed, and remove the manifests of
    shards that no longer exist. Returns the names of the files written."""
    os.makedirs(directory, exist_ok=True)
    wanted, written = {}, []
    for name, rows in shard_files.items():
        wanted[f"{name}.tsv"] = rows
        if audio is not None:
            wanted[f"{name}{AUDIO_SUFFIX}.tsv"] = [audio[r.id] for r in rows if r.id in audio]
    for filename, rows in wanted.items():
        if _write_if_changed(os.path.join(directory, filename), manifest_text(rows)):
            written.append(filename)
    for filename in os.listdir(directory):
        if filename not in wanted:
            os.remove(os.path.join(directory, filename))
    return written


def write_padding_sample(path, embeddings):
    """The manifest of the files the padding template is made of (padding_sample), rewritten
    only when its text changes, like the shards' manifests."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_if_changed(path, manifest_text(padding_sample(embeddings)))


def prepare_inputs(config, combos, manifest_dir, say):
    """List the inputs, check them against the settings, write the manifests that
    changed: (shards, audio). `say` gets the notes for the user (skipped links...)."""
    embeddings, notes = list_embeddings(config["embedding_dir"])
    for note in notes:
        say(note)
    check_sizes(len(embeddings), combos)
    shard_files = shards(embeddings, shard_count(config["pool_shards"], len(embeddings)))
    audio = list_audio(config["audio_dir"], [row.id for row in embeddings]) if config["audio_dir"] else None
    write_manifests(manifest_dir, shard_files, audio)
    return shard_files, audio or {}


def _pooled_from(info_path, digests):
    """Whether a shard's record (its .json, written last by the pool job) names the
    manifests `digests` as what it pooled; None when there is no readable record."""
    import json

    try:
        with open(info_path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return False
    if "manifest_sha256" not in record:
        return None  # pooled by an earlier version, which recorded no digest: not known
    return (record["manifest_sha256"], record.get("audio_manifest_sha256")) == digests


def check_shards(shard_files, manifest_dir, shard_dirs):
    """Tie each pooled shard to the manifest it was pooled from: (pooled, stale).

    A pool job records the digest of the manifest it read (scripts/pool.py). A shard
    whose record names another manifest, one rewritten while the job ran (files added
    by a start during the run), looks up to date by its mtime, being newer than the
    manifest, and Snakemake checksums the manifest when the job ends, so it sees no
    change either. The pool rule's params name the manifests' digests
    (workflow/rules/pool.smk): Snakemake pools such a shard again as its params
    changed. `stale` names those shards, for the message.
    `pooled`: the shards that every pooling of `shard_dirs` has pooled from their
    current manifests, so their files, at the size and mtime the manifest holds, were
    read without fault (their headers need no second reading)."""
    pooled, stale = [], []
    for name in shard_files:
        files = manifest_digest(os.path.join(manifest_dir, f"{name}.tsv"))
        audio = manifest_digest(os.path.join(manifest_dir, f"{name}{AUDIO_SUFFIX}.tsv"))
        everywhere = True
        for d in shard_dirs:
            trims = parse_pooling(os.path.basename(str(d))[: -len(".shards")])["frames_per_second"]
            found = _pooled_from(os.path.join(d, f"{name}.json"), (files, audio if trims else None))
            if found is False and name not in stale:
                stale.append(name)
            everywhere = everywhere and bool(found)
        if everywhere:
            pooled.append(name)
    return pooled, stale


def read_manifests(directory):
    """(shards, audio) as the main process wrote them: what a job that parses the
    workflow again (on a cluster node) uses instead of listing the files."""
    shard_files, audio = {}, {}
    for filename in sorted(os.listdir(directory)):
        rows = [Embedding(*row) for row in read_manifest(os.path.join(directory, filename))]
        if filename.endswith(f"{AUDIO_SUFFIX}.tsv"):
            audio.update((r.id, r) for r in rows)
        elif filename.endswith(".tsv"):
            shard_files[filename[: -len(".tsv")]] = rows
    order = sorted(shard_files, key=lambda name: int(name.split("-")[0]))
    return {name: shard_files[name] for name in order}, audio


# Snakemake rewrites <name> in a rule's paths (its path variables) and reads {name} as
# a wildcard; the paths that reach Snakemake must hold neither.
_SNAKEMAKE_SYNTAX = re.compile(r"<[a-z][a-z0-9_]*>|[{}]")


def check_snakemake_paths(config):
    """Refuse output_dir, dataset and labels paths that Snakemake would rewrite, so that
    every path reaches the filesystem as given. (embedding_dir, audio_dir and the file
    names never reach Snakemake: the manifests hold them.)"""
    for key, value in (("output_dir", config["output_dir"]), ("dataset", config["dataset"]), ("labels", config["labels"])):
        found = _SNAKEMAKE_SYNTAX.search(value) if value is not None else None
        if found:
            where = " (the basename of embedding_dir; set dataset=NAME)" if key == "dataset" else ""
            raise ConfigError(
                f"{key} '{value}'{where} holds '{found.group()}', which Snakemake would rewrite in its paths; choose a path without <name> or braces"
            )


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


def check_sizes(n_files, combos):
    """Refuse, before any job runs, settings that cannot work for n_files."""
    where = f"only {n_files} .npy files in '{combos[0]['embedding_dir']}'"
    for s in resolve_auto(combos, n_files):
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


# ---- assignment of new clips (assign_dir) ---------------------------------------------


def assign_result(config, root, combos, schema=None):
    """The folder under root that assign_dir's clips are assigned to: a result's name
    (pooling/reducer/clusterer) or 'best' (the sweep's chosen result, known once the
    selection has run). None when nothing is to be assigned."""
    if config["assign_dir"] is None:
        return None
    found = results(root, combos)
    sweep_with_best = len(found) > 1 and combos[0]["selection"] == "auto"
    to = config["assign_to"]
    if to in ("auto", "best"):
        if len(found) == 1 and to == "auto":
            return found[0]["name"]
        if sweep_with_best:
            return "best"
        raise ConfigError(
            f"assign_to={to} needs "
            + ("a sweep with selection: auto (best/ exists only then)" if to == "best" else "one result, or a sweep with selection: auto")
            + f"; name the result instead, e.g. assign_to={found[0]['name']}"
        )
    name = to.strip("/")
    if name.startswith(root.rstrip("/") + "/"):
        name = name[len(root.rstrip("/")) + 1 :]
    known = list(dict.fromkeys([r["name"] for r in found] + results_on_disk(root)))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; this config makes {known[0]}"
    parts = name.split("/")
    kinds = ("pooling", "reducer", "clusterer")
    if len(parts) != 3 or not all(re.fullmatch(SLUG_PATTERNS[kind], part) for kind, part in zip(kinds, parts)):
        raise ConfigError(f"assign_to '{to}' is not auto, best or a result's folder under '{root}'{hint}")
    # Numbers as the workflow writes them: pca-050 would name a folder of its own.
    canonical = re.sub(r"(?<![0-9])0+(?=[0-9])", "", name)
    if canonical != name:
        raise ConfigError(f"assign_to '{to}' is not a result's folder as embclust names it; did you mean '{canonical}'?")
    if schema is not None:
        for key, value in result_settings(parts).items():
            prop = schema["properties"][key]
            if not allowed(value, prop):
                raise ConfigError(f"assign_to '{to}' has {key}={value}, which is not allowed; allowed: {describe(prop)}")
    if name not in known:
        raise ConfigError(f"assign_to '{to}' is no result under '{root}' and not one this config makes{hint}")
    return name


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


def prepare_assign(config, manifest_dir, width, say, check_files):
    """List assign_dir, check its files' headers against the clustered width and write
    the manifests of its shards (as prepare_inputs does for embedding_dir): (shards, audio).
    check_files(paths) -> (width, longest): the pool stage's header check."""
    new, notes = list_embeddings(config["assign_dir"], "assign_dir")
    for note in notes:
        say(note)
    try:
        new_width, _ = check_files([row.path for row in new])
    except ValueError as e:
        raise ConfigError(f"assign_dir: {e}") from None
    if new_width != width:
        raise ConfigError(
            f"assign_dir files are {new_width} wide, the clustered files {width}: {_shown([row.path for row in new])}"
        )
    shard_files = shards(new, shard_count(config["pool_shards"], len(new)))
    audio = list_audio(config["audio_dir"], [row.id for row in new]) if config["audio_dir"] else None
    write_manifests(manifest_dir, shard_files, audio)
    return shard_files, audio or {}


def os_error_line(e):
    """One line for a filesystem error at start-up (a folder that cannot be created,
    written or read), naming the path."""
    where = f" '{e.filename}'" if e.filename else ""
    return (
        f"cannot create, write or read{where} at start-up ({e.strerror or e}): check the permissions of "
        "output_dir and of the input folders, and that output_dir is on a writable file system"
    )


def finish_quickly():
    """Called by the Snakefile once the run is over (onsuccess, onerror): skips two waits
    before Python exits.

    Snakemake's scheduler arms a one-second threading.Timer after each round of job
    selection and Python waits for it at exit, so every run ended up to 1 s after its last
    job: the timers are cancelled (nothing needs rescheduling now). And Python's exit walks
    every live object looking for reference cycles (0.4 s at 20,000 files, more with more
    files): gc.freeze() leaves the objects of the finished run out of that walk.
    """
    import gc
    import threading

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
    gc.freeze()
