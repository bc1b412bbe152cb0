"""The input folders at start-up: listing embedding_dir's and assign_dir's .npy files
(one level of subfolders, names the TSVs can hold, unique ids), the wavs of audio_dir,
the labels CSV, and the checks that keep inputs and outputs apart.
"""

import collections
import csv
import io
import os
import stat
from typing import NamedTuple

from configuration import ConfigError, cluster_names_files


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


def shown_names(names, limit=3):
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
            raise ConfigError(f"file names embclust cannot use in '{directory}' (rename them): {shown_names(bad)}")
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
        notes.append(f"skipped {len(broken)} links in '{directory}' that lead nowhere (dangling or a loop): {shown_names(sorted(broken))}")
    if deeper:
        notes.append(
            f"{len(deeper)} folders two levels down in '{directory}' are not read (only its subfolders are): {shown_names(sorted(deeper))}"
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
    for path in cluster_names_files(config):
        if not os.path.isfile(path):
            raise ConfigError(f"cluster_names file '{path}' does not exist")
    if config["audio_dir"] is not None and not os.path.isdir(config["audio_dir"]):
        raise ConfigError(f"audio_dir '{config['audio_dir']}' does not exist or is not a directory")
    trims = config["trim_padding"] if isinstance(config["trim_padding"], list) else [config["trim_padding"]]
    if any(t is True for t in trims) and config["audio_dir"] is None:
        raise ConfigError("trim_padding needs audio_dir: the directory holding <id>.wav, for each clip's duration")
