"""Real snakemake runs on tiny data: outputs, caching, sweeps, seed commands, bad input."""

import csv
import json
import os

import numpy as np
import pytest
from conftest import REPO, make_blobs
from sklearn.metrics import adjusted_rand_score

DEFAULT_RESULT = "results/emb/mean/pca-50/hdbscan-mcs5-ms5-euclidean"


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


def test_demo_run_clusters_the_digits(workflow):
    os.symlink(REPO / "demo", workflow.root / "demo")
    workflow.run()
    result = workflow.root / "results/digits/mean/pca-50/hdbscan-mcs5-ms5-euclidean"
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


def test_cache_reruns_only_the_stages_below_a_change(workflow, blobs):
    directory, truth = blobs
    base = ["--config", f"embedding_dir={directory}"]
    first = workflow.run(*base)
    assert first.jobs == {"pool": 1, "reduce": 1, "layout": 1, "cluster": 1, "export": 1, "plot": 1, "sizes": 1, "tree": 1, "variance": 1, "map": 1}
    check_contract(workflow.root / DEFAULT_RESULT, truth, str(directory))
    before = workflow.files()

    changed = workflow.run(*base, "min_cluster_size=7")
    assert changed.jobs == {"cluster": 1, "export": 1, "plot": 1, "sizes": 1, "tree": 1, "map": 1}
    after = workflow.files()
    assert all(after[p] == before[p] for p in before), "an existing file was rewritten"
    assert (workflow.root / "results/emb/mean/pca-50/hdbscan-mcs7-ms7-euclidean/clusters_hard.json").exists()

    back = workflow.run(*base)
    assert back.jobs == {} and "Nothing to be done" in back.stdout + back.stderr
    assert workflow.files() == after

    # min_samples=null means min_cluster_size, so naming it explicitly is the same result.
    assert workflow.run(*base, "min_samples=5").jobs == {}

    reduced = workflow.run(*base, "reduce_dim=10")
    assert "pool" not in reduced.jobs and reduced.jobs["reduce"] == 1

    # Snakemake keeps input checksums: a touched but unchanged file reruns nothing...
    first_file = sorted(directory.iterdir())[0]
    os.utime(first_file)
    assert workflow.run(*base).jobs == {}
    # ...while changed content re-pools, and everything below follows.
    np.save(first_file, np.load(first_file) + 1)
    assert workflow.run(*base).jobs == {"pool": 1, "reduce": 1, "layout": 1, "cluster": 1, "export": 1, "plot": 1, "sizes": 1, "tree": 1, "variance": 1, "map": 1}


def test_sweep_from_the_command_line(workflow, blobs):
    directory, _ = blobs
    run = workflow.run("--config", f"embedding_dir={directory}", "min_cluster_size=[5,10,20]", "plot=pca")
    assert run.jobs == {"pool": 1, "reduce": 1, "layout": 1, "cluster": 3, "export": 3, "plot": 3, "sizes": 3, "tree": 3, "variance": 1, "map": 3}
    for mcs in (5, 10, 20):
        result = workflow.root / f"results/emb/mean/pca-50/hdbscan-mcs{mcs}-ms{mcs}-euclidean"
        assert (result / "clusters_hard.json").exists() and (result / "plot-pca.png").exists()


# Every command of the original script's README, as --config settings, and where it lands.
SEED_COMMANDS = {
    "python -m Data.clustering --algorithm spectral": (
        ["algorithm=spectral", "plot=pca"],
        "results/emb/mean/pca-50/spectral-k8-euclidean-s0",
    ),
    "python -m Data.clustering --reduce pca --reduce-dim 50": (
        ["reduce=pca", "reduce_dim=50", "plot=none"],
        DEFAULT_RESULT,
    ),
    "python -m Data.clustering --plot umap": (["plot=umap", "reduce=none"], "results/emb/mean/none/hdbscan-mcs5-ms5-euclidean"),
    "python -m Data.clustering --pooling flatten": (
        ["pooling=flatten", "plot=pca"],
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
        (["pooling=median"], "allowed: one of mean, max, meanstd, flatten"),
        (["min_cluster_size=500"], "embclust: only 90 .npy files"),
    ],
)
def test_bad_config_fails_before_any_job(workflow, blobs, settings, message):
    directory, _ = blobs
    args = ["--config", f"embedding_dir={directory}"] + settings
    one_line_error(workflow.run(*args, check=False), message)
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


@pytest.mark.parametrize(
    "damage, message",
    [
        (corrupt, "zz_bad.npy: not a readable .npy file"),
        (truncated, "zz_bad.npy: truncated"),
        (pickled, "zz_bad.npy: holds Python objects"),
        (zero_frames, "zz_bad.npy: has 0 frames"),
        (with_nan, "NaN or Inf values in 1 files: zz_bad.npy"),
        (other_width, "width 32 in 1 files: zz_bad.npy"),
    ],
)
def test_bad_file_fails_in_one_line_and_keeps_earlier_results(workflow, blobs, damage, message):
    directory, _ = blobs
    args = ["--config", f"embedding_dir={directory}", "plot=none"]
    workflow.run(*args)
    before = {p: v for p, v in workflow.files().items() if p.endswith(".json")}
    damage(directory / "zz_bad.npy")
    run = workflow.run(*args, check=False)
    line = one_line_error(run, message)
    assert line.startswith("embclust pool: error:")
    assert not (workflow.root / "results/emb/pooled/mean.npy").exists()  # no partial matrix
    after = workflow.files()
    assert all(after[p] == v for p, v in before.items())


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
