"""Benchmark: assign 100,000 new pooled clips to a clustering of 50,000 (issue 14).

Writes one synthetic set of 150,000 pooled (1280,) float32 clips (bench/make_data.py's
generator: 40 clusters in a 16-dim latent space, 5% noise), the first 50,000 into
<workdir>/train and the other 100,000, drawn from the same clusters, into <workdir>/new.
Clusters train with the defaults (plot=none: no figures), then runs the same command with
assign_dir=new and times it: the whole snakemake command and the assignment jobs
(pool_assign shards and assign) from snakemake's log. Also the agreement of the new
clips' clusters with the generator's truth, and the load average before the timed run.

    .venv/bin/python bench/assign.py                 # about 5 minutes on 2 cores
    .venv/bin/python bench/assign.py --n-train 5000 --n-new 10000 --workdir /tmp/embclust-assign-smoke
"""

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from make_data import clip_vectors  # noqa: E402
from run import job_times  # noqa: E402

SNAKEMAKE = os.path.join(os.path.dirname(sys.executable), "snakemake")


def write_pooled(directory, ids, vectors):
    os.makedirs(directory, exist_ok=True)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (vectors.shape[1],)})
    header = buffer.getvalue()
    for clip, vector in zip(ids, vectors):
        with open(os.path.join(directory, clip + ".npy"), "wb") as f:
            f.write(header + vector.astype(np.float32).tobytes())


def snakemake(args, log_path):
    start = time.perf_counter()
    with open(log_path, "w") as log:
        subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n-new", type=int, default=100000)
    p.add_argument("--workdir", default="/tmp/embclust-assign")
    a = p.parse_args(argv)
    train, new, out = (os.path.join(a.workdir, d) for d in ("train", "new", "out"))
    if not os.path.isdir(new):
        labels, vectors = clip_vectors(a.n_train + a.n_new, 40, 16, 1280, 0.05, 1.0, seed=0)
        ids = [f"clip{i:06d}" for i in range(len(labels))]
        write_pooled(train, ids[: a.n_train], vectors[: a.n_train])
        write_pooled(new, ids[a.n_train :], vectors[a.n_train :])
        with open(os.path.join(a.workdir, "truth.csv"), "w") as f:
            f.write("id,true_cluster\n" + "".join(f"{i},{c}\n" for i, c in zip(ids, labels)))
    base = ["--config", f"embedding_dir={train}", f"output_dir={out}", "plot=none", "reduce=pca"]
    clustering_s = snakemake(base, os.path.join(a.workdir, "cluster.log"))
    load = os.getloadavg()
    assign_s = snakemake(base + [f"assign_dir={new}"], os.path.join(a.workdir, "assign.log"))
    jobs = job_times(os.path.join(a.workdir, "assign.log"))
    result = os.path.join(out, "train/mean/pca-50/hdbscan-mcs5-ms5-euclidean")
    with open(os.path.join(a.workdir, "truth.csv")) as f:
        truth = {row["id"]: int(row["true_cluster"]) for row in csv.DictReader(f)}
    with open(os.path.join(result, "assigned/new/clusters_hard.json")) as f:
        assigned = json.load(f)
    from sklearn.metrics import adjusted_rand_score

    clustered = [e for e in assigned if e["cluster"] >= 0 and truth[e["id"]] >= 0]
    record = {
        "n_train": a.n_train,
        "n_new": a.n_new,
        "clustering_command_s": round(clustering_s, 1),
        "assign_command_s": round(assign_s, 1),
        "assign_jobs": jobs,
        "load_average_before": [round(x, 2) for x in load],
        "cores": os.cpu_count(),
        "new_noise_fraction": round(sum(e["cluster"] < 0 for e in assigned) / len(assigned), 4),
        "ari_vs_truth_clustered_new": round(adjusted_rand_score([truth[e["id"]] for e in clustered], [e["cluster"] for e in clustered]), 4),
    }
    with open(os.path.join(a.workdir, "assign-bench.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
