"""Padding stage: the template of Whisper's padding frames, for trim_padding: auto.

Whisper pads every clip to 30 s, and its encoder's output for the padding is much
the same from clip to clip at each position: frame t of a padded region lies near
frame t of the other clips' padding, while speech frames lie far from each other.
So the template's frame at each of the 1,500 positions is the densest of a fixed
sample of the files' frames there: the one whose NEIGHBOURS-th nearest other frame
is nearest. That is a padding frame wherever at least NEIGHBOURS + 1 sampled clips
are padded, even where most clips still hold speech (long clips), where a median
or medoid would be speech; and it is a real frame, where the per-dimension median
is none (at one position of tiny.en its norm was half the frames', and every clip
looked like speech there). Where fewer than NEIGHBOURS + 1 sampled clips are
padded (the first frames, where nearly every clip speaks), the densest frame is
speech and its NEIGHBOURS-th neighbour far: the template records that spread, and
a frame at a position whose spread is more than half of PADDING_DISTANCE counts as
speech. The pool jobs then keep each file's frames up to the end that best splits
them into far from the template and near it (pool.speech_frames).

The sample is the files whose ids hash lowest (padding_sample; its manifest is written
at start-up by scripts/manifests.py), so it changes rarely as files are added, and the
template with it.
"""

import json
import zlib

import numpy as np
from _stage import InputError, Progress, read_manifest
from pool import PADDING_DISTANCE, WHISPER_FRAMES, load_frames, speech_frames

# The densest frame is the one nearest to its NEIGHBOURS-th nearest other frame.
NEIGHBOURS = 8

# trim_padding: auto finds Whisper's padding from a template made of this many files.
PADDING_SAMPLE = 128


def padding_sample(embeddings, n=PADDING_SAMPLE):
    """The files the padding template is made of: the n whose ids hash lowest (crc32, salted
    apart from the shards'), in id order, so that added files seldom change the sample."""
    ranked = sorted(embeddings, key=lambda row: (zlib.crc32(b"padding:" + row.id.encode()), row.id))
    return sorted(ranked[:n], key=lambda row: row.id)


def densest(frames, neighbours=NEIGHBOURS):
    """(the row of frames (n, D) whose `neighbours`-th nearest other row is nearest, that
    distance relative to the row's norm)."""
    f = frames.astype(np.float64)
    gram = f @ f.T
    squared = np.diag(gram)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0.0))
    k = min(neighbours, len(f) - 1)  # column 0 of each sorted row is the row itself
    kth = np.partition(distances, k, axis=1)[:, k]
    i = int(kth.argmin())
    return frames[i].astype(np.float32), float(kth[i] / max(np.sqrt(squared[i]), 1e-30))


def padding_template(paths, log):
    """({"template": (1500, D) float32, "spread": (1500,)}, summary) from the Whisper-shaped
    files among paths."""
    arrays = []
    progress = Progress(log, len(paths), "files read")
    for i, path in enumerate(paths):
        a = load_frames(path)
        if a.shape[0] == WHISPER_FRAMES:
            arrays.append(a)
        progress.update(i + 1)
    if len(arrays) < 2:
        raise InputError(
            f"trim_padding: auto found {len(arrays)} files of {WHISPER_FRAMES} frames among the {len(paths)} sampled; "
            "set trim_padding: false (or true, with audio_dir) for files that are not Whisper's padded outputs"
        )
    stack = np.stack(arrays)
    frames, spread = zip(*(densest(stack[:, t]) for t in range(WHISPER_FRAMES)))
    template = {"template": np.stack(frames), "spread": np.array(spread, dtype=np.float32)}
    found = np.array([speech_frames(a, template) or WHISPER_FRAMES for a in arrays])
    summary = {
        "files": len(arrays),
        "sampled": len(paths),
        "positions_taken_as_speech": int((template["spread"] > PADDING_DISTANCE / 2).sum()),
        "speech_frames": [int(found.min()), int(np.median(found)), int(found.max())],
    }
    return template, summary


def main(snakemake, log):
    paths = [row[1] for row in read_manifest(snakemake.input.sample)]
    template, summary = padding_template(paths, log)
    log.info(
        f"padding template from {summary['files']} files; in them, speech found in {summary['speech_frames'][0]}-"
        f"{summary['speech_frames'][2]} frames (median {summary['speech_frames'][1]})"
    )
    with open(snakemake.output.template, "wb") as f:
        np.savez(f, **template)
    with open(snakemake.output.summary, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
