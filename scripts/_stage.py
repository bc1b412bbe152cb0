"""Plumbing shared by the stage scripts: logging and one-line errors.

Only I/O plumbing lives here, never results logic, because Snakemake reruns a
stage when its own script changes but not when an imported module does.
"""

import functools
import sys
import time
import traceback


class InputError(ValueError):
    """A problem with the user's data, reported as one line naming the file(s)."""


class Log:
    """Writes to the job's log file; `say` also reaches the terminal. A log that cannot
    be written (a full disk) is given up, so that the terminal line still comes."""

    def __init__(self, stream=None, stage="embclust"):
        self.stream = stream
        self.stage = stage

    def info(self, msg):
        if self.stream is not None:
            try:
                print(msg, file=self.stream, flush=True)
            except OSError:
                self.give_up()

    def give_up(self):
        """Stop writing to the log, and route stderr back to the terminal."""
        stream, self.stream = self.stream, None
        if stream is None:
            return
        if sys.stderr is stream:
            sys.stderr = sys.__stderr__
        try:
            stream.close()
        except OSError:  # the unwritten rest of a full disk's log
            pass

    def say(self, msg):
        print(f"embclust {self.stage}: {msg}", file=sys.__stderr__, flush=True)
        self.info(msg)


class Progress:
    """Logs 'done/total' with a rate at most every `every` seconds."""

    def __init__(self, log, total, what, every=5.0):
        self.log, self.total, self.what, self.every = log, total, what, every
        self.start = self.last = time.monotonic()

    def update(self, done, nbytes=0):
        now = time.monotonic()
        if now - self.last >= self.every or done == self.total:
            self.last = now
            secs = max(now - self.start, 1e-9)
            rate = f"{done / secs:.0f}/s" + (f", {nbytes / secs / 1e6:.0f} MB/s" if nbytes else "")
            self.log.info(f"{done}/{self.total} {self.what} in {secs:.1f} s ({rate})")


def write_npy_header(f, shape):
    """The header of a C-order float32 .npy file; the caller writes the rows after it."""
    import numpy as np

    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})


def write_ids(ids, paths, ids_path):
    """The pooled matrix's row index: one id and source path per row."""
    with open(ids_path, "w", encoding="utf-8") as f:
        f.write("id\tpath\n")
        for i, p in zip(ids, paths):
            f.write(f"{i}\t{p}\n")


def read_ids(ids_path):
    """(ids, paths) from the ids.tsv that the pool stage writes beside its matrix."""
    with open(ids_path, encoding="utf-8", newline="\n") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    return [r[0] for r in rows], [r[1] for r in rows]


MANIFEST_HEADER = "id\tpath\tsize\tmtime_ns\n"


def manifest_text(rows):
    """A pool job's list of files (written at start-up by scripts/manifests.py): one
    row per file, id, path, size in bytes and mtime in ns. Names holding a tab, a
    newline or a carriage return are refused before this is written."""
    return MANIFEST_HEADER + "".join(f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\n" for r in rows)


def read_manifest(path, digest=False):
    """[(id, path, size, mtime_ns), ...] from a manifest; with digest=True, also the
    SHA-256 of the very bytes parsed (manifest_digest), which a pool job records so that
    a later start can tell whether the manifest changed since (manifests.check_shards)."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8")
    if not text.startswith(MANIFEST_HEADER):
        raise ValueError(f"{path} is not a manifest of embclust")
    out = []
    for line in text[len(MANIFEST_HEADER) :].split("\n")[:-1]:
        clip_id, file_path, size, mtime_ns = line.split("\t")
        out.append((clip_id, file_path, int(size), int(mtime_ns)))
    return (out, sha256_bytes(data)) if digest else out


def sha256_bytes(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def manifest_digest(path):
    """SHA-256 of a manifest's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return sha256_bytes(f.read())
    except FileNotFoundError:
        return None


def read_labels(path):
    """(label column names, {id: {column: value}}) from a labels CSV with an `id` column."""
    import csv

    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark (inputs.check_labels
    # has refused anything else these would misread before any job ran).
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames if c != "id"]
        return columns, {row["id"]: {c: row[c] for c in columns} for row in reader}


def read_json_files(paths):
    import json

    out = []
    for path in paths:
        with open(path) as f:
            out.append(json.load(f))
    return out


# The packages whose numba functions cache_compiled_code keeps on disk.
NUMBA_PACKAGES = ("umap", "pynndescent")


@functools.cache  # once a process: later calls (layout's samples, each stage) find it done
def cache_compiled_code():
    """Keep umap-learn's and pynndescent's compiled numba functions on disk.

    Both mark only some of their functions cache=True, so every job compiled the rest
    again: about 26 s of the first NN-descent in a process and 6 s of a UMAP layout on
    these 2 cores (bench/README.md, "Compiled once"). With caching on, a later job loads
    the same machine code, so the numbers do not change. Numba compiles what it cannot
    cache (pynndescent's nn_descent takes its distance as an argument: about 11 s) as
    before, and caches nothing where it finds no writable cache directory."""
    import warnings

    import pynndescent  # noqa: F401  (imported so that its modules are in sys.modules)
    import umap  # noqa: F401
    from numba.core.dispatcher import Dispatcher
    from numba.core.errors import NumbaWarning

    warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=NumbaWarning)
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in NUMBA_PACKAGES:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher):
                try:
                    value.enable_caching()
                except RuntimeError:  # no cache directory it can write
                    return


def run(snakemake, main):
    """Run main(snakemake, log) with stderr in the job log: an InputError becomes one
    line on the terminal, any other failure one line there plus its traceback in the log.
    The line comes even when the log cannot be written (a full disk)."""
    try:
        # Left open for the life of the job, so that late warnings and tracebacks reach it.
        stream = open(snakemake.log[0], "w", buffering=1)
        sys.stderr = stream  # library warnings go to the log, not the terminal
    except OSError:  # no room even for the log
        stream = None
    log = Log(stream, snakemake.rule)
    try:
        main(snakemake, log)
    except InputError as e:
        log.say(f"error: {e}")
        log.give_up()
        sys.exit(1)
    except Exception as e:
        where = f"traceback in {snakemake.log[0]}"
        try:
            if log.stream is None:
                raise OSError  # not print_exc(file=None): that is the terminal
            traceback.print_exc(file=log.stream)
            log.stream.flush()
        except OSError:  # a full disk
            where = "no traceback: its log could not be written"
        log.say(f"failed: {type(e).__name__}: {e} ({where})")
        # Closed here: a failed flush at exit would print 'lost sys.stderr' and exit 120.
        log.give_up()
        sys.exit(1)
