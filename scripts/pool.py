"""Pool stage: one vector per .npy file, stacked into a float32 matrix, for one
shard of the files (scripts/merge_pool.py joins the shards).

Every file is checked from its header first (cheap), so a bad directory fails
with one line naming the bad files before any pooling work is done.
"""

import functools
import io
import json
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _stage import InputError, Progress, read_manifest, write_ids, write_npy_header

METHODS = ("mean", "max", "meanstd", "flatten")
# The largest pooled value accepted. PCA's covariance and the neighbour distances are
# float32 sums of squared differences, at most max(files, columns) x (2 x LARGEST)^2:
# that stays below float32's largest (3.4e38) up to 85 million files or columns.
# float16 files (|x| <= 65504) never come near it and are not checked.
LARGEST = 1e15
# Files read ahead in parallel by each pool job (twice as many are in memory).
READERS = 8
# Whisper's encoder output for its 30 s window: files of this many frames are taken to be
# Whisper's, padded, and trim_padding: auto finds their padding (speech_frames).
WHISPER_FRAMES = 1500
# A frame is far from the padding when its distance to the padding template at its position
# is more than this share of the template frame's norm. Chosen on the quality bench's
# development draws of the Whisper sets (bench/README.md, "Whisper").
PADDING_DISTANCE = 0.8


def _names(paths, limit=3):
    shown = ", ".join(os.path.basename(p) for p in paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


# Readers of the header's length and dict, by format version. Version 3.0 differs from
# 2.0 only in allowing UTF-8 in the dict, which a float array's header never needs.
_HEADER_READERS = {
    (1, 0): (2, np.lib.format.read_array_header_1_0),
    (2, 0): (4, np.lib.format.read_array_header_2_0),
    (3, 0): (4, np.lib.format.read_array_header_2_0),
}


@functools.lru_cache(maxsize=4096)
def _parse_header(version, raw):
    """(shape, fortran_order, dtype) from a header's bytes. Parsing the dict costs more
    than reading the file's first bytes, and files of one shape share a header
    (all Whisper outputs do), so each distinct header is parsed once."""
    return _HEADER_READERS[version][1](io.BytesIO(raw))


def header_problem(path):
    """(frames, width, dtype) of a .npy file, without reading its data, or a string
    saying why pooling cannot use it."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _HEADER_READERS:
                return f"not a readable .npy file (format version {version})"
            raw = f.read(_HEADER_READERS[version][0])
            raw += f.read(int.from_bytes(raw, "little"))
            shape, _, dtype = _parse_header(version, raw)
            offset = f.tell()
    except Exception as e:  # numpy raises several types for a damaged header
        return f"not a readable .npy file ({e})"
    if dtype.hasobject:
        return "holds Python objects (a pickled array); only float arrays are accepted"
    # Either byte order: big-endian files are converted when read (load_frames).
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        return f"dtype {dtype} is not float16, float32 or float64"
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 1:
        shape = (1,) + shape
    if len(shape) != 2:
        return f"shape {shape} is not (D,), (T, D) or (1, T, D)"
    frames, width = shape
    if frames == 0:
        return "has 0 frames"
    if width == 0:
        return "has width 0"
    need = offset + frames * width * dtype.itemsize
    have = os.path.getsize(path)
    if have < need:
        return f"truncated ({have} of {need} bytes)"
    return frames, width, dtype


def read_header(path):
    """(frames, width, dtype) of a .npy file; InputError naming the file for anything
    pooling cannot use."""
    found = header_problem(path)
    if isinstance(found, str):
        raise InputError(f"{os.path.basename(path)}: {found}")
    return found


def check_files(paths, pooled=()):
    """Headers of all files: returns (width, longest frame count) or raises one InputError
    naming every problem once, with a few of the files that have it. `pooled`: groups of
    files already pooled without fault, as (width, paths): their headers are not read
    again, but they count in the check that every file has one width."""
    bad, by_width, longest = {}, {}, 0
    for width, group in pooled:
        by_width.setdefault(width, []).extend(group)
    for path in paths:
        found = header_problem(path)
        if isinstance(found, str):
            bad.setdefault(found, []).append(path)
            continue
        frames, width, _ = found
        by_width.setdefault(width, []).append(path)
        longest = max(longest, frames)
    if bad:
        problems = sorted(bad.items(), key=lambda kv: -len(kv[1]))
        shown = "; ".join(f"{_names(ps)}: {problem}" for problem, ps in problems[:3])
        hidden = sum(len(ps) for _, ps in problems[3:])
        more = f" (+{hidden} more bad files)" if hidden else ""
        raise InputError(shown + more)
    if len(by_width) > 1:
        raise widths_differ({width: sorted(group) for width, group in by_width.items()})
    return next(iter(by_width)), longest


def widths_differ(paths_by_width):
    """The error for files of several widths, naming a few of each."""
    groups = sorted(paths_by_width.items(), key=lambda kv: -len(kv[1]))
    detail = "; ".join(f"width {w} in {len(ps)} files: {_names(ps)}" for w, ps in groups)
    return InputError(f"embedding widths differ: {detail}")


def pooled_width(method, width, frames):
    return {"mean": width, "max": width, "meanstd": 2 * width, "flatten": frames * width}[method]


# float16 -> float32 bits: the int16 shifted into float32 position (sign extension
# fills bits 28-30, which the mask clears), then 2^112 corrects the exponent bias.
_FLOAT16_MASK = np.int32(-0x70000001)  # 0x8FFFFFFF
_FLOAT16_SCALE = np.float32(2.0**112)


def float16_column_sums(frames):
    """(float32 column sums, all finite?) of a (T, D) float16 array.

    numpy converts float16 one value at a time (~1 GB/s per core), which made
    pooling Whisper's float16 outputs CPU-bound; these integer operations are
    vectorised (~6 GB/s) and exact, subnormals included. Rows are added in order
    in float32, so the sums equal a.sum(axis=0, dtype=np.float32) bit for bit.
    Inf and NaN come out as finite values of magnitude >= 2^16, above float16's
    largest (65504): that is how they are caught."""
    bits = np.ascontiguousarray(frames).view(np.int16).astype(np.int32)
    bits <<= 13
    bits &= _FLOAT16_MASK
    values = bits.view(np.float32)
    values *= _FLOAT16_SCALE
    finite = values.max(initial=0) < 65536 and values.min(initial=0) > -65536
    return values.sum(axis=0), finite


def pool_array(frames_by_width, method, frames=None):
    """One float32 vector from a (T, D) array; None if it holds NaN or Inf. Finite
    float64 values beyond float32's range (3.4e38) give Inf in the vector."""
    a = frames_by_width
    if method == "mean":
        if a.dtype == np.float16:
            total, finite = float16_column_sums(a)
            return total / a.shape[0] if finite else None
        # The float32 sum is non-finite when some value is, or when finite values near
        # float32's largest (3.4e38) overflow it: one pass, and a float64 sum only then.
        total = a.sum(axis=0, dtype=np.float32)
        if np.isfinite(total).all():
            return total / a.shape[0]
        if not np.isfinite(a).all():
            return None
        return (a.sum(axis=0, dtype=np.float64) / a.shape[0]).astype(np.float32)
    if not np.isfinite(a).all():
        return None
    if method == "max":
        return a.max(axis=0).astype(np.float32)
    if method == "meanstd":
        a64 = a.astype(np.float64)
        return np.concatenate([a64.mean(axis=0), a64.std(axis=0)]).astype(np.float32)
    # flatten: keep the first `frames` frames, zero-pad shorter files.
    out = np.zeros((frames, a.shape[1]), dtype=np.float32)
    keep = min(frames, a.shape[0])
    out[:keep] = a[:keep]
    return out.reshape(-1)


def padding_distance(frames, template):
    """Each frame's distance to the padding template's frame at its position, relative to
    the template frame's norm."""
    difference = frames.astype(np.float32) - template
    return np.linalg.norm(difference, axis=1) / np.maximum(np.linalg.norm(template, axis=1), 1e-30)


def speech_frames(frames, template, threshold=PADDING_DISTANCE):
    """How many leading frames of a padded (T, D) array hold the clip, given the padding
    template (padding.py: "template" (T, D), and "spread" (T,), where more than half the
    threshold marks a position where the sample's densest frame is speech, and every frame
    counts as speech): the end that best splits the frames into far from the padding
    before it and near it after, i.e. with the fewest near frames before plus far after.
    Not the last far frame: in base's padding a few positions lie far from the template in
    most clips, and one such frame would keep the whole padding. None when no split beats
    keeping no frame (a clip that looks all padding, silence): it keeps every frame."""
    far = padding_distance(frames, template["template"]) > threshold
    far |= template["spread"] > threshold / 2
    near_before = np.concatenate([[0], np.cumsum(~far)])
    far_after = np.concatenate([np.cumsum(far[::-1])[::-1], [0]])
    end = int((near_before + far_after).argmin())
    return end or None


def load_frames(path):
    a = np.load(path, allow_pickle=False)
    if not a.dtype.isnative:  # big-endian floats: swapped in place, no copy
        a = a.byteswap(inplace=True).view(a.dtype.newbyteorder("="))
    return a.reshape(-1, a.shape[-1])


def read_ahead(paths, readers=READERS):
    """The frames of each file, in order, read by `readers` threads ahead of use:
    reads from a cold disk are latency-bound, and several in flight go faster."""
    with ThreadPoolExecutor(readers) as pool:
        pending = deque(pool.submit(load_frames, p) for p in paths[: 2 * readers])
        for following in paths[2 * readers :] + [None] * len(pending):
            frames = pending.popleft().result()
            if following is not None:
                pending.append(pool.submit(load_frames, following))
            yield frames


def audio_frames(wav_path, frames_per_second):
    """Embedding frames that cover the audio: ceil(duration x frames_per_second), at least 1."""
    import soundfile

    try:
        duration = soundfile.info(wav_path).duration
    except Exception as e:  # soundfile raises its own error types for unreadable audio
        raise InputError(f"{os.path.basename(wav_path)}: cannot read its duration ({e})") from None
    return max(1, math.ceil(duration * frames_per_second - 1e-9))


def pool_files(paths, method, frames, matrix_path, log, keep_frames=None, template=None):
    """Pool every file into a float32 .npy matrix at matrix_path (rows in paths order).

    frames: frame count for method='flatten' (None = the longest file's).
    keep_frames: per file, pool only its first n frames (None = all), e.g. to drop padding.
    template: the padding template (padding.py); a file with no keep_frames and as many
    frames as the template is trimmed where speech_frames finds its padding.
    Returns {"width": D, "frames": frames used by flatten, "dim": pooled width, "kept":
    frames pooled per file, "trimmed_by": per file "audio", "frames" or null (all kept)}.
    """
    if method not in METHODS:
        raise ValueError(f"unknown pooling {method!r}")
    width, longest = check_files(paths)
    frames = frames or longest
    dim = pooled_width(method, width, frames)
    log.info(f"pooling {len(paths)} files of width {width} by {method} -> {dim} dims")
    # Written front to back, row by row: flatten never holds N x T*D in memory,
    # and no memory map makes the written pages count as this job's memory.
    progress = Progress(log, len(paths), "files pooled")
    nonfinite, too_large, zero, nbytes = [], [], [], 0
    keep_frames = keep_frames or [None] * len(paths)
    kept, trimmed_by = [], []
    zeros = np.zeros(dim, dtype=np.float32)
    with open(matrix_path, "wb") as out:
        write_npy_header(out, (len(paths), dim))
        for i, (path, frames_of_file) in enumerate(zip(paths, read_ahead(paths))):
            keep, by = keep_frames[i], "audio"
            if keep is None and template is not None and frames_of_file.shape == template["template"].shape:
                keep, by = speech_frames(frames_of_file, template), "frames"
            a = frames_of_file[:keep]
            kept.append(int(a.shape[0]))
            trimmed_by.append(by if keep is not None else None)
            with np.errstate(over="ignore"):  # float64 beyond float32's range: caught below
                vector = pool_array(a, method, frames)
            if vector is None:
                nonfinite.append(path)
                vector = zeros
            elif a.dtype != np.float16 and not np.abs(vector).max() <= LARGEST:  # Inf: float64 beyond float32
                too_large.append(path)
                vector = zeros
            if not vector.any():
                zero.append(path)
            out.write(vector.tobytes())
            nbytes += a.nbytes
            progress.update(i + 1, nbytes)
    if nonfinite or too_large:
        os.remove(matrix_path)  # no partial output
        problems = [f"NaN or Inf values in {len(nonfinite)} files: {_names(nonfinite)}"] if nonfinite else []
        if too_large:
            problems.append(
                f"pooled values beyond {LARGEST:.0e} in magnitude, too large for the float32 sums of squares "
                f"after pooling (PCA, distances), in {len(too_large)} files: {_names(too_large)}"
            )
        raise InputError("; ".join(problems))
    # zero_vectors: files pooling to all-zero vectors, which have no cosine direction (scripts/cosine_check.py).
    return {"width": int(width), "frames": int(frames), "dim": int(dim), "zero_vectors": zero, "kept": kept, "trimmed_by": trimmed_by}


def main(snakemake, log):
    # The shard's files come from its manifest, written when the workflow started.
    rows, digest = read_manifest(snakemake.input.files, digest=True)
    ids, paths = [r[0] for r in rows], [r[1] for r in rows]
    params = snakemake.params.pooling
    keep_frames, audio_digest = None, None
    _hold_for_tests()
    if params["frames_per_second"]:
        wav_rows, audio_digest = read_manifest(snakemake.input.wavs, digest=True)
        wavs = {r[0]: r[1] for r in wav_rows}
        keep_frames = [audio_frames(wavs[i], params["frames_per_second"]) if i in wavs else None for i in ids]
        if len(wavs) < len(ids):
            log.say(f"{len(ids) - len(wavs)} of {len(ids)} files have no <id>.wav in audio_dir: pooling all their frames")
    template = dict(np.load(snakemake.input.template)) if params["detect"] else None
    info = pool_files(paths, params["method"], params["frames"], snakemake.output.matrix, log, keep_frames, template)
    write_ids(ids, paths, snakemake.output.ids)
    # The manifests pooled, by digest: a start that finds the manifest changed since (a
    # file added while this job ran) pools the shard again (manifests.check_shards).
    # Written last, and whole, so a record is there only for a finished shard.
    record = dict(info, method=params["method"], files=len(paths), manifest_sha256=digest, audio_manifest_sha256=audio_digest)
    with open(f"{snakemake.output.info}.partial", "w") as f:
        json.dump(record, f, allow_nan=False)
    os.replace(f"{snakemake.output.info}.partial", snakemake.output.info)


def _hold_for_tests():
    """For the tests only: EMBCLUST_TEST_POOL_DELAY=seconds holds each pool job after it
    has read its manifest, so that a test can rewrite the manifest meanwhile."""
    delay = float(os.environ.get("EMBCLUST_TEST_POOL_DELAY") or 0)
    if delay:
        import time

        time.sleep(delay)


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
