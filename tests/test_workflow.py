"""Real snakemake runs on tiny data: outputs, caching, sweeps, seed commands, bad input."""

import csv
import json
import os
import re

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, Workflow, make_blobs
from sklearn.metrics import adjusted_rand_score
from test_plots import map_data, map_script

DEFAULT_RESULT = "results/emb/mean/pca-50/hdbscan-mcs5-ms5-euclidean"
# The jobs of one full run with a single result, on the 90 blob files (both test shards used).
STAGES = {
    "pool": 2, "merge_pool": 1, "reduce": 1, "layout": 1, "neighbours": 1, "cluster": 1, "export": 1, "figures": 1,
    "hard_json": 1, "variance": 1, "map": 1, "metrics": 1, "provenance": 1,
}  # fmt: skip


def read_json(path):
    with open(path) as f:
        return json.load(f)


def check_contract(result_dir, ids, embedding_dir):
    """The output contract: one entry per file, sorted ids, paths, -1 noise, soft lists."""
    hard = read_json(f"{result_dir}/clusters_hard.json")
    soft = read_json(f"{result_dir}/clusters_soft.json")
    assert [e["id"] for e in hard] == sorted(ids) == [e["id"] for e in soft]
    assert all(e["path"] == os.path.join(embedding_dir, e["id"] + ".npy") for e in hard + soft)
    n_clusters = max(e["cluster"] for e in hard) + 1
    assert all(-1 <= e["cluster"] < n_clusters and 0 <= e["probability"] <= 1 for e in hard)
    assert all(0 <= e["outlier_score"] <= 1 for e in hard)
    assert all(len(e["probabilities"]) == n_clusters for e in soft)
    assert all(0 <= p <= 1 for e in soft for p in e["probabilities"])
    return hard, soft


@pytest.mark.slow
def test_demo_run_clusters_the_digits(workflow):
    os.symlink(REPO / "demo", workflow.root / "demo")
    workflow.run()
    # reduce: auto is UMAP for the demo's 1,797 files (reduce_dim: auto, 10 dims).
    result = workflow.root / "results/digits/mean/umap-10-euclidean-s0/hdbscan-mcs5-ms5-euclidean"
    with open(REPO / "demo/digits/labels.csv") as f:
        digit = {row["id"]: int(row["digit"]) for row in csv.DictReader(f)}
    hard, soft = check_contract(result, list(digit), "demo/digits")
    assert len(hard) == 1797
    clustered = [e for e in hard if e["cluster"] >= 0]
    assert len(clustered) > 0.6 * len(hard)
    ari = adjusted_rand_score([digit[e["id"]] for e in clustered], [e["cluster"] for e in clustered])
    assert ari > 0.85
    # HDBSCAN's soft memberships are real probabilities, not one-hot.
    assert any(0.05 < p < 0.95 for e in soft for p in e["probabilities"])
    png = (result / "plot-umap-euclidean-s0.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert all((result / name).exists() for name in ("sizes.svg", "tree.png", "map-umap-euclidean-s0.html"))

    # A sweep with labels: metrics per result, a summary, a selection and a report.
    sweep = workflow.run("--config", "min_cluster_size=[5,10,20]", "labels=demo/digits/labels.csv")
    assert sweep.jobs["cluster"] == 2 and "layout" not in sweep.jobs  # mcs=5 and the layout are cached
    dataset = workflow.root / "results/digits"
    rows = (dataset / "summary.tsv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("result\tpooling")
    assert "digit_ari_all" in rows[0].split("\t")
    metrics = read_json(result / "metrics.json")
    assert metrics["n_clusters"] == max(e["cluster"] for e in hard) + 1
    assert metrics["labels"]["digit"]["clustered"]["ari"] == pytest.approx(ari, abs=1e-5)
    selection = read_json(dataset / "best/selection.json")
    chosen = selection["chosen"]
    assert len(selection["candidates"]) == 3
    assert selection["score"] == max(c["ch_clustered"] for c in selection["candidates"]) > selection["runner_up"]["score"] - 1e-9
    assert selection["margin"] == pytest.approx(selection["score"] - selection["runner_up"]["score"], abs=2e-6)
    # best/clusters_hard.json: the chosen result's entries, each with its stability across the sweep.
    best_hard = read_json(dataset / "best/clusters_hard.json")
    assert [{k: v for k, v in e.items() if k != "stability"} for e in best_hard] == read_json(dataset / chosen / "clusters_hard.json")
    assert all(0 < e["stability"] <= 1 for e in best_hard) and (dataset / "best/stability.png").read_bytes()[:4] == b"\x89PNG"
    # best/methods.md: the chosen result's paragraph, then how the sweep chose it.
    best_methods = (dataset / "best/methods.md").read_text(encoding="utf-8")
    chosen_methods = (dataset / chosen / "methods.md").read_text(encoding="utf-8")
    assert best_methods.startswith(chosen_methods.split("\n\n## References")[0])
    assert f"from the 3 results of a sweep over min_cluster_size (5, 10, 20)" in best_methods and chosen in best_methods
    assert "the first two principal components" not in chosen_methods and "laid out in two dimensions by UMAP" in chosen_methods
    assert (dataset / "summary.png").read_bytes()[:4] == b"\x89PNG"
    provenance = read_json(result / "provenance.json")
    assert provenance["n_inputs"] == 1797 and provenance["settings"]["min_cluster_size"] == 5

    workflow.run("--report", "report.html", "--config", "min_cluster_size=[5,10,20]", "labels=demo/digits/labels.csv")
    report = (workflow.root / "report.html").read_text(errors="replace")
    assert "summary.tsv" in report and "metrics.json" in report and "plot-umap-euclidean-s0.png" in report
    assert "methods.md" in report


@pytest.mark.slow
def test_cache_reruns_only_the_stages_below_a_change(workflow, blobs):
    directory, truth = blobs
    base = ["--config", f"embedding_dir={directory}", "plot=pca"]  # a PCA layout: no UMAP start-up
    first = workflow.run(*base)
    assert first.jobs == STAGES
    check_contract(workflow.root / DEFAULT_RESULT, truth, str(directory))
    before = workflow.files()

    changed = workflow.run(*base, "min_cluster_size=7")
    # One job draws the result's figures (layout plot, sizes, tree); the map is another.
    assert changed.jobs == {"cluster": 1, "export": 1, "hard_json": 1, "figures": 1, "map": 1, "metrics": 1, "provenance": 1}
    after = workflow.files()
    assert all(after[p] == before[p] for p in before), "an existing file was rewritten"
    assert (workflow.root / "results/emb/mean/pca-50/hdbscan-mcs7-ms7-euclidean/clusters_hard.json").exists()
    # Each result's methods paragraph states its own setting.
    methods = [
        (workflow.root / f"results/emb/mean/pca-50/hdbscan-mcs{m}-ms{m}-euclidean/methods.md").read_text(encoding="utf-8")
        for m in (5, 7)
    ]
    assert "min_cluster_size=5 and min_samples=5" in methods[0] and "min_cluster_size=7 and min_samples=7" in methods[1]
    assert methods[0].replace("=5", "=7") == methods[1]

    back = workflow.run(*base)
    assert back.jobs == {} and "Nothing to be done" in back.stdout + back.stderr
    assert workflow.files() == after

    # min_samples=null means min_cluster_size, so naming it explicitly is the same result.
    assert workflow.run(*base, "min_samples=5").jobs == {}

    # The soft format is an export setting: only the soft JSON is rewritten.
    top = workflow.run(*base, "soft_top_k=2")
    assert top.jobs == {"export": 1}
    hard = read_json(workflow.root / DEFAULT_RESULT / "clusters_hard.json")
    soft = read_json(workflow.root / DEFAULT_RESULT / "clusters_soft.json")
    assert [e["id"] for e in soft] == [e["id"] for e in hard]
    assert all(len(e["top_clusters"]) == 2 and e["top_probabilities"][0] >= e["top_probabilities"][1] for e in soft)
    assert all(s["top_clusters"][0] == e["cluster"] for e, s in zip(hard, soft) if e["probability"] == 1)
    assert workflow.run(*base, "soft_top_k=2").jobs == {}
    assert workflow.run(*base).jobs == {"export": 1}

    reduced = workflow.run(*base, "reduce_dim=10")
    assert "pool" not in reduced.jobs and reduced.jobs["reduce"] == 1

    # A file's size and mtime are in its shard's manifest: touched, it re-pools its shard
    # and everything below follows (the documented price of not reading contents)...
    first_file = sorted(directory.iterdir())[0]
    os.utime(first_file)
    assert workflow.run(*base).jobs == dict(STAGES, pool=1)
    assert workflow.run(*base).jobs == {}
    # ...as for changed content,
    np.save(first_file, np.load(first_file) + 1)
    assert workflow.run(*base).jobs == dict(STAGES, pool=1)
    # also when the new content comes with an older mtime (cp -p, rsync -a).
    stat = first_file.stat()
    np.save(first_file, np.load(first_file) - 1)
    os.utime(first_file, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9 * 3600 * 24 * 365))
    assert workflow.run(*base).jobs == dict(STAGES, pool=1)


def test_sweep_from_the_command_line(workflow, blobs):
    directory, _ = blobs
    run = workflow.run("--config", f"embedding_dir={directory}", "min_cluster_size=[5,10,20]", "plot=pca")
    assert run.jobs == {
        "pool": 2, "merge_pool": 1, "reduce": 1, "layout": 1, "cluster": 3, "export": 3, "hard_json": 3, "figures": 3,
        "variance": 1, "map": 3, "metrics": 3, "provenance": 3, "summary": 1, "select_best": 1,
        "neighbours": 1,  # one neighbour graph serves min_samples 5, 10 and 20
        "map_best": 1,  # the chosen result's map, with each file's stability
    }  # fmt: skip
    for mcs in (5, 10, 20):
        result = workflow.root / f"results/emb/mean/pca-50/hdbscan-mcs{mcs}-ms{mcs}-euclidean"
        assert (result / "clusters_hard.json").exists() and (result / "plot-pca.png").exists()
        # A result's own map does not depend on the sweep: no stability there.
        assert map_data(result / "map-pca.html")[1]["stability"] is None

    # best/map-pca.html: the chosen result's map, with each file's stability from best/clusters_hard.json.
    best = workflow.root / "results/emb/best"
    chosen = read_json(best / "selection.json")["chosen"]
    _, data = map_data(best / "map-pca.html")
    _, own = map_data(workflow.root / "results/emb" / chosen / "map-pca.html")
    assert data["ids"] == own["ids"] and data["cluster"] == own["cluster"] and data["x"] == own["x"]
    stability = map_script.decode(data["stability"])
    expected = [e["stability"] for e in read_json(best / "clusters_hard.json")]
    assert len(stability) == 90 and stability.tolist() == pytest.approx(expected, abs=1e-6)  # clean blobs: all 1.0
    unstable = map_script.decode(data["unstable"])
    assert stability[unstable[0]] == stability.min() and list(stability[unstable]) == sorted(stability[unstable])
    assert "selected from 3 results of a sweep (best/)" in (best / "map-pca.html").read_text(encoding="utf-8")
    assert workflow.run("--config", f"embedding_dir={directory}", "min_cluster_size=[5,10,20]", "plot=pca").jobs == {}


# Every command of the original script's README, as --config settings, and where it lands.
SEED_COMMANDS = {
    "python -m Data.clustering --algorithm spectral": (
        ["algorithm=spectral", "plot=none"],
        "results/emb/mean/pca-50/spectral-k8-euclidean-s0",
    ),
    "python -m Data.clustering --reduce pca --reduce-dim 50": (
        ["reduce=pca", "reduce_dim=50", "plot=none"],
        DEFAULT_RESULT,
    ),
    "python -m Data.clustering --plot umap": (["plot=umap", "reduce=none"], "results/emb/mean/none/hdbscan-mcs5-ms5-euclidean"),
    "python -m Data.clustering --pooling flatten": (
        ["pooling=flatten", "plot=none"],
        "results/emb/flatten-longest/pca-50/hdbscan-mcs5-ms5-euclidean",
    ),
    # Files have 3 to 9 frames: keeping 3 truncates all, so no zero padding blurs the blobs.
    "flatten, first 3 frames": (
        ["pooling=flatten", "flatten_frames=3", "plot=none"],
        "results/emb/flatten-3/pca-50/hdbscan-mcs5-ms5-euclidean",
    ),
    "python -m Data.clustering --reduce pca --reduce-dim 50 --plot umap --min-cluster-size 5 "
    "--min-samples 5 --metric cosine": (
        ["reduce=pca", "reduce_dim=50", "plot=umap", "min_cluster_size=5", "min_samples=5", "metric=cosine"],
        "results/emb/mean/pca-50/hdbscan-mcs5-ms5-cosine",
    ),
    "reduce with UMAP, cosine": (
        ["reduce=umap", "reduce_dim=5", "metric=cosine", "plot=none"],
        "results/emb/mean/umap-5-cosine-s0/hdbscan-mcs5-ms5-cosine",
    ),
}


@pytest.mark.parametrize("command", SEED_COMMANDS)
def test_seed_command(workflow, blobs, command):
    directory, truth = blobs
    settings, result = SEED_COMMANDS[command]
    workflow.run("--config", f"embedding_dir={directory}", *settings)
    hard, _ = check_contract(workflow.root / result, truth, str(directory))
    labels = [e["cluster"] for e in hard]
    # k=8 splits the 3 blobs, by request; flatten zero-pads files of 3 to 9 frames, and
    # the padding length is what it sees most.
    if "spectral" not in result and "flatten-longest" not in result:
        assert adjusted_rand_score([truth[e["id"]] for e in hard], labels) > 0.9
    plots = list((workflow.root / result).glob("plot-*.png"))
    plot = next(s.split("=")[1] for s in settings if s.startswith("plot="))
    assert len(plots) == (0 if plot == "none" else 1)


def test_custom_embedding_and_output_dirs(workflow, tmp_path):
    embeddings = tmp_path / "whisper_v2_embeddings"
    truth = make_blobs(embeddings, n_per_cluster=20)
    out = tmp_path / "clustered"
    workflow.run("--config", f"embedding_dir={embeddings}", f"output_dir={out}", "plot=none")
    check_contract(out / "whisper_v2_embeddings/mean/pca-50/hdbscan-mcs5-ms5-euclidean", truth, str(embeddings))
    assert not (workflow.root / "results").exists()


def test_defaults_work_on_small_narrow_embeddings(workflow, tmp_path):
    """30 files of width 16 with the default reduce=pca, reduce_dim=50: PCA keeps the 16
    dims it can give, says so once, and reduce.json and provenance.json record it."""
    directory = tmp_path / "small"
    truth = make_blobs(directory, n_per_cluster=10, width=16)
    run = workflow.run("--config", f"embedding_dir={directory}", "plot=pca")
    said = [line for line in run.stderr.splitlines() if "more than PCA can give" in line]
    assert said == [
        "embclust reduce: reduce_dim=50 is more than PCA can give (30 files of width 16): keeping 16 dims "
        "(the path still names pca-50; reduce.json records 16)"
    ]
    # The path names the setting asked for; what was run is recorded beside it.
    reduced = workflow.root / "results/small/mean/pca-50"
    summary = read_json(reduced / "reduce.json")
    assert summary["dim"] == 16 and summary["requested_dim"] == 50 and len(summary["explained_variance_ratio"]) == 16
    assert np.load(reduced / "reduced.npy").shape == (30, 16)
    result = reduced / "hdbscan-mcs5-ms5-euclidean"
    hard, _ = check_contract(result, truth, str(directory))
    assert adjusted_rand_score([truth[e["id"]] for e in hard], [e["cluster"] for e in hard]) > 0.9
    provenance = read_json(result / "provenance.json")
    assert provenance["workflow_version"] == (REPO / "VERSION").read_text().strip()
    reduction = provenance["reduction"]
    assert reduction["dim"] == 16 and reduction["requested_dim"] == 50
    assert reduction["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert (reduced / "variance.png").exists()
    # The methods paragraph names the dimensions PCA kept, and why not the 50 asked for.
    methods = (result / "methods.md").read_text(encoding="utf-8")
    assert "reduced by principal component analysis (PCA; Pearson, 1901; Jolliffe & Cadima, 2016) to 16 components" in methods
    assert "50 components were requested, but PCA of 30 vectors of width 16 gives at most 16" in methods
    assert f"embclust {provenance['workflow_version']}" in methods


def copies_of(directory, clips, new):
    """A new folder `new` holding copies of the clustered clips `clips` (from `directory`)."""
    new.mkdir()
    for clip in clips:
        shutil.copy(directory / f"{clip}.npy", new)
    return clips


def one_line_error(run, text):
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if text in line]
    assert len(lines) == 1, run.stderr
    return lines[0]


@pytest.mark.parametrize(
    "settings, message",
    [
        (["embedding_dir=does/not/exist"], "embclust: embedding_dir 'does/not/exist' does not exist"),
        (["min_cluster_size=1"], "embclust: config key 'min_cluster_size' has value 1, which is not allowed"),
        (["pooling=median"], "allowed: one of auto, mean, max, meanstd, flatten"),
        (["min_cluster_size=500"], "embclust: only 90 .npy files"),
        (["dataset=.."], "embclust: config key 'dataset' has value '..', which is not allowed"),
        (["seed=4294967296"], "embclust: config key 'seed' has value 4294967296, which is not allowed"),
        (["output_dir={tmp}/afile"], "embclust: output_dir '{tmp}/afile' cannot hold results"),
        (["labels={tmp}/latin.csv"], "embclust: labels file '{tmp}/latin.csv' is not UTF-8 text (byte 0xe9 on line 92)"),
        (["labels={tmp}/twice.csv"], "embclust: labels file '{tmp}/twice.csv' gives 1 id(s) more than one row: 'c0_000' on lines 2, 3"),
        (["min_cluster_size=90"], "embclust: only 90 .npy files in '{emb}', need more than min_cluster_size=90"),
        # issue 23: inputs and outputs kept apart, either way.
        (["output_dir={tmp}"], "embclust: embedding_dir '{emb}' is the results folder '{tmp}/emb'"),
        (["output_dir={tmp}/emb/out"], "embclust: embedding_dir '{emb}' holds the results folder '{tmp}/emb/out/emb'"),
        (["output_dir={tmp}/out", "assign_dir={tmp}/out/emb/assigned/new1/pooled"], "embclust: assign_dir '{tmp}/out/emb/assigned/new1/pooled' is inside the results folder"),
    ],
)
def test_bad_config_fails_before_any_job(workflow, blobs, tmp_path, settings, message):
    directory, truth = blobs
    (tmp_path / "afile").write_text("")
    rows = "".join(f"{i},s\n" for i in sorted(truth)).encode()
    (tmp_path / "latin.csv").write_bytes(b"id,speaker\n" + rows + "x,Jos\u00e9\n".encode("latin-1"))
    (tmp_path / "twice.csv").write_text("id,speaker\nc0_000,a\nc0_000,b\n")
    args = ["--config", f"embedding_dir={directory}"] + [s.format(tmp=tmp_path) for s in settings]
    one_line_error(workflow.run(*args, check=False), message.format(tmp=tmp_path, emb=directory))
    assert not (workflow.root / "results").exists()


def test_empty_directory(workflow, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("no embeddings here")
    run = workflow.run("--config", f"embedding_dir={tmp_path / 'empty'}", check=False)
    one_line_error(run, "holds no .npy files")


def corrupt(path):
    path.write_bytes(b"\x93NUMPY garbage")


def truncated(path):
    np.save(path, np.ones((5, 64), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-100])


def pickled(path):
    np.save(path, np.array([None, {"x": 1}], dtype=object), allow_pickle=True)


def zero_frames(path):
    np.save(path, np.zeros((0, 64), dtype=np.float32))


def with_nan(path):
    a = np.ones((5, 64), dtype=np.float32)
    a[2, 3] = np.nan
    np.save(path, a)


def other_width(path):
    np.save(path, np.ones((5, 32), dtype=np.float32))


def integers(path):
    np.save(path, np.ones((5, 64), dtype=np.int16))


# Problems a header shows are found before any job runs ("embclust: ..."); NaN needs the data.
BAD_FILES = [
    (corrupt, "embclust: zz_bad.npy: not a readable .npy file"),
    (truncated, "embclust: zz_bad.npy: truncated"),
    (pickled, "embclust: zz_bad.npy: holds Python objects"),
    (zero_frames, "embclust: zz_bad.npy: has 0 frames"),
    (integers, "embclust: zz_bad.npy: dtype int16 is not float16, float32 or float64"),
    (with_nan, "embclust pool: error: NaN or Inf values in 1 files: zz_bad.npy"),
    (other_width, "embclust: embedding widths differ: width 64 in 90 files: c0_000.npy, c0_001.npy, c0_002.npy (+87 more); width 32 in 1 files: zz_bad.npy"),
]


def test_each_bad_file_fails_in_one_line_and_keeps_earlier_results(workflow, blobs, tmp_path):
    directory, truth = blobs
    # Accepted as they are: big-endian floats of every width, and labels saved with a BOM.
    for i, clip in enumerate(sorted(truth)[::10]):
        path = directory / f"{clip}.npy"
        np.save(path, np.load(path).astype([">f2", ">f4", ">f8"][i % 3]))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,blob\n" + "".join(f"{i},{c}\n" for i, c in truth.items()), encoding="utf-8-sig")
    args = ["--config", f"embedding_dir={directory}", "plot=none", f"labels={labels}"]
    workflow.run(*args)
    metrics = read_json(workflow.root / DEFAULT_RESULT / "metrics.json")
    assert metrics["labels"]["blob"]["n_labelled"] == 90 and metrics["labels"]["blob"]["all"]["ari"] > 0.9
    before = {p: v for p, v in workflow.files().items() if p.endswith(("clusters_hard.json", "clusters_soft.json"))}
    assert len(before) == 2
    pooled = workflow.root / "results/emb/pooled"
    for damage, message in BAD_FILES:
        damage(directory / "zz_bad.npy")
        run = workflow.run(*args, check=False)
        line = one_line_error(run, message)
        assert line.startswith(message), damage.__name__
        # No output holds the bad file, and earlier results are untouched.
        assert not any("zz_bad" in p.read_text() for p in pooled.rglob("*.ids.tsv")), damage.__name__
        after = workflow.files()
        assert all(after[p] == v for p, v in before.items()), damage.__name__

    # Bad files in every shard: each problem is named once, in one line, before any job runs.
    (directory / "zz_bad.npy").unlink()
    for clip in sorted(truth)[:4]:
        integers(directory / f"{clip}.npy")
    run = workflow.run(*args, "pool_shards=8", check=False)
    one_line_error(run, "embclust: c0_000.npy, c0_001.npy, c0_002.npy (+1 more): dtype int16 is not float16")
    assert run.stderr.count("dtype") == 1 and run.jobs == {}


def test_only_noise_still_writes_valid_json(workflow, tmp_path):
    directory = tmp_path / "noise"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        np.save(directory / f"n{i}.npy", rng.normal(size=(3, 8)).astype(np.float32))
    run = workflow.run("--config", f"embedding_dir={directory}", "reduce=none", "min_cluster_size=6", "plot=pca")
    assert "no clusters found: all 10 files are noise (-1)" in run.stderr
    hard, soft = check_contract(workflow.root / "results/noise/mean/none/hdbscan-mcs6-ms6-euclidean", [f"n{i}" for i in range(10)], str(directory))
    assert {e["cluster"] for e in hard} == {-1} and all(e["probabilities"] == [] for e in soft)


def test_lint_is_clean(workflow):
    os.symlink(REPO / "demo", workflow.root / "demo")
    run = workflow.run("--lint")
    assert "Lints for" not in run.stdout + run.stderr


def test_spectral_auto_after_a_reduction_reads_k_from_the_pooled_matrix(workflow, blobs):
    directory, truth = blobs
    run = workflow.run("--config", f"embedding_dir={directory}", "reduce=pca", "reduce_dim=2", "algorithm=spectral", "n_clusters=auto", "plot=none")
    # Read from the pooled 90 x 64 matrix, not the 90 x 2 one clustered.
    assert "k read from the eigengap of the pooled vectors' (90 x 64) self-tuning graph: 3; the gap is" in run.stderr
    result = workflow.root / "results/emb/mean/pca-2/spectral-kauto-euclidean-s0"
    assert (result / "eigengap.png").stat().st_size > 0 and (result / "eigengap.svg").stat().st_size > 0
    hard, _ = check_contract(result, truth, str(directory))
    assert adjusted_rand_score([truth[e["id"]] for e in hard], [e["cluster"] for e in hard]) == 1.0


@pytest.mark.slow
def test_two_runs_from_scratch_give_identical_bytes(tmp_path, blobs):
    """Determinism: JSONs, plots and metrics match byte for byte across directories."""
    directory, _ = blobs
    outputs = []
    for name in ("a", "b"):
        wf = Workflow(tmp_path / name)
        shutil.copytree(directory, wf.root / "emb")
        # UMAP reduction (seeded), then both algorithms; figures and maps on a PCA layout.
        wf.run("--config", "embedding_dir=emb", "reduce=umap", "reduce_dim=5", "algorithm=[hdbscan,spectral]", "n_clusters=3", "plot=pca")
        outputs.append({p: v[1] for p, v in wf.files().items() if p.endswith((".json", ".png", ".svg", ".tsv", ".html"))})
    assert len(outputs[0]) > 15 and outputs[0].keys() == outputs[1].keys()
    different = [p for p in outputs[0] if outputs[0][p] != outputs[1][p]]
    assert different == []


def test_trim_padding_pools_only_the_audio_frames(workflow, tmp_path):
    from test_pool import write_wav

    embeddings, audio = tmp_path / "padded", tmp_path / "audio"
    truth = make_blobs(embeddings, n_per_cluster=10, frames=(4, 4))
    audio.mkdir()
    for i, clip in enumerate(sorted(truth)):
        path = embeddings / f"{clip}.npy"
        np.save(path, np.vstack([np.load(path), np.full((40, 64), 50.0, dtype=np.float32)]))  # padding
        if i > 0:  # the first clip has no wav: it keeps all its frames
            write_wav(audio / f"{clip}.wav", 4 / 50)
    args = ["--config", f"embedding_dir={embeddings}", f"audio_dir={audio}", "reduce=none", "plot=none"]
    run = workflow.run(*args, "trim_padding=true")
    # The clip without a wav is named by count, in its shard's message.
    assert re.search(r"embclust pool: 1 of \d+ files have no <id>.wav in audio_dir: pooling all their frames", run.stderr)
    pooled = np.load(workflow.root / "results/padded/pooled/mean-trim50.npy")
    raw = {c: np.load(embeddings / f"{c}.npy") for c in sorted(truth)}
    expected = [raw[c].mean(0) if i == 0 else raw[c][:4].mean(0) for i, c in enumerate(sorted(truth))]
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)
    check_contract(workflow.root / "results/padded/mean-trim50/none/hdbscan-mcs5-ms5-euclidean", truth, str(embeddings))


def test_added_files_repool_only_their_shards(workflow, blobs):
    import manifests

    directory, truth = blobs
    args = ["--config", f"embedding_dir={directory}", "plot=none", "pool_shards=8"]
    workflow.run(*args)
    shard_files = workflow.root / "results/emb/pooled/mean.shards"
    before = {p.name: p.stat().st_mtime_ns for p in shard_files.iterdir()}
    rng = np.random.default_rng(9)
    new = [f"new{i}" for i in range(3)]
    for clip in new:
        np.save(directory / f"{clip}.npy", rng.normal(size=(4, 64)).astype(np.float32))
    touched = {f"{manifests.shard_of(clip, 8)}-of-8" for clip in new}
    run = workflow.run(*args)
    assert run.jobs["pool"] == len(touched) < 8 and run.jobs["merge_pool"] == 1
    after = {p.name: p.stat().st_mtime_ns for p in shard_files.iterdir()}
    changed = {name.split(".")[0] for name in before if after[name] != before[name]}
    assert changed == touched
    ids = [line.split("\t")[0] for line in (workflow.root / "results/emb/pooled/mean.ids.tsv").read_text().splitlines()[1:]]
    assert ids == sorted(list(truth) + new)
    # A removed file re-pools only its shard too.
    (directory / "new0.npy").unlink()
    run = workflow.run(*args)
    assert run.jobs["pool"] == 1 and run.jobs["merge_pool"] == 1
    assert (shard_files / f"{manifests.shard_of('new0', 8)}-of-8.ids.tsv").stat().st_mtime_ns > after[f"{manifests.shard_of('new0', 8)}-of-8.ids.tsv"]


def test_nested_folders_and_file_names_snakemake_would_rewrite(workflow, tmp_path):
    """One run over subfolders, with file and directory names that Snakemake reads as
    path variables or wildcards, and links that lead nowhere; then the names refused."""
    # A folder named <results> beside a folder named results: Snakemake would read the latter.
    parent = tmp_path / "pv"
    directory = parent / "<results>"
    truth = make_blobs(directory, n_per_cluster=20)
    make_blobs(parent / "results", n_per_cluster=5, seed=1)  # the decoy
    odd = {"{x}": "c0_000", "<script>": "c1_000", "<logs>": "c2_000"}
    for name, clip in odd.items():
        (directory / f"{clip}.npy").rename(directory / f"{name}.npy")
        truth[name] = truth.pop(clip)
    # Files in 3 subfolders, some left at the top; one folder two levels down is not read.
    nested = {}
    for k, clip in enumerate(sorted(truth)):
        if k % 4:
            sub = f"part{k % 3}"
            (directory / sub).mkdir(exist_ok=True)
            (directory / f"{clip}.npy").rename(directory / sub / f"{clip}.npy")
            nested[clip] = os.path.join(str(directory), sub, f"{clip}.npy")
        else:
            nested[clip] = os.path.join(str(directory), f"{clip}.npy")
    (directory / "part0/deeper").mkdir()
    np.save(directory / "part0/deeper/unread.npy", np.ones((3, 64), dtype=np.float32))
    os.symlink(directory / "gone.npy", directory / "dangling.npy")
    os.symlink(directory / "part1/loop.npy", directory / "part1/loop.npy")
    args = ["--config", f"embedding_dir={directory}", "dataset=pv", "plot=pca", "reduce=none"]
    run = workflow.run(*args)
    notes = [line for line in run.stderr.splitlines() if line.startswith("embclust: ")]
    assert notes == [
        f"embclust: skipped 2 links in '{directory}' that lead nowhere (dangling or a loop): dangling.npy, part1/loop.npy",
        f"embclust: 1 folders two levels down in '{directory}' are not read (only its subfolders are): part0/deeper",
    ]
    hard = read_json(workflow.root / "results/pv/mean/none/hdbscan-mcs5-ms5-euclidean/clusters_hard.json")
    assert {e["id"]: e["path"] for e in hard} == nested
    assert adjusted_rand_score([truth[e["id"]] for e in hard], [e["cluster"] for e in hard]) > 0.9
    assert workflow.run(*args).jobs == {}

    # Names the TSVs cannot hold, all named in one line before any job runs.
    for name in ["tab\there.npy", "new\nline.npy", "carriage\rreturn.npy", ".npy"]:
        np.save(directory / "part2" / "x.npy", np.ones(64, dtype=np.float32))
        (directory / "part2" / "x.npy").rename(directory / "part2" / name)
    line = one_line_error(workflow.run(*args, check=False), "embclust: file names embclust cannot use")
    assert r"'part2/carriage\rreturn.npy' holds a carriage return" in line and "(+1 more)" in line
    for path in (directory / "part2").iterdir():
        if path.name in ("tab\there.npy", "new\nline.npy", "carriage\rreturn.npy", ".npy"):
            path.unlink()
    # The same name in two subfolders.
    shutil.copy(directory / "part1" / f"{sorted(c for c in nested if 'part1' in nested[c])[0]}.npy", directory / "part2")
    line = one_line_error(workflow.run(*args, check=False), "embclust: id '")
    assert "is in two files" in line and "/part1/" in line and "/part2/" in line
    # An output_dir Snakemake would rewrite.
    line = one_line_error(workflow.run(*args, f"output_dir={tmp_path}/<logs>/x", check=False), "embclust: output_dir")
    assert "holds '<logs>', which Snakemake would rewrite" in line
    assert not (tmp_path / "logs").exists()


def test_assign_new_clips_to_an_existing_result(workflow, blobs, tmp_path):
    """assign_dir: copies of clustered clips get their clusters back, new clips near a blob
    join it, adding a file reruns only its pool_assign shard and the assign job, and bad
    new files fail in one line. Then a sweep assigns to best/."""
    directory, truth = blobs
    new = tmp_path / "new"
    copied = copies_of(directory, sorted(truth)[::15], new)
    fresh = {}
    for j, clip in enumerate(sorted(truth)[1::30]):  # one clip of each blob, a little moved
        a = np.load(directory / f"{clip}.npy")
        np.save(new / f"fresh{j}.npy", (a + 0.1).astype(np.float32))
        fresh[f"fresh{j}"] = truth[clip]
    args = ["--config", f"embedding_dir={directory}", "plot=none", f"assign_dir={new}"]
    run = workflow.run(*args)
    import manifests

    shards = {manifests.shard_of(clip, 2) for clip in copied + list(fresh)}
    assert run.jobs["assign"] == 1 and run.jobs["pool_assign"] == len(shards)
    assert f"embclust assign: {len(copied)} of {len(copied) + 3} new clips have ids already in the clustering" in run.stderr
    assigned = workflow.root / DEFAULT_RESULT / "assigned/new"
    hard, soft = check_contract(assigned, copied + list(fresh), str(new))
    own = {e["id"]: e for e in read_json(workflow.root / DEFAULT_RESULT / "clusters_hard.json")}
    for e in hard:
        if e["id"] in own:
            # GLOSH: the same score, up to the rounding of the cluster stage's float32 one.
            assert e["cluster"] == own[e["id"]]["cluster"] and abs(e["outlier_score"] - own[e["id"]]["outlier_score"]) < 2e-6
    blob_of = {own[c]["cluster"]: truth[c] for c in copied}
    assert all(blob_of[e["cluster"]] == fresh[e["id"]] for e in hard if e["id"] in fresh)
    provenance = read_json(assigned / "provenance.json")
    assert provenance["assigned_to"] == "mean/pca-50/hdbscan-mcs5-ms5-euclidean" and provenance["ids_already_clustered"] == len(copied)

    # A new file: only its shard is pooled again, then the assignment; nothing above it.
    before = workflow.files()
    np.save(new / "late.npy", np.load(directory / f"{sorted(truth)[2]}.npy"))
    rerun = workflow.run(*args)
    assert rerun.jobs == {"pool_assign": 1, "assign": 1}
    after = workflow.files()
    assert sorted(p for p in before if after[p] != before[p]) == [str(assigned.relative_to(workflow.root) / n) for n in ("clusters_hard.json", "clusters_soft.json", "points.npz", "provenance.json")]
    assert workflow.run(*args).jobs == {}

    # Bad new files, each in one line before any job runs.
    np.save(new / "narrow.npy", np.ones((3, 32), dtype=np.float32))
    line = one_line_error(workflow.run(*args, check=False), "embclust: assign_dir")
    assert "embedding widths differ" in line and "narrow.npy" in line
    for path in new.iterdir():
        path.unlink()
    np.save(new / "narrow.npy", np.ones((3, 32), dtype=np.float32))
    one_line_error(workflow.run(*args, check=False), f"embclust: assign_dir files are 32 wide, the clustered files 64: {new}/narrow.npy")
    (new / "narrow.npy").unlink()
    one_line_error(workflow.run(*args, check=False), f"embclust: assign_dir '{new}' holds no .npy files")

    # A sweep assigns to the result its selection chose, under best/.
    for clip in copied:
        shutil.copy(directory / f"{clip}.npy", new)
    sweep = workflow.run(*args, "min_cluster_size=[5,10]")
    assert sweep.jobs["select_best"] == 1
    chosen = read_json(workflow.root / "results/emb/best/selection.json")["chosen"]
    best = workflow.root / "results/emb/best/assigned/new"
    assert read_json(best / "provenance.json")["assigned_to"] == chosen and read_json(best / "provenance.json")["via"] == "best"
    result = {e["id"]: e["cluster"] for e in read_json(workflow.root / "results/emb" / chosen / "clusters_hard.json")}
    assert {e["id"]: e["cluster"] for e in read_json(best / "clusters_hard.json")} == {c: result[c] for c in copied}

    # The chosen result's map draws the new clips as a layer: copies of clustered clips on
    # their own PCA layout points, with their assigned clusters; the other map has none.
    maps = workflow.run(*args, "min_cluster_size=[5,10]", "plot=pca")
    assert maps.jobs["map"] == 2 and maps.jobs["map_best"] == 1, maps.jobs
    assigned_hard = {e["id"]: e for e in read_json(best / "clusters_hard.json")}
    pages = sorted((workflow.root / "results/emb").glob("*/*/*/map-pca.html"))
    assert len(pages) == 2 and any(str(p.parent).endswith(chosen) for p in pages)
    # best/'s map is the chosen result's: it has the layer too.
    for path in pages + [workflow.root / "results/emb/best/map-pca.html"]:
        _, data = map_data(path)
        if not str(path.parent).endswith(chosen) and path.parent.name != "best":
            assert data["layer"] is None
            continue
        n = data["n_clustered"]
        assert data["layer"]["name"] == "new" and data["ids"][n:] == copied
        x, y, cl = (map_script.decode(data[k]) for k in ("x", "y", "cluster"))
        for k, clip in enumerate(copied):
            own = data["ids"].index(clip)
            assert abs(x[n + k] - x[own]) < 1e-3 and abs(y[n + k] - y[own]) < 1e-3
            assert cl[n + k] - 1 == assigned_hard[clip]["cluster"]


@pytest.mark.parametrize(
    "reduce, result, clusterer",
    [
        ("umap", "mean/umap-10-euclidean-s0", "hdbscan-mcs5-ms5-euclidean"),
        ("pca", "mean/pca-50", "hdbscan-mcs5-ms5-euclidean"),
        ("pca", "mean/pca-50", "spectral-k3-euclidean-s0"),
    ],
)
def test_a_clip_far_from_all_data_is_assigned_to_no_cluster_under_any_reduction(workflow, blobs, tmp_path, reduce, result, clusterer):
    """issue 23: under UMAP a new clip was placed among its nearest clustered clips and got
    a confident cluster; from the pooled space it is noise with a high outlier score, as
    under PCA (and for spectral clustering, which has no noise of its own), while copies
    of clustered clips still get their own clusters back."""
    directory, truth = blobs
    new = tmp_path / "new"
    copied = copies_of(directory, sorted(truth)[::10], new)
    np.save(new / "far.npy", np.full((4, 64), -1000, dtype=np.float32))
    algorithm = ["algorithm=spectral", "n_clusters=3"] if clusterer.startswith("spectral") else []
    workflow.run("--config", f"embedding_dir={directory}", "plot=none", f"reduce={reduce}", f"assign_dir={new}", *algorithm)
    folder = workflow.root / "results/emb" / result / clusterer
    hard = {e["id"]: e for e in read_json(folder / "assigned/new/clusters_hard.json")}
    assert hard["far"]["cluster"] == -1 and hard["far"]["probability"] == 0 and hard["far"]["outlier_score"] > 0.99
    own = {e["id"]: e["cluster"] for e in read_json(folder / "clusters_hard.json")}
    assert {c: hard[c]["cluster"] for c in copied} == {c: own[c] for c in copied}
    assert sum(own[c] >= 0 for c in copied) >= 7
    if reduce == "umap":  # methods.md states the n_neighbors reduce.json records (issue 23)
        recorded = read_json(folder.parent / "reduce.json")["n_neighbors"]
        assert f"n_neighbors={recorded}," in (folder / "methods.md").read_text()


def test_identical_vectors_give_an_honest_result_and_strict_json(workflow, tmp_path):
    """issue 23: 25 identical vectors. PCA's explained variance is undefined, not NaN (every
    JSON the run writes is strict, conftest.check_json_files), and methods.md says so;
    n_clusters=auto finds no eigengap and says so, and no file's probability is 0."""
    emb = tmp_path / "same"
    emb.mkdir()
    for i in range(25):
        np.save(emb / f"s{i:02d}.npy", np.ones((3, 16), dtype=np.float32))
    args = ["--config", f"embedding_dir={emb}", "reduce=pca", "plot=pca", "algorithm=[hdbscan,spectral]", "n_clusters=auto", "min_cluster_size=5"]
    run = workflow.run(*args)
    assert "no eigengap" in run.stderr
    dataset = workflow.root / "results/same"
    assert read_json(dataset / "mean/pca-50/reduce.json")["explained_variance_ratio"] is None
    for result in ("hdbscan-mcs5-ms5-euclidean", "spectral-kauto-euclidean-s0"):
        methods = (dataset / "mean/pca-50" / result / "methods.md").read_text()
        assert "nan" not in methods.lower() and "no variance" in methods
        assert read_json(dataset / "mean/pca-50" / result / "provenance.json")["reduction"]["explained_variance"] is None
    spectral = read_json(dataset / "mean/pca-50/spectral-kauto-euclidean-s0/clusters_hard.json")
    assert len({e["cluster"] for e in spectral}) == 2 and min(e["probability"] for e in spectral) > 0
    assert "showed no eigengap" in (dataset / "mean/pca-50/spectral-kauto-euclidean-s0/methods.md").read_text()


def test_all_zero_vectors_under_cosine_are_named_right_after_pooling(workflow, blobs, tmp_path):
    """issue 23: the all-zero cosine error named no file, and with reduce=pca the zero
    vector was accepted (PCA centred it into a direction of its own). Now the files are
    named after pooling, whatever the reduction, and in assign_dir too."""
    directory, _ = blobs
    np.save(directory / "zero.npy", np.zeros((3, 64), dtype=np.float32))
    args = ["--config", f"embedding_dir={directory}", "plot=none", "reduce=pca", "metric=cosine"]
    line = one_line_error(workflow.run(*args, check=False), "embclust cosine_check: error:")
    assert line.endswith(f"1 files pool to all-zero vectors, which have no cosine direction: {directory}/zero.npy; remove them or use metric=euclidean")
    assert not list((workflow.root / "results/emb/mean/pca-50").glob("neighbours-*"))
    workflow.run(*args[:-1], "metric=euclidean")  # euclidean has no use for a direction
    new = tmp_path / "new"
    new.mkdir()
    (directory / "zero.npy").rename(new / "zero.npy")
    shutil.copy(directory / "c0_000.npy", new)
    line = one_line_error(workflow.run(*args, f"assign_dir={new}", check=False), "embclust assign: error:")
    assert f"1 new clips pool to all-zero vectors, which have no cosine direction: {new}/zero.npy" in line


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="runs snakemake as nobody: needs root and setpriv")
def test_filesystem_errors_at_start_up_are_one_line_for_a_user_without_rights(tmp_path):
    """issue 23: run as a user other than root (nobody), an unreadable embedding_dir, a
    subfolder of it or of assign_dir that cannot be read, an output_dir that cannot be
    created and a read-only one each stop the start in one line, without a traceback."""
    import subprocess
    import sys
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="embclust-nobody-"))
    try:
        workflow = Workflow(base / "wf")
        emb, new = base / "emb", base / "new"
        make_blobs(emb, n_per_cluster=10)
        make_blobs(new / "ok", n_per_cluster=2)
        subprocess.run(["chmod", "-R", "a+rwX", str(base)], check=True)
        (base / "locked").mkdir(mode=0o755)  # root's: nobody cannot create output_dir in it
        (base / "readonly").mkdir()
        (base / "readonly").chmod(0o555)

        def start(*settings):
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "snakemake",
                   "--cores", "1", "-n", "--config", f"embedding_dir={emb}", "plot=none", *settings]  # fmt: skip
            env = dict(os.environ, PYTHONWARNINGS="ignore", HOME=str(base))
            return subprocess.run(cmd, cwd=workflow.root, capture_output=True, text=True, env=env)

        def refused(run, text):
            assert "Traceback" not in run.stderr, run.stderr
            return one_line_error(run, text)

        (emb / "sub").mkdir()
        np.save(emb / "sub/x.npy", np.ones((2, 64), dtype=np.float32))
        (emb / "sub").chmod(0)
        refused(start(), f"embclust: embedding_dir subfolder '{emb}/sub' cannot be read (Permission denied)")
        (emb / "sub").chmod(0o777)
        (new / "ok").chmod(0)
        refused(start(f"assign_dir={new}"), f"embclust: assign_dir subfolder '{new}/ok' cannot be read (Permission denied)")
        (new / "ok").chmod(0o777)
        refused(start(f"output_dir={base}/locked/out"), f"embclust: cannot create, write or read '{base}/locked/out")
        refused(start(f"output_dir={base}/readonly"), f"embclust: cannot create, write or read '{base}/readonly/emb")
        emb.chmod(0)
        refused(start(), f"embclust: embedding_dir '{emb}' cannot be read (Permission denied)")
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_after_a_kill_the_next_run_needs_unlock_as_the_readme_says(workflow, blobs):
    """issue 23: after kill -9 the next run stops with 'Directory cannot be locked' until
    `snakemake --unlock`, as docs/slurm.md's "When a job fails" says; then the run completes."""
    import signal
    import subprocess
    import sys
    import time

    directory, truth = blobs
    args = ["--config", f"embedding_dir={directory}", "plot=none"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", EMBCLUST_TEST_POOL_DELAY="30")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    killed = subprocess.Popen(cmd, cwd=workflow.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    logs = workflow.root / "results/emb/logs/pool/mean"
    deadline = time.monotonic() + 60
    while not (logs.is_dir() and any(logs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    locked = workflow.run(*args, check=False)
    assert locked.returncode != 0 and "Directory cannot be locked" in locked.stderr
    assert "--unlock" in (REPO / "docs/slurm.md").read_text().split("## When a job fails")[1].split("\n## ")[0]
    workflow.run("--unlock", *args)
    done = workflow.run(*args)
    assert done.jobs["pool"] == 2
    assert len(read_json(workflow.root / DEFAULT_RESULT / "clusters_hard.json")) == len(truth)


def test_split_export_writes_the_same_bytes_as_one_job(workflow, blobs):
    """export_shards=3: three export_block jobs over row ranges, joined by the export job
    into the JSONs one export job writes, byte for byte (both algorithms, both formats);
    the row ranges are removed once joined."""
    directory, _ = blobs
    shutil.copytree(directory, workflow.root / "emb")
    base = ["--config", "embedding_dir=emb", "algorithm=[hdbscan,spectral]", "n_clusters=3", "plot=none", "selection=none"]
    jsons = lambda: {p: v[1] for p, v in workflow.files().items() if p.endswith(("clusters_hard.json", "clusters_soft.json"))}  # noqa: E731
    whole = {}
    for top_k in ("auto", "2"):
        workflow.run(*base, "export_shards=1", f"soft_top_k={top_k}")
        whole[top_k] = jsons()
    assert len(whole["auto"]) == 4 and whole["auto"] != whole["2"]
    for top_k in ("auto", "2"):
        split = workflow.run(*base, "export_shards=3", f"soft_top_k={top_k}")
        assert split.jobs == {"export_block": 6, "export": 2}
        assert jsons() == whole[top_k]
    assert not list(workflow.root.rglob("soft-blocks/*"))
