import itertools
import os
import re

import auto_settings
import configuration
import inputs
import manifests
import numpy as np
import padding
import paths
import pytest
from conftest import REPO
from snakemake_exit import finish_quickly

SCHEMA = configuration.load_schema(REPO / "workflow/schemas/config.schema.yaml")


def valid(**config):
    return configuration.validate(config, SCHEMA)


def test_defaults_fill_every_key():
    full = valid()
    assert full["pooling"] == "auto" and full["trim_padding"] == "auto"
    assert full["reduce"] == "auto" and full["reduce_dim"] == "auto"
    assert full["min_samples"] is None and full["plot"] == "umap" and full["dataset"] == "digits"


def test_config_file_matches_schema_defaults():
    import yaml

    with open(REPO / "config/config.yaml") as f:
        file_config = yaml.safe_load(f)
    assert set(file_config) == set(SCHEMA["properties"])
    assert valid(**file_config) == valid()


def test_command_line_strings_are_coerced():
    # `--config min_cluster_size='[5,10,20]'` arrives as a list of strings.
    full = valid(min_cluster_size=["5", "10", "20"], min_samples="null", reduce_dim="[10, 20]")
    assert full["min_cluster_size"] == [5, 10, 20]
    assert full["min_samples"] is None
    assert full["reduce_dim"] == [10, 20]


def test_path_keys_stay_strings():
    assert valid(embedding_dir=123, output_dir="out")["embedding_dir"] == "123"


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("pooling", "median", "one of auto, mean, max, meanstd, flatten"),
        ("min_cluster_size", 1, "an integer >= 2"),
        ("min_cluster_size", [5, "x"], "an integer >= 2"),
        ("reduce_dim", 2.5, "an integer >= 2"),
        ("metric", "manhattan", "one of euclidean, cosine"),
        ("min_samples", 0, "an integer >= 1 or null"),
        ("n_clusters", 1, "an integer >= 2 or 'auto'"),
        ("trim_padding", "maybe", "true or false"),
    ],
)
def test_bad_values_are_one_line_naming_key_value_and_allowed(key, value, allowed):
    with pytest.raises(configuration.ConfigError) as e:
        valid(**{key: value})
    message = str(e.value)
    assert "\n" not in message
    assert f"'{key}'" in message and allowed in message


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(configuration.ConfigError, match="did you mean 'min_cluster_size'"):
        valid(min_cluster_sise=5)


def test_lists_only_for_sweep_keys():
    with pytest.raises(configuration.ConfigError, match="embedding_dir"):
        valid(embedding_dir=["a", "b"])


def test_sweep_is_the_cartesian_product():
    combos = configuration.combinations(valid(min_cluster_size=[5, 10], metric=["euclidean", "cosine"]), SCHEMA)
    assert len(combos) == 4
    assert {(c["min_cluster_size"], c["metric"]) for c in combos} == set(
        itertools.product([5, 10], ["euclidean", "cosine"])
    )


def test_slugs_name_only_settings_that_matter():
    base = valid()
    assert paths.clusterer_slug(base) == "hdbscan-mcs5-ms5-euclidean"
    # min_samples=null means min_cluster_size: both share one cached result.
    assert paths.clusterer_slug(dict(base, min_samples=5)) == paths.clusterer_slug(base)
    # n_clusters does not touch HDBSCAN; min_cluster_size does not touch spectral.
    assert paths.clusterer_slug(dict(base, n_clusters=3)) == paths.clusterer_slug(base)
    spectral = dict(base, algorithm="spectral")
    assert paths.clusterer_slug(dict(spectral, min_cluster_size=9)) == paths.clusterer_slug(spectral)
    # Clustering settings never reach the layout or the reduction.
    changed = dict(base, min_cluster_size=20, algorithm="spectral")
    assert paths.layout_slug(changed) == paths.layout_slug(base)
    assert paths.reducer_slug(changed) == paths.reducer_slug(base)
    assert paths.pooling_slug(dict(base, pooling="flatten")) == "flatten-longest"
    assert paths.pooling_slug(dict(base, pooling="flatten", flatten_frames=100)) == "flatten-100"


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"reduce": "umap", "metric": "cosine", "seed": 3},
        {"reduce": "none", "algorithm": "spectral", "n_clusters": 4},
        {"pooling": "flatten", "flatten_frames": 12, "min_samples": 2},
        {"plot": "pca"},
        {"algorithm": "spectral", "n_clusters": "auto"},
        {"trim_padding": True, "frames_per_second": 25, "audio_dir": "wav"},
    ],
)
def test_slugs_parse_back_to_their_settings(overrides):
    s = auto_settings.resolve_auto([valid(**overrides)], 1797)[0]
    pooling = paths.parse_pooling(paths.pooling_slug(s))
    assert pooling["method"] == s["pooling"]
    assert pooling["frames_per_second"] == (s["frames_per_second"] if s["trim_padding"] else None)
    reducer = paths.parse_reducer(paths.reducer_slug(s))
    assert reducer["method"] == s["reduce"]
    if s["reduce"] != "none":
        assert reducer["dim"] == s["reduce_dim"]
    clusterer = paths.parse_clusterer(paths.clusterer_slug(s))
    assert clusterer["algorithm"] == s["algorithm"] and clusterer["metric"] == s["metric"]
    if s["algorithm"] == "hdbscan":
        assert clusterer["min_samples"] == (s["min_samples"] or s["min_cluster_size"])
    else:
        assert clusterer["n_clusters"] == s["n_clusters"]
    assert paths.parse_layout(paths.layout_slug(s))["method"] == s["plot"]


def ids_of(directory):
    rows, notes = inputs.list_embeddings(str(directory))
    return [row.id for row in rows]


def test_list_embeddings_ignores_other_files_and_sorts(tmp_path):
    for name in ["b.npy", "a.npy", "notes.txt", "c.npy.bak"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.npy").mkdir()
    assert ids_of(tmp_path) == ["a", "b"]


def test_list_embeddings_reads_one_level_of_subfolders(tmp_path):
    (tmp_path / "top.npy").write_bytes(b"12345")
    for sub, name in [("s1", "b.npy"), ("s2", "a.npy"), ("s2", "c.npy"), ("s1", "x.txt")]:
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / name).write_bytes(b"")
    (tmp_path / "s1/deeper").mkdir()
    (tmp_path / "s1/deeper/hidden.npy").write_bytes(b"")
    rows, notes = inputs.list_embeddings(str(tmp_path))
    assert [(r.id, r.path) for r in rows] == [
        ("a", f"{tmp_path}/s2/a.npy"), ("b", f"{tmp_path}/s1/b.npy"), ("c", f"{tmp_path}/s2/c.npy"), ("top", f"{tmp_path}/top.npy")
    ]  # fmt: skip
    top = rows[-1]
    assert top.size == 5 and top.mtime_ns == (tmp_path / "top.npy").stat().st_mtime_ns
    assert notes == [f"1 folders two levels down in '{tmp_path}' are not read (only its subfolders are): s1/deeper"]


def test_the_same_name_in_two_subfolders_is_refused_naming_both(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "clip.npy").write_bytes(b"")
    with pytest.raises(configuration.ConfigError) as e:
        inputs.list_embeddings(str(tmp_path))
    assert f"id 'clip' is in two files, {tmp_path}/a/clip.npy and {tmp_path}/b/clip.npy" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name, shown",
    [
        ("tab\there.npy", "'tab\\there.npy' holds a tab"),
        ("new\nline.npy", "'new\\nline.npy' holds a newline"),
        ("carriage\rreturn.npy", "'carriage\\rreturn.npy' holds a carriage return"),
        (".npy", "'.npy' holds an empty id"),
    ],
)
def test_names_the_tsv_files_cannot_hold_are_refused_in_one_line(tmp_path, name, shown):
    (tmp_path / "good.npy").write_bytes(b"")
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(configuration.ConfigError) as e:
        inputs.list_embeddings(str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and "\r" not in message and "\t" not in message
    assert message == f"file names embclust cannot use in '{tmp_path}' (rename them): {shown}"


def test_an_empty_id_in_a_subfolder_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "good.npy").write_bytes(b"")
    (tmp_path / "a" / ".npy").write_bytes(b"")
    with pytest.raises(configuration.ConfigError) as e:
        inputs.list_embeddings(str(tmp_path))
    assert str(e.value) == f"file names embclust cannot use in '{tmp_path}' (rename them): 'a/.npy' holds an empty id"


def test_names_that_are_not_utf8_are_refused(tmp_path):
    (tmp_path / "good.npy").write_bytes(b"")
    open(os.fsencode(tmp_path) + b"/bad\xff.npy", "wb").close()
    with pytest.raises(configuration.ConfigError, match=r"'bad\\udcff.npy' holds bytes that are not UTF-8"):
        inputs.list_embeddings(str(tmp_path))


def test_snakemake_syntax_in_file_names_is_just_a_name(tmp_path):
    for name in ["{x}.npy", "<results>.npy", "<script>.npy"]:
        (tmp_path / name).write_bytes(b"")
    assert ids_of(tmp_path) == ["<results>", "<script>", "{x}"]


def test_links_that_lead_nowhere_are_skipped_in_one_note(tmp_path):
    (tmp_path / "real.npy").write_bytes(b"abc")
    os.symlink(tmp_path / "real.npy", tmp_path / "alias.npy")  # a link to a file: read
    os.symlink(tmp_path / "gone.npy", tmp_path / "dangling.npy")
    os.symlink(tmp_path / "loop.npy", tmp_path / "loop.npy")
    os.symlink(tmp_path / "loopdir", tmp_path / "loopdir")
    rows, notes = inputs.list_embeddings(str(tmp_path))
    assert [r.id for r in rows] == ["alias", "real"] and rows[0].size == 3
    assert notes == [f"skipped 3 links in '{tmp_path}' that lead nowhere (dangling or a loop): dangling.npy, loop.npy, loopdir"]


def test_a_subfolder_linking_back_to_embedding_dir_is_a_duplicate(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "again")
    with pytest.raises(configuration.ConfigError, match="id 'a' is in two files"):
        inputs.list_embeddings(str(tmp_path))


def test_pool_shards_auto_doubles_with_the_file_count():
    assert manifests.shard_count(3, 10**6) == 3
    assert [manifests.shard_count("auto", n) for n in (1, 131072, 131073, 262145, 10**6, 10**7)] == [8, 8, 16, 32, 64, 1024]
    assert valid(pool_shards="auto")["pool_shards"] == "auto" and valid()["pool_shards"] == "auto"
    with pytest.raises(configuration.ConfigError, match="an integer >= 1 or 'auto'"):
        valid(pool_shards="many")


def fake_rows(ids, mtime=1):
    return [inputs.Embedding(i, f"emb/{i}.npy", 10, mtime) for i in ids]


def test_manifests_are_rewritten_only_when_their_content_changes(tmp_path):
    directory = tmp_path / "files"
    ids = [f"c{i}" for i in range(40)]
    first = manifests.shards(fake_rows(ids), 4)
    assert sorted(manifests.write_manifests(directory, first)) == [f"{i}-of-4.tsv" for i in range(4)]
    stamps = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    assert manifests.write_manifests(directory, first) == []  # unchanged: nothing written
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == stamps
    # One file with an OLDER mtime (cp -p, rsync -a), one added: only their shards change.
    rows = fake_rows(ids + ["new"])
    rows[5] = rows[5]._replace(mtime_ns=0)
    changed = {f"{manifests.shard_of(i, 4)}-of-4.tsv" for i in ("c5", "new")}
    assert set(manifests.write_manifests(directory, manifests.shards(rows, 4))) == changed
    # Fewer shards: the old ones go, so the folder holds exactly the current lists.
    assert sorted(manifests.write_manifests(directory, manifests.shards(rows, 2))) == ["0-of-2.tsv", "1-of-2.tsv"]
    assert sorted(p.name for p in directory.iterdir()) == ["0-of-2.tsv", "1-of-2.tsv"]


def test_manifests_read_back_as_written(tmp_path):
    rows = fake_rows(["{x}", "<results>", "a b", "é"], mtime=1234567890123456789)
    shard_files = manifests.shards(rows, 3)
    audio = {"a b": inputs.Embedding("a b", "wav/a b.wav", 99, 5)}
    manifests.write_manifests(tmp_path, shard_files, audio)
    assert manifests.read_manifests(tmp_path) == (shard_files, audio)
    # Without audio_dir, the audio manifests are removed.
    manifests.write_manifests(tmp_path, shard_files)
    assert manifests.read_manifests(tmp_path) == (shard_files, {})


@pytest.mark.parametrize(
    "config, message",
    [
        ({"output_dir": "/data/<logs>/x"}, "output_dir '/data/<logs>/x' holds '<logs>'"),
        ({"output_dir": "out/{x}"}, "output_dir 'out/{x}' holds '{'"),
        ({"embedding_dir": "data/<results>"}, "dataset '<results>' (the basename of embedding_dir; set dataset=NAME) holds '<results>'"),
        ({"labels": "<resources>/labels.csv"}, "labels '<resources>/labels.csv' holds '<resources>'"),
    ],
)
def test_paths_that_snakemake_would_rewrite_are_refused(config, message):
    with pytest.raises(configuration.ConfigError, match=re.escape(message)):
        configuration.check_snakemake_paths(valid(**config))
    configuration.check_snakemake_paths(valid(output_dir="/data/<Logs>/x", embedding_dir="data/<results>", dataset="ok"))


def test_missing_and_empty_directories(tmp_path):
    with pytest.raises(configuration.ConfigError, match="does not exist"):
        inputs.list_embeddings(str(tmp_path / "nope"))
    with pytest.raises(configuration.ConfigError, match="holds no .npy files"):
        inputs.list_embeddings(str(tmp_path))


def test_labels_file_needs_id_and_a_label_column(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text("id,speaker\na,s1\n")
    inputs.check_paths(valid(labels=str(good)))
    bad = tmp_path / "bad.csv"
    bad.write_text("name,speaker\na,s1\n")
    with pytest.raises(configuration.ConfigError, match="needs an 'id' column"):
        inputs.check_paths(valid(labels=str(bad)))
    with pytest.raises(configuration.ConfigError, match="does not exist"):
        inputs.check_paths(valid(labels=str(tmp_path / "nope.csv")))
    with pytest.raises(configuration.ConfigError, match="audio_dir"):
        inputs.check_paths(valid(audio_dir=str(tmp_path / "nope")))


def test_trim_padding_needs_audio_dir():
    with pytest.raises(configuration.ConfigError, match="trim_padding needs audio_dir"):
        inputs.check_paths(valid(trim_padding=[False, True]))


@pytest.mark.parametrize("name", [".", ".."])
def test_dataset_cannot_be_the_output_dir_or_its_parent(name):
    with pytest.raises(configuration.ConfigError, match=r"'dataset' has value '\.{1,2}', which is not allowed; allowed: a name of"):
        valid(dataset=name)
    assert valid(dataset="v2..final")["dataset"] == "v2..final"


def test_dataset_from_embedding_dir_dot_is_its_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    monkeypatch.chdir(tmp_path / "clips")
    assert valid(embedding_dir=".")["dataset"] == "clips"
    assert valid(embedding_dir="..")["dataset"] == tmp_path.name


def test_seed_is_bounded_like_numpys_seeds():
    assert valid(seed=2**32 - 1)["seed"] == 2**32 - 1
    with pytest.raises(configuration.ConfigError, match=r"'seed' has value 4294967296, which is not allowed; allowed: an integer from 0 to 4294967295"):
        valid(seed=[0, 2**32])


def labels_file(tmp_path, data):
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    return str(path)


def test_labels_with_a_byte_order_mark_are_read(tmp_path):
    from _stage import read_labels

    path = labels_file(tmp_path, "\ufeffid,speaker\na,s1\nb,s2\n".encode())
    inputs.check_labels(path)
    assert read_labels(path) == (["speaker"], {"a": {"speaker": "s1"}, "b": {"speaker": "s2"}})


def test_labels_that_are_not_utf8_are_refused_naming_the_line(tmp_path):
    rows = "".join(f"clip{i},speaker{i}\n" for i in range(1000))  # the bad byte lies past 8 KB
    path = labels_file(tmp_path, ("id,speaker\n" + rows).encode() + "x,Jos\u00e9\n".encode("latin-1"))
    with pytest.raises(configuration.ConfigError) as e:
        inputs.check_labels(path)
    assert str(e.value) == f"labels file '{path}' is not UTF-8 text (byte 0xe9 on line 1002); save it as UTF-8"


def test_labels_with_an_id_on_two_rows_are_refused_naming_it(tmp_path):
    path = labels_file(tmp_path, b"id,speaker\na,s1\nb,s2\n\na,s3\nc,s4\nc,s5\n")
    with pytest.raises(configuration.ConfigError) as e:
        inputs.check_labels(path)
    assert str(e.value) == f"labels file '{path}' gives 2 id(s) more than one row: 'a' on lines 2, 5; 'c' on lines 6, 7"


def test_labels_with_a_column_named_twice_are_refused(tmp_path):
    path = labels_file(tmp_path, b"id,speaker,id\na,s1,b\n")
    with pytest.raises(configuration.ConfigError, match=r"names the column\(s\) 'id' more than once"):
        inputs.check_labels(path)


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    for out in ("afile", "afile/deeper"):
        with pytest.raises(configuration.ConfigError, match=f"output_dir '{tmp_path}/{out}' cannot hold results: '{tmp_path}/afile' exists and is not a directory"):
            inputs.check_paths(valid(output_dir=str(tmp_path / out)))
    (tmp_path / "out/emb").mkdir(parents=True)
    inputs.check_paths(valid(output_dir=str(tmp_path / "out"), embedding_dir="emb"))
    (tmp_path / "out/emb").rmdir()
    (tmp_path / "out/emb").write_text("")  # the dataset's folder itself
    with pytest.raises(configuration.ConfigError, match="is not a directory"):
        inputs.check_paths(valid(output_dir=str(tmp_path / "out"), embedding_dir="emb"))


@pytest.mark.parametrize(
    "n_files, reducer",
    [(2, "pca-50"), (199, "pca-50"), (200, "umap-10-euclidean-s0"), (100_000, "umap-10-euclidean-s0"), (100_001, "pca-50")],
)
def test_reduce_auto_is_umap_from_200_to_100000_files_else_pca(n_files, reducer):
    combos = configuration.combinations(valid(), SCHEMA)
    assert [paths.reducer_slug(s) for s in auto_settings.resolve_auto(combos, n_files)] == [reducer]


def test_reduce_dim_auto_follows_the_reducer_and_explicit_values_stay():
    combos = configuration.combinations(valid(reduce=["pca", "umap", "none", "auto"], reduce_dim=["auto", 7]), SCHEMA)
    resolved = auto_settings.resolve_auto(combos, 1000)
    assert [paths.reducer_slug(s) for s in resolved] == [
        "pca-50", "pca-7", "umap-10-euclidean-s0", "umap-7-euclidean-s0", "none", "none", "umap-10-euclidean-s0", "umap-7-euclidean-s0"
    ]
    assert auto_settings.resolve_auto(resolved, 1000) == resolved
    assert auto_settings.resolve_auto(resolved, 10**6) == resolved  # already concrete: no longer depends on the count


@pytest.mark.parametrize(
    "n_files, overrides, message",
    [
        (40, {"min_cluster_size": 40}, "need more than min_cluster_size=40 (min_samples, which defaults to it"),
        (39, {"min_cluster_size": 40}, "fewer than min_cluster_size=40"),
        (10, {"min_cluster_size": 5, "min_samples": 10}, "need more than min_samples=10"),
        (2, {"algorithm": "spectral", "n_clusters": "auto"}, "need more than n_clusters=2 (the least auto picks)"),
        (8, {"algorithm": "spectral", "n_clusters": 8}, "need more than n_clusters=8"),
        (30, {"reduce": "umap", "reduce_dim": 29}, "UMAP needs reduce_dim below 29, not 29"),
    ],
)
def test_sizes_that_cannot_work_are_refused_up_front(n_files, overrides, message):
    combos = configuration.combinations(valid(embedding_dir="emb", **overrides), SCHEMA)
    with pytest.raises(configuration.ConfigError) as e:
        auto_settings.check_sizes(n_files, combos)
    assert str(e.value).startswith(f"only {n_files} .npy files in 'emb'") and message in str(e.value)


@pytest.mark.parametrize(
    "n_files, overrides",
    [
        (41, {"min_cluster_size": 40, "reduce_dim": 41}),
        (11, {"min_cluster_size": 5, "min_samples": 10, "reduce": "none"}),
        (3, {"algorithm": "spectral", "n_clusters": "auto", "reduce": "none"}),
        (50, {"reduce_dim": 50}),
        # The default PCA reduce_dim on fewer files than it: the reduce stage keeps what PCA gives.
        (30, {}),
        (30, {"reduce_dim": 500}),
        (30, {"reduce": "umap", "reduce_dim": 28}),
    ],
)
def test_sizes_at_the_limit_pass(n_files, overrides):
    auto_settings.check_sizes(n_files, configuration.combinations(valid(**overrides), SCHEMA))



def test_a_shard_counts_as_pooled_only_when_every_pooling_pooled_its_current_manifest(tmp_path):
    """A shard's record names the digest of the manifest it pooled (scripts/pool.py): the
    start reads again only the headers of shards not pooled from their current manifest,
    and names those pooled from another one (which the pool rule's params pool again)."""
    import json

    from _stage import manifest_digest
    from manifests import check_shards

    manifests, mean, flat = tmp_path / "files", tmp_path / "mean.shards", tmp_path / "flatten-longest.shards"
    for d in (manifests, mean, flat):
        d.mkdir()
    names = ["0-of-3", "1-of-3", "2-of-3"]
    for i, name in enumerate(names):
        (manifests / f"{name}.tsv").write_text(f"manifest {i}")
        # 0: pooled from its manifest by both poolings; 1: by one only; 2: by mean from an older manifest.
        for d, digest in ((mean, [True, True, False][i]), (flat, [True, None, True][i])):
            if digest is not None:
                sha = manifest_digest(manifests / f"{name}.tsv") if digest else "older"
                for suffix in (".npy", ".ids.tsv"):
                    (d / f"{name}{suffix}").write_bytes(b"")
                (d / f"{name}.json").write_text(json.dumps({"manifest_sha256": sha, "audio_manifest_sha256": None}))
    shards = {name: [] for name in names}
    assert check_shards(shards, manifests, [mean, flat]) == (["0-of-3"], ["2-of-3"])
    assert check_shards(shards, manifests, [mean]) == (["0-of-3", "1-of-3"], ["2-of-3"])
    # A manifest rewritten after its shard was pooled makes it stale.
    (manifests / "1-of-3.tsv").write_text("manifest 1, one more file")
    assert check_shards(shards, manifests, [mean]) == (["0-of-3"], ["1-of-3", "2-of-3"])
    # A record without a digest (an earlier version's) is neither pooled nor stale: unknown.
    (mean / "0-of-3.json").write_text(json.dumps({"width": 4}))
    assert check_shards(shards, manifests, [mean]) == ([], ["1-of-3", "2-of-3"])


def test_neighbour_search_is_exact_up_to_200k_files_and_named_in_the_graph_path():
    assert not auto_settings.approximate_search("auto", 200_000) and auto_settings.approximate_search("auto", 200_001)
    assert auto_settings.approximate_search("approximate", 10) and not auto_settings.approximate_search("exact", 10**7)
    assert paths.neighbours_slug("cosine", 5) == "cosine-k32"
    assert paths.neighbours_slug("cosine", 40, approximate=True) == "cosine-k64-approx"
    assert paths.parse_neighbours("cosine-k64-approx") == {"metric": "cosine", "k": 64, "approximate": True}
    assert paths.parse_neighbours("euclidean-k32") == {"metric": "euclidean", "k": 32, "approximate": False}


def test_finish_quickly_cancels_pending_timers_and_freezes_the_heap():
    import gc
    import threading

    fired = []
    timer = threading.Timer(60, lambda: fired.append(True))
    timer.start()
    try:
        finish_quickly()
        timer.join(5)
        assert not timer.is_alive() and not fired  # cancelled, not waited for
        assert gc.get_freeze_count() > 0
    finally:
        timer.cancel()
        gc.unfreeze()


@pytest.mark.parametrize(
    "whisper, audio_dir, slug",
    [
        (True, None, "max-detect"),  # Whisper's files, no wavs: padding found in the frames
        (True, "wav", "max-detect"),  # found in the frames also where a wav is (it counts the silence too)
        (False, None, "mean"),  # nothing is padded: all frames, mean as before
        (False, "wav", "mean"),  # wavs for the map only: a file that is not Whisper's keeps its frames
    ],
)
def test_auto_pooling_and_trimming_follow_the_files_and_the_wavs(whisper, audio_dir, slug):
    (s,) = auto_settings.resolve_auto([valid(audio_dir=audio_dir)], 1000, whisper_shaped=whisper)
    assert paths.pooling_slug(s) == slug
    parsed = paths.parse_pooling(slug)
    assert parsed["detect"] == whisper and parsed["frames_per_second"] is None
    assert auto_settings.resolve_auto([s], 1000, whisper_shaped=not whisper) == [s]  # concrete: stays as it is
    # Stated choices are kept whatever the files look like.
    (explicit,) = auto_settings.resolve_auto([valid(pooling="mean", trim_padding=False)], 1000, whisper_shaped=True)
    assert paths.pooling_slug(explicit) == "mean"


def test_whisper_shaped_reads_the_first_header_of_every_shard(tmp_path):
    import pool

    rows = {}
    for shard, frames in (("0-of-2", 1500), ("1-of-2", 1500)):
        path = tmp_path / f"{shard}.npy"
        np.save(path, np.zeros((frames, 4), dtype=np.float16))
        rows[shard] = [inputs.Embedding(shard, str(path), 0, 0)]
    assert auto_settings.whisper_shaped(rows, pool.header_problem)
    np.save(tmp_path / "1-of-2.npy", np.zeros((1499, 4), dtype=np.float16))
    assert not auto_settings.whisper_shaped(rows, pool.header_problem)
    (tmp_path / "1-of-2.npy").write_bytes(b"not numpy")
    assert not auto_settings.whisper_shaped(rows, pool.header_problem)  # the full header check names it


def test_padding_sample_is_stable_as_files_are_added():
    rows = [inputs.Embedding(f"clip{i}", f"/e/clip{i}.npy", 1, 1) for i in range(1000)]
    sample = padding.padding_sample(rows, n=128)
    assert len(sample) == 128 and [r.id for r in sample] == sorted(r.id for r in sample)
    more = rows + [inputs.Embedding(f"new{i}", f"/e/new{i}.npy", 1, 1) for i in range(10)]
    kept = set(r.id for r in sample) & set(r.id for r in padding.padding_sample(more, n=128))
    assert len(kept) >= 118  # ten new files displace at most ten


@pytest.mark.parametrize(
    "paths, refused",
    [
        ({"embedding_dir": "d/emb2", "output_dir": "d"}, "embedding_dir 'd/emb2' is the results folder"),
        ({"embedding_dir": "d/emb", "output_dir": "d/emb/results"}, "embedding_dir 'd/emb' holds the results folder"),
        ({"embedding_dir": "d/emb", "output_dir": "d", "dataset": "x", "assign_dir": "d/x/assigned/new1/pooled"}, "assign_dir 'd/x/assigned/new1/pooled' is inside"),
        ({"embedding_dir": "d/emb", "output_dir": "r", "assign_dir": "r"}, "assign_dir 'r' holds the results folder"),
        ({"embedding_dir": "link", "output_dir": "d"}, "embedding_dir 'link' is the results folder"),  # links resolved
        ({"embedding_dir": "d/emb", "output_dir": "d", "dataset": "emb2", "assign_dir": "d/new"}, None),
        ({"embedding_dir": "d/emb", "output_dir": "d/emb2"}, None),  # a shared prefix is not a folder
    ],
)
def test_inputs_overlapping_the_results_folder_are_refused_either_way(tmp_path, monkeypatch, paths, refused):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d/emb").mkdir(parents=True)
    os.symlink(tmp_path / "d/emb", tmp_path / "link")
    config = dict({"assign_dir": None}, **paths)
    config.setdefault("dataset", os.path.basename(os.path.abspath(config["embedding_dir"])))
    if config["embedding_dir"] == "link":
        config["dataset"] = "emb"
    if refused is None:
        inputs.check_apart(config)
        return
    with pytest.raises(configuration.ConfigError, match=re.escape(refused)):
        inputs.check_apart(config)


@pytest.mark.parametrize(
    "to, refused",
    [
        ("mean/pca-50/hdbscan-mcs1-ms1-euclidean", "has min_cluster_size=1, which is not allowed; allowed: an integer >= 2"),
        ("mean/pca-50/spectral-k1-euclidean-s0", "has n_clusters=1, which is not allowed"),
        ("mean/pca-1/hdbscan-mcs5-ms5-euclidean", "has reduce_dim=1, which is not allowed"),
        ("mean/pca-50/hdbscan-mcs05-ms5-euclidean", "did you mean 'mean/pca-50/hdbscan-mcs5-ms5-euclidean'?"),
        ("mean/pca-050/hdbscan-mcs5-ms5-euclidean", "did you mean 'mean/pca-50/hdbscan-mcs5-ms5-euclidean'?"),
        ("mean/pca-50/hdbscan-mcs7-ms7-euclidean", "is no result under 'out/emb' and not one this config makes; did you mean 'mean/pca-50/hdbscan-mcs5-ms5-euclidean'?"),
        ("mean/pca-50/hdbscan-mcs5-euclidean", "is not auto, best or a result's folder under 'out/emb'; did you mean 'mean/pca-50/hdbscan-mcs5-ms5-euclidean'?"),
        ("mean/pca-50/hdbscan-mcs5-ms5-euclidean", None),  # this config makes it
        ("max/none/hdbscan-mcs9-ms9-cosine", None),  # on disk, made by an earlier run
        ("out/emb/max/none/hdbscan-mcs9-ms9-cosine/", None),
    ],
)
def test_assign_to_is_checked_against_the_schema_and_the_results_that_exist(tmp_path, monkeypatch, to, refused):
    """issue 23: a result's folder under the schema's rules, written as embclust writes it,
    and on disk or made by this config; anything else one line with a did-you-mean."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out/emb/max/none/hdbscan-mcs9-ms9-cosine").mkdir(parents=True)
    (tmp_path / "out/emb/max/none/hdbscan-mcs9-ms9-cosine/clusters.npz").write_bytes(b"")
    config = valid(assign_dir="new", assign_to=to, reduce="pca", reduce_dim=50)
    combos = auto_settings.resolve_auto(configuration.combinations(config, SCHEMA), 1000)
    if refused is None:
        assert configuration.assign_result(config, "out/emb", combos, SCHEMA) == to.strip("/").removeprefix("out/emb/")
        return
    with pytest.raises(configuration.ConfigError, match=re.escape(refused)):
        configuration.assign_result(config, "out/emb", combos, SCHEMA)


# The modules that hold the workflow's shared code (settings.py before), by who may import them.
START_UP_MODULES = {"configuration", "auto_settings", "inputs", "manifests"}  # the Snakefile only
STAGE_SHARED_MODULES = {"paths"}  # stages too, each named by its rules as shared_code


def imported_modules(script):
    import ast

    tree = ast.parse(script.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def rule_blocks():
    """{rule name: its text} from workflow/rules/*.smk; a `use rule A as B` block adds to A's text."""
    text = "\n".join(smk.read_text() for smk in sorted((REPO / "workflow/rules").glob("*.smk")))
    found = re.findall(r"^(?:rule (\w+)|use rule (\w+) as (\w+) with):\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
    blocks = {name: body for name, _, _, body in found if name}
    blocks.update({alias: blocks[base] + body for _, base, alias, body in found if alias})
    return blocks


def test_each_rule_names_the_shared_modules_its_script_imports():
    """Snakemake reruns a stage when its script changes, not when a module it imports
    does: a rule whose script imports a shared module has it as an input (shared_code)."""
    checked = 0
    for rule, body in rule_blocks().items():
        script = re.search(r'script:\s*"\.\./\.\./scripts/(\w+\.py)"', body)
        if not script:
            continue
        imported = imported_modules(REPO / "scripts" / script.group(1))
        assert not imported & START_UP_MODULES, f"{script.group(1)} imports start-up code: {imported & START_UP_MODULES}"
        named = set(re.findall(r'"(\w+)"', " ".join(re.findall(r"shared_code\(([^)]*)\)", body))))
        assert imported & STAGE_SHARED_MODULES <= named, f"rule {rule}: add shared_code{tuple(imported & STAGE_SHARED_MODULES)}"
        checked += 1
    assert checked >= 15
    # Every module that settings.py was split into is classed above.
    shared = {p.stem for p in (REPO / "scripts").glob("*.py")} & (START_UP_MODULES | STAGE_SHARED_MODULES)
    assert shared == START_UP_MODULES | STAGE_SHARED_MODULES


def test_export_blocks_one_job_per_100k_files_under_auto():
    assert auto_settings.export_blocks("auto", 100_000) == [] and auto_settings.export_blocks(1, 10**7) == []
    assert auto_settings.export_blocks("auto", 100_001) == ["0-of-2", "1-of-2"]
    assert len(auto_settings.export_blocks("auto", 10**6)) == 10 and len(auto_settings.export_blocks("auto", 10**7)) == 100
    assert auto_settings.export_blocks(3, 90) == ["0-of-3", "1-of-3", "2-of-3"]
