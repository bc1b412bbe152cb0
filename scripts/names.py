"""Cluster names that a researcher gave in the interactive map, read back into the workflow.

The map's Export writes `cluster_names.csv`: a first line naming the result it was made
from, then `cluster,name` rows:

    # embclust result: mean/pca-50/hdbscan-mcs5-ms5-euclidean input_ids_sha256=3f1c...
    cluster,name
    0,dog barks
    3,door slams

The result is its folder under <output_dir>/<dataset>/ plus the digest of its sorted ids
(provenance.json's `input_ids_sha256`): the folder alone would match a rerun on other
files, whose cluster 3 is another cluster. The config key `cluster_names` lists such files,
one per result at most; each goes to the result its first line names (so a sweep needs no
mapping from results to files). The figures, maps and clusters_hard.json of that result
read it; nothing above them does, so a new name redraws only those.
"""

import csv
import hashlib
import io
import re

from _stage import InputError

HEADER = "# embclust result: "
IDENTITY = re.compile(r"# embclust result: (\S+/\S+/\S+) input_ids_sha256=([0-9a-f]{64})\s*")


def ids_digest(ids):
    """provenance.json's input_ids_sha256: the sorted ids, one a line."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def identity_line(result, digest):
    return f"{HEADER}{result} input_ids_sha256={digest}"


def read(path):
    """(result, digest, {cluster id: name}) from a cluster names CSV; InputError with one
    line naming the file and what is wrong."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"cluster_names file '{path}' does not exist") from None
    except UnicodeDecodeError:
        raise InputError(f"cluster_names file '{path}' is not UTF-8 text; save it as UTF-8") from None
    first, _, rest = text.partition("\n")
    found = IDENTITY.fullmatch(first.rstrip("\r"))
    if not found:
        raise InputError(
            f"cluster_names file '{path}' does not start with the line '{HEADER}<result folder> "
            "input_ids_sha256=<digest>' that the map's Export writes (it says which result the names are for)")
    rows = csv.reader(io.StringIO(rest, newline=""))
    header = next(rows, [])
    if header != ["cluster", "name"]:
        raise InputError(f"cluster_names file '{path}' needs the columns cluster,name on its second line; it has {header}")
    names = {}
    for row in rows:
        if not row:
            continue
        where = f"cluster_names file '{path}' line {rows.line_num + 1}"
        if len(row) != 2 or not re.fullmatch(r"\d+", row[0].strip()):
            raise InputError(f"{where}: expected a cluster id (0, 1, ...) and a name, got {row}")
        cluster = int(row[0])
        if cluster in names:
            raise InputError(f"{where}: cluster {cluster} is named twice")
        if row[1].strip():
            names[cluster] = row[1].strip()
    return found.group(1), found.group(2), names


def by_result(paths, results):
    """{result folder: path} for the cluster_names files; InputError for a file whose
    result this run does not make, or two files for one result."""
    out = {}
    for path in paths:
        result = read(path)[0]
        if result not in results:
            shown = ", ".join(sorted(results)[:4]) + (" ..." if len(results) > 4 else "")
            raise InputError(f"cluster_names file '{path}' is for the result {result}, which this run does not make "
                             f"(it makes {shown})")
        if result in out:
            raise InputError(f"cluster_names files '{out[result]}' and '{path}' both name the clusters of {result}")
        out[result] = path
    return out


def load(path, result, ids, n_clusters):
    """{cluster id: name} from `path`, checked against the result it is used for: its
    folder, its ids' digest and its cluster ids. None for no file."""
    if not path:
        return None
    named, digest, names = read(path)
    if named != result:
        raise InputError(f"cluster_names file '{path}' is for the result {named}, not {result}")
    if digest != ids_digest(ids):
        raise InputError(f"cluster_names file '{path}' was exported from a result of other input files "
                         f"(input_ids_sha256 {digest[:12]}..., this run's {ids_digest(ids)[:12]}...)")
    unknown = sorted(c for c in names if c >= n_clusters)
    if unknown:
        raise InputError(f"cluster_names file '{path}' names cluster(s) {', '.join(map(str, unknown[:5]))}, but {result} "
                         f"has clusters 0 to {n_clusters - 1}")
    return names

