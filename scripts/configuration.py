"""The config: its schema, coercion of `--config` values, validation (one line naming
the key, the value and what is allowed), sweeps as combinations, relative paths
found in the workflow's own folder, and the result that assign_to names. What each
`auto` means for the files at hand is in auto_settings.py.

Named configuration, not config: the Snakefile's namespace already has Snakemake's
`config` dict.
"""

import difflib
import itertools
import os
import re

from paths import SLUG_PATTERNS, result_settings, results, results_on_disk

# jsonschema and yaml are imported where they are used (validating the config at
# start-up): the stage jobs never import this module.

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


# Inputs that a config may name relative to the workflow's own folder: the demo.
WORKFLOW_RELATIVE_KEYS = ("embedding_dir", "labels")


def cluster_names_files(config):
    """The cluster_names files as a list (the key takes one path or a list, one per
    result; scripts/names.py assigns each to the result its first line names)."""
    value = config.get("cluster_names")
    if value is None:
        return []
    return [str(p) for p in (value if isinstance(value, list) else [value])]


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
