import json
import numpy as np
import pytest
from _stage import InputError, Log
from pool import check_files, pool_array, pool_files, read_header


def save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def pool(paths, method="mean", frames=None, tmp_path=None):
    out = tmp_path / "pooled.npy"
    pool_files(paths, method, frames, str(out), Log())
    return np.load(out)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6,), (4, 6), (1, 4, 6)])
def test_accepted_shapes_and_dtypes(tmp_path, shape, dtype):
    a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape).astype(dtype)
    frames = a.reshape(-1, 6).astype(np.float32)
    m = pool([save(tmp_path, "x.npy", a)], "mean", tmp_path=tmp_path)
    assert m.dtype == np.float32 and m.shape == (1, 6)
    np.testing.assert_allclose(m[0], frames.mean(0), rtol=1e-3)


def test_methods():
    a = np.array([[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(pool_array(a, "mean"), [3.0, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(pool_array(a, "max"), [5.0, 4.0])
    np.testing.assert_allclose(pool_array(a, "meanstd"), np.r_[a.mean(0), a.std(0)], rtol=1e-6)
    # flatten pads short files with zero frames and truncates long ones
    np.testing.assert_array_equal(pool_array(a, "flatten", frames=4), np.r_[a.ravel(), 0, 0])
    np.testing.assert_array_equal(pool_array(a, "flatten", frames=2), a[:2].ravel())


def test_flatten_defaults_to_the_longest_file(tmp_path):
    paths = [save(tmp_path, "a.npy", np.ones((2, 3))), save(tmp_path, "b.npy", np.ones((5, 3)))]
    m = pool(paths, "flatten", tmp_path=tmp_path)
    assert m.shape == (2, 15)
    assert m[0, :6].sum() == 6 and m[0, 6:].sum() == 0


def test_rows_follow_path_order(tmp_path):
    paths = [save(tmp_path, f"{i}.npy", np.full((2, 3), i, dtype=np.float32)) for i in range(4)]
    np.testing.assert_array_equal(pool(paths, tmp_path=tmp_path)[:, 0], [0, 1, 2, 3])


def error_for(paths, method="mean", tmp_path=None):
    with pytest.raises(InputError) as e:
        pool(paths, method, tmp_path=tmp_path)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(b"this is not numpy")
    assert "bad.npy: not a readable .npy file" in error_for([str(path)], tmp_path=tmp_path)


def test_truncated_file(tmp_path):
    path = save(tmp_path, "cut.npy", np.ones((10, 8), dtype=np.float32))
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-40])
    assert "cut.npy: truncated" in error_for([path], tmp_path=tmp_path)


def test_pickled_object_array(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "obj.npy: holds Python objects" in error_for([str(path)], tmp_path=tmp_path)


def test_zero_frames(tmp_path):
    path = save(tmp_path, "empty.npy", np.zeros((0, 8), dtype=np.float32))
    assert "empty.npy: has 0 frames" in error_for([path], tmp_path=tmp_path)


def test_integer_and_bad_shapes(tmp_path):
    assert "int64 is not float" in error_for([save(tmp_path, "i.npy", np.ones((2, 3), dtype=np.int64))], tmp_path=tmp_path)
    assert "is not (D,), (T, D) or (1, T, D)" in error_for([save(tmp_path, "b.npy", np.ones((2, 2, 3)))], tmp_path=tmp_path)


@pytest.mark.parametrize("method", ["mean", "max", "meanstd", "flatten"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(tmp_path, method, bad):
    good = save(tmp_path, "good.npy", np.ones((3, 4), dtype=np.float32))
    a = np.ones((3, 4), dtype=np.float32)
    a[1, 2] = bad
    message = error_for([good, save(tmp_path, "nan.npy", a)], method, tmp_path=tmp_path)
    assert "NaN or Inf values in 1 files: nan.npy" in message
    assert not (tmp_path / "pooled.npy").exists()


def test_different_widths_name_a_few_files_of_each(tmp_path):
    paths = [save(tmp_path, f"w8_{i}.npy", np.ones((2, 8))) for i in range(5)]
    paths += [save(tmp_path, "w4_0.npy", np.ones((2, 4)))]
    message = error_for(paths, tmp_path=tmp_path)
    assert message.startswith("embedding widths differ")
    assert "width 8 in 5 files: w8_0.npy, w8_1.npy, w8_2.npy (+2 more)" in message
    assert "width 4 in 1 files: w4_0.npy" in message


def test_all_bad_files_are_reported_before_any_pooling(tmp_path):
    paths = [str(tmp_path / f"bad{i}.npy") for i in range(5)]
    for p in paths:
        open(p, "wb").write(b"junk")
    message = error_for(paths, tmp_path=tmp_path)
    assert message.startswith("bad0.npy, bad1.npy, bad2.npy (+2 more): not a readable .npy file")
    assert not (tmp_path / "pooled.npy").exists()


def test_each_problem_is_named_once_with_a_few_of_its_files(tmp_path):
    paths = [save(tmp_path, f"int{i}.npy", np.ones((2, 3), dtype=np.int16)) for i in range(6)]
    paths.append(save(tmp_path, "good.npy", np.ones((2, 3), dtype=np.float32)))
    paths.append(save(tmp_path, "empty.npy", np.ones((0, 3), dtype=np.float32)))
    message = error_for(paths, tmp_path=tmp_path)
    assert message == "int0.npy, int1.npy, int2.npy (+3 more): dtype int16 is not float16, float32 or float64; empty.npy: has 0 frames"
    assert message.count("dtype") == 1


@pytest.mark.parametrize("method", ["mean", "max", "meanstd", "flatten"])
@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8"])
def test_big_endian_floats_pool_as_their_values(tmp_path, dtype, method):
    a = np.random.default_rng(0).normal(size=(5, 6))
    big = save(tmp_path, "big.npy", a.astype(dtype))
    native = save(tmp_path, "native.npy", a.astype(dtype).astype(np.dtype(dtype).newbyteorder("=")))
    assert read_header(big)[2] == np.dtype(dtype)
    np.testing.assert_array_equal(pool([big], method, tmp_path=tmp_path), pool([native], method, tmp_path=tmp_path))


def test_files_of_one_shape_share_one_parsed_header(tmp_path):
    from pool import _parse_header

    paths = [save(tmp_path, f"{i}.npy", np.ones((4, 3), dtype=np.float32)) for i in range(20)]
    _parse_header.cache_clear()
    assert check_files(paths) == (3, 4)
    assert _parse_header.cache_info().misses == 1


def test_large_finite_float32_values_are_summed_without_overflow(tmp_path):
    # Each column's float32 running sum overflows (3e38 + 3e38), though the values cancel.
    a = np.array([[3e38, -3e38], [3e38, -3e38], [-3e38, 3e38], [-3e38, 3e38], [8.0, 4.0]], dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(a.sum(axis=0, dtype=np.float32)).all()
    np.testing.assert_allclose(pool([save(tmp_path, "big.npy", a)], "mean", tmp_path=tmp_path), [[1.6, 0.8]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_too_large_for_float32_arithmetic_are_named_as_such(tmp_path, dtype):
    good = save(tmp_path, "good.npy", np.ones((3, 4), dtype=dtype))
    huge = save(tmp_path, "huge.npy", np.full((3, 4), 3e38, dtype=dtype))
    nan = save(tmp_path, "nan.npy", np.full((3, 4), np.nan, dtype=dtype))
    message = error_for([good, huge, nan], "mean", tmp_path=tmp_path)
    assert message == (
        "NaN or Inf values in 1 files: nan.npy; pooled values beyond 1e+15 in magnitude, too large for the "
        "float32 sums of squares after pooling (PCA, distances), in 1 files: huge.npy"
    )
    if dtype == np.float64:  # beyond float32's range: Inf once pooled, still not called Inf
        beyond = save(tmp_path, "beyond.npy", np.full((3, 4), 1e300))
        assert "in 1 files: beyond.npy" in error_for([beyond], "max", tmp_path=tmp_path)


def test_header_reading_does_not_load_data(tmp_path):
    path = save(tmp_path, "big.npy", np.zeros((1, 7, 5), dtype=np.float16))
    assert read_header(path) == (7, 5, np.dtype(np.float16))
    assert check_files([path]) == (5, 7)


def write_wav(path, seconds, rate=16000):
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))


def test_audio_frames_round_up_duration_times_rate(tmp_path):
    from pool import audio_frames

    write_wav(tmp_path / "a.wav", 0.1)
    write_wav(tmp_path / "b.wav", 0.105)
    assert audio_frames(str(tmp_path / "a.wav"), 50) == 5
    assert audio_frames(str(tmp_path / "b.wav"), 50) == 6
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(InputError, match="bad.wav: cannot read its duration"):
        audio_frames(str(tmp_path / "bad.wav"), 50)


def test_keep_frames_drops_padding(tmp_path):
    padded = np.zeros((20, 3), dtype=np.float32)
    padded[:5] = 2.0
    path = save(tmp_path, "p.npy", padded)
    out = tmp_path / "pooled.npy"
    pool_files([path, path], "mean", None, str(out), Log(), keep_frames=[5, None])
    np.testing.assert_allclose(np.load(out), [[2, 2, 2], [0.5, 0.5, 0.5]])


def pool_shard(tmp_path, name, arrays, method="mean"):
    """Pool {id: array} as one shard; returns (matrix path, ids path, info)."""
    from _stage import write_ids

    paths = [save(tmp_path, f"{i}.npy", a) for i, a in arrays.items()]
    matrix, ids = tmp_path / f"shard-{name}.npy", tmp_path / f"shard-{name}.ids.tsv"
    info = pool_files(paths, method, None, str(matrix), Log())
    write_ids(list(arrays), paths, str(ids))
    return str(matrix), str(ids), dict(info, method=method)


@pytest.mark.parametrize("block_bytes", [2**20, 24])  # one block; one row (6 floats) per block
def test_merge_sorts_rows_by_id_and_pads_flatten(tmp_path, monkeypatch, block_bytes):
    import merge_pool
    from _stage import read_ids
    from merge_pool import merge_shards

    monkeypatch.setattr(merge_pool, "BLOCK_BYTES", block_bytes)
    shard_a = pool_shard(tmp_path, "a", {"b": np.full((1, 2), 2.0), "d": np.full((3, 2), 4.0)}, "flatten")
    shard_b = pool_shard(tmp_path, "b", {"a": np.full((1, 2), 1.0), "c": np.full((2, 2), 3.0)}, "flatten")
    shards = [shard_a, shard_b]
    out, out_ids = tmp_path / "m.npy", tmp_path / "m.ids.tsv"
    merge_shards([s[0] for s in shards], [s[1] for s in shards], [s[2] for s in shards], str(out), str(out_ids))
    assert read_ids(str(out_ids))[0] == ["a", "b", "c", "d"]
    m = np.load(out)
    assert m.shape == (4, 6)  # the longest file has 3 frames of width 2
    np.testing.assert_array_equal(m, [[1, 1, 0, 0, 0, 0], [2, 2, 0, 0, 0, 0], [3, 3, 3, 3, 0, 0], [4] * 6])


def test_merge_names_files_when_shards_differ_in_width(tmp_path):
    from merge_pool import merge_shards

    shards = [pool_shard(tmp_path, "a", {"x": np.ones((2, 4))}), pool_shard(tmp_path, "b", {"y": np.ones((2, 3))})]
    with pytest.raises(InputError, match=r"embedding widths differ: width 4 in 1 files: x.npy; width 3 in 1 files: y.npy"):
        merge_shards([s[0] for s in shards], [s[1] for s in shards], [s[2] for s in shards], str(tmp_path / "m.npy"), str(tmp_path / "m.tsv"))


def test_float16_column_sums_equal_numpys():
    from pool import float16_column_sums as column_sums

    rng = np.random.default_rng(0)
    a = (rng.normal(size=(301, 67)) * rng.choice([1e-6, 1, 300], size=(301, 67))).astype(np.float16)
    a[0, :4] = [np.float16(6e-8), -np.float16(6e-8), -0.0, np.float16(65504)]  # subnormals, -0, largest
    sums, finite = column_sums(a)
    assert finite
    np.testing.assert_array_equal(sums, a.sum(axis=0, dtype=np.float32))
    for bad in (np.inf, -np.inf, np.nan):
        b = a.copy()
        b[150, 33] = bad
        assert not column_sums(b)[1]


def test_float16_mean_pooling_is_numpys_mean():
    a = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float16)
    np.testing.assert_array_equal(pool_array(a, "mean"), a.sum(axis=0, dtype=np.float32) / 50)


def test_files_read_ahead_in_threads_keep_their_order(tmp_path):
    from pool import READERS

    n = 5 * READERS  # more files than are read ahead at once
    paths = []
    for i in range(n):
        paths.append(str(tmp_path / f"f{i:03d}.npy"))
        np.save(paths[-1], np.full((3, 4), i, dtype=np.float16))
    pool_files(paths, "mean", None, str(tmp_path / "m.npy"), Log())
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy")[:, 0], np.arange(n))


def test_a_manifest_rewritten_while_its_shard_pools_gets_the_shard_pooled_again(tmp_path):
    """issue 23: a start (here `snakemake -n`) that adds files to a shard's manifest while
    its pool job runs. The shard, written after its manifest, looked up to date for ever
    and its new files were never clustered; its record of the manifest it pooled now
    tells the next start to pool it again."""
    import os
    import subprocess
    import sys
    import time

    from conftest import Workflow, make_blobs

    workflow = Workflow(tmp_path / "wf")
    emb = tmp_path / "emb"
    make_blobs(emb, n_per_cluster=10)
    args = ["--config", f"embedding_dir={emb}", "plot=none", "reduce=pca", "min_cluster_size=3"]
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore", EMBCLUST_TEST_POOL_DELAY="6")
    first = subprocess.Popen(cmd, cwd=workflow.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = workflow.root / "results/emb/logs/pool/mean"
    deadline = time.monotonic() + 60
    while not (logs.is_dir() and len(list(logs.iterdir())) == 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # both jobs have read their manifests and now wait
    make_blobs(emb / "more", n_per_cluster=10, seed=1)  # 30 more files, in both shards
    for p in (emb / "more").iterdir():
        p.rename(emb / f"new_{p.name}")
    preview = workflow.run("-n", *args)
    assert preview.jobs["pool"] == 2
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    again = workflow.run(*args)
    assert again.jobs.get("pool") == 2, again.stderr + out
    assert "pooling again 2 shards" in again.stderr
    workflow.run(*args)
    hard = json.loads((workflow.root / "results/emb/mean/pca-50/hdbscan-mcs3-ms3-euclidean/clusters_hard.json").read_text())
    assert len(hard) == 60 == len(list(emb.glob("*.npy")))
