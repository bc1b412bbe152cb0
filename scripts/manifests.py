"""The pool jobs' inputs: files into shards by id, each shard's manifest (written only
when its text changes), the manifest of the padding template's sample
(padding.padding_sample), whether a shard was pooled from its current manifest, and the
same for assign_dir; os_error_line for a filesystem error at start-up.
"""

import os
import zlib

from _stage import manifest_digest, manifest_text, read_manifest
from auto_settings import check_sizes
from configuration import ConfigError
from inputs import Embedding, list_audio, list_embeddings, shown_names
from padding import padding_sample
from paths import parse_pooling


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
            f"assign_dir files are {new_width} wide, the clustered files {width}: {shown_names([row.path for row in new])}"
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
