"""Whisper's padding found in the frames (scripts/padding.py, pool.speech_frames), and
trim_padding: auto in a real run."""

import json

import numpy as np
import pytest
from _stage import InputError, Log
from padding import padding_template
from pool import WHISPER_FRAMES, pool_files, speech_frames

WIDTH = 16


def whisper_like(directory, lengths, groups=None, seed=0):
    """Files shaped like Whisper's outputs: (1500, WIDTH) float16, speech in the first
    lengths[i] frames (around the group's centre when groups are given), then padding
    that is, at each position, one shared frame plus a little noise per clip, with the
    padding right after speech still on its way there (decaying over 5 frames)."""
    rng = np.random.default_rng(seed)
    padding = rng.normal(0, 1, size=(WHISPER_FRAMES, WIDTH)) + 4.0  # the same for every clip
    speech = rng.normal(0, 1, size=WIDTH) * 8  # what all speech frames share, unlike padding
    centres = rng.normal(0, 6, size=(max(groups or [0]) + 1, WIDTH))
    paths = []
    directory.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(lengths):
        a = padding + rng.normal(0, 0.05, size=padding.shape)
        centre = centres[groups[i]] if groups else 0.0
        a[:n] = padding[:n] + speech + centre + rng.normal(0, 4, size=(n, WIDTH))
        for k in range(1, min(5, WHISPER_FRAMES - n + 1)):  # a decaying echo of the speech, well under the threshold
            a[n + k - 1] += 0.02 * (5 - k) * (a[n - 1] - padding[n - 1])
        path = directory / f"clip{i:03d}.npy"
        np.save(path, a.astype(np.float16))
        paths.append(str(path))
    return paths


def test_a_known_speech_length_is_found(tmp_path):
    # Most clips are long, so at the short clips' ends most frames are speech: a median or
    # medoid there is speech, the densest frame is the short clips' padding (10 of each).
    lengths = [20, 64, 333] * 10 + [900, 1100, 1300, 1450, 1499] * 8
    paths = whisper_like(tmp_path / "emb", lengths)
    template, summary = padding_template(paths, Log())
    assert template["template"].shape == (WHISPER_FRAMES, WIDTH) and summary["files"] == len(paths)
    found = [speech_frames(np.load(p), template) for p in paths]
    assert found == lengths


def test_a_clip_that_is_all_padding_keeps_every_frame(tmp_path):
    paths = whisper_like(tmp_path / "emb", [40, 80, 120] * 4)
    template, _ = padding_template(paths, Log())
    silent = np.load(paths[0]).astype(np.float32)
    silent[:40] = template["template"][:40]
    template["spread"][:] = 0  # every position's template taken as padding
    assert speech_frames(silent, template) is None


def test_too_few_whisper_files_is_one_line(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros((30, 4), dtype=np.float16))
    with pytest.raises(InputError, match="found 0 files of 1500 frames among the 1 sampled"):
        padding_template([str(path)], Log())


def test_pooling_trims_by_the_template_unless_told_the_frames(tmp_path):
    lengths = [30, 60, 90] * 10  # at least NEIGHBOURS + 1 clips padded at each end
    paths = whisper_like(tmp_path / "emb", lengths)
    template, _ = padding_template(paths, Log())
    out = tmp_path / "pooled.npy"
    info = pool_files(paths, "max", None, str(out), Log(), keep_frames=[10] + [None] * 29, template=template)
    assert info["kept"] == [10] + lengths[1:]
    assert info["trimmed_by"] == ["audio"] + ["frames"] * 29
    expected = [np.load(p)[:n].astype(np.float32).max(axis=0) for p, n in zip(paths, info["kept"])]
    np.testing.assert_array_equal(np.load(out), expected)


@pytest.mark.parametrize("with_wavs", [False, True])
def test_auto_finds_the_padding_of_whisper_files_in_their_frames_wavs_or_not(workflow, tmp_path, with_wavs):
    from test_pool import write_wav

    rng = np.random.default_rng(1)
    groups = [g for g in range(3) for _ in range(10)]
    lengths = [int(n) for n in rng.permutation([40, 80, 160] * 10)]
    paths = whisper_like(tmp_path / "emb", lengths, groups)
    args = ["--config", f"embedding_dir={tmp_path / 'emb'}", "reduce=none", "plot=none"]
    if with_wavs:  # for the map; trim_padding: auto does not read their durations (a second too long here)
        (tmp_path / "audio").mkdir()
        for i, n in enumerate(lengths):
            write_wav(tmp_path / "audio" / f"clip{i:03d}.wav", n / 50 + 1)
        args.append(f"audio_dir={tmp_path / 'audio'}")
    run = workflow.run(*args)
    pooled_dir = workflow.root / "results/emb/pooled"
    frames = json.loads((pooled_dir / "max-detect.frames.json").read_text())
    assert frames == {
        "files": 30,
        "by_audio": 0,
        "by_frames": 30,
        "untrimmed": 0,
        "frames_kept": [min(lengths), float(np.median(lengths)), max(lengths)],
    }
    assert "frames pooled per file: median" in run.stderr
    expected = [np.load(p)[:n].astype(np.float32).max(axis=0) for p, n in zip(paths, lengths)]
    np.testing.assert_array_equal(np.load(pooled_dir / "max-detect.npy"), expected)
    result = workflow.root / "results/emb/max-detect/none/hdbscan-mcs5-ms5-euclidean"
    record = json.loads((result / "provenance.json").read_text())
    assert record["frames_pooled"] == frames and record["settings"]["pooling"] == "max"
    methods = (result / "methods.md").read_text()
    assert "Whisper's padding" in methods and f"range {min(lengths)}-{max(lengths)}" in methods
    assert json.loads((result / "metrics.json").read_text())["n_clusters"] == 3
    # A stated trim_padding: true reads the wavs instead.
    workflow.run(*args, "trim_padding=true") if with_wavs else None
    if with_wavs:
        by_wav = json.loads((pooled_dir / "max-trim50.frames.json").read_text())
        assert by_wav["by_audio"] == 30 and by_wav["frames_kept"][0] == min(lengths) + 50
