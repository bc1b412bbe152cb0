"""A million clips through the workflow: time and peak memory of every stage.

    python bench/million.py                      # 1,000,000 files in 1,000 subfolders
    python bench/million.py --n 200000 --clusters 1000 --subdirs 200

Generates (once; reused when --data already holds them) N pooled (1280,) float16
files in --subdirs subfolders, from --clusters power-law clusters plus 10 % noise
(bench/make_data.py --power 1 --latent 32 --noise 0.1), then from an empty output
folder:

1. `snakemake -n` on that tree (the DAG and the start-up's file listing);
2. the defaults with plot=umap (`snakemake --cores 2`), from scratch.

While the run goes, the RSS of every process in its tree is sampled every 0.2 s;
a job's peak is its script process's (Snakemake runs each stage's script as
`python .snakemake/scripts/tmp*.<script>.py`; figures and variance share plot.py,
so they share one peak). Per stage: jobs, summed seconds (from
Snakemake's log stamps) and the largest job's peak RSS. Also the soft JSON's and
the map's sizes and the number of clusters. Writes <workdir>/million.md and .json.
"""

import argparse
import csv
import glob
import json
import os
import re
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import PY, REPO, SNAKEMAKE, job_times, now, rss, wait_sampling  # noqa: E402


def true_clusters(labels_csv):
    """{id: the generator's cluster}, -1 for noise (make_data.py's <out>.labels.csv)."""
    with open(labels_csv) as f:
        return {row["id"]: int(row["true_cluster"]) for row in csv.DictReader(f)}


def agreement(truth, hard_json):
    """ARI of the result's clusters against the generator's, over all files and over the
    files that are not noise, and the share of the noise files labelled noise."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    got = {entry["id"]: entry["cluster"] for entry in json.load(open(hard_json))}
    ids = sorted(got)
    t, g = np.array([truth[i] for i in ids]), np.array([got[i] for i in ids])
    members = t >= 0
    return {
        "ari_all": round(adjusted_rand_score(t, g), 4),
        "ari_members": round(adjusted_rand_score(t[members], g[members]), 4),
        "noise_found_as_noise": round(float((g[~members] < 0).mean()), 4) if (~members).any() else None,
    }


def make_data(data, n, clusters, subdirs):
    if os.path.exists(data + ".labels.csv"):
        return
    subprocess.run(
        [PY, os.path.join(REPO, "bench/make_data.py"), "--out", data, "--n", str(n), "--clusters", str(clusters)]
        + ["--power", "1", "--latent", "32", "--noise", "0.1", "--dtype", "float16", "--subdirs", str(subdirs)],
        check=True,
    )


# Rules whose script is named otherwise (figures and variance both run plot.py: one peak for both).
RULE_SCRIPTS = {"figures": "plot", "figures_spectral": "plot", "variance": "plot", "summary": "summary",
                "export_block": "export", "hard_json": "export"}  # export.py's jobs share one peak


def stage_of(cmdline):
    for part in cmdline:
        m = re.search(r"\.snakemake/scripts/tmp\w+\.(\w+)\.py$", part)
        if m:
            return m.group(1)
    return None


def run_sampled(cmd, log_path):
    """(wall s, exit code, peak RSS MB per stage script, peak RSS MB of snakemake itself)."""
    peaks, main_peak = {}, [0]
    t = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

        def record(root, descendants):
            main_peak[0] = max(main_peak[0], root.memory_info().rss)
            for p in descendants:
                try:
                    stage = stage_of(p.cmdline())
                except psutil.Error:
                    continue
                size = rss(p) if stage else 0
                if size:  # 0: it ended meanwhile
                    peaks[stage] = max(peaks.get(stage, 0), size)

        rc = wait_sampling(proc, 0.2, record)
    return time.perf_counter() - t, rc, {k: v / 2**20 for k, v in peaks.items()}, main_peak[0] / 2**20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--clusters", type=int, default=5000)
    p.add_argument("--subdirs", type=int, default=1000)
    p.add_argument("--workdir", default="/tmp/embclust-million")
    p.add_argument("--data", help="the embedding folder (default <workdir>/data-<n>)")
    p.add_argument("--config", nargs="*", default=[], help="extra snakemake --config items")
    a = p.parse_args(argv)
    data = a.data or os.path.join(a.workdir, f"data-{a.n}")
    out = os.path.join(a.workdir, f"out-{a.n}")
    os.makedirs(a.workdir, exist_ok=True)
    t = time.perf_counter()
    make_data(data, a.n, a.clusters, a.subdirs)
    print(f"data ready in {time.perf_counter() - t:.0f} s: {data}", flush=True)
    subprocess.run(["rm", "-rf", out], check=True)
    config = ["--config", f"embedding_dir={data}", f"output_dir={out}", "plot=umap", *a.config]
    # The data's own clusters (--data may hold a set made with other --clusters).
    truth = true_clusters(data + ".labels.csv")
    clusters = len(set(truth.values()) - {-1})
    record = {"n": a.n, "clusters": clusters, "subdirs": a.subdirs, "at": now(), "load_before": os.getloadavg()}
    wall, rc, _, main_mb = run_sampled([SNAKEMAKE, "-n", *config], os.path.join(a.workdir, "dryrun.log"))
    record["dryrun"] = {"wall_s": round(wall, 1), "rc": rc, "snakemake_rss_mb": round(main_mb)}
    print(f"snakemake -n: {wall:.1f} s, {main_mb:.0f} MB (rc {rc})", flush=True)
    subprocess.run(["rm", "-rf", out], check=True)
    log = os.path.join(a.workdir, "run.log")
    wall, rc, peaks, main_mb = run_sampled([SNAKEMAKE, "--cores", "2", *config], log)
    record.update(wall_s=round(wall, 1), rc=rc, snakemake_rss_mb=round(main_mb), load_after=os.getloadavg())
    jobs = job_times(log)
    record["stages"] = {
        stage: {"jobs": v["jobs"], "job_s": v["job_s"], "peak_rss_mb": round(peaks.get(RULE_SCRIPTS.get(stage, stage), 0))}
        for stage, v in jobs.items()
    }
    record["peak_rss_mb_by_script"] = {k: round(v) for k, v in peaks.items()}
    results = glob.glob(f"{out}/*/mean/*/hdbscan-*")
    if results:
        result = results[0]
        record["soft_json_mb"] = round(os.path.getsize(f"{result}/clusters_soft.json") / 1e6, 1)
        record["map_mb"] = round(sum(os.path.getsize(f) for f in glob.glob(f"{result}/map-*.html")) / 1e6, 1)
        record["n_clusters"] = json.load(open(f"{result}/metrics.json")).get("n_clusters")
        record.update(agreement(truth, f"{result}/clusters_hard.json"))
    json.dump(record, open(os.path.join(a.workdir, "million.json"), "w"), indent=1)
    lines = [
        f"{a.n:,} files, {clusters:,} power-law clusters + 10% noise, {a.subdirs} subfolders; {record['at']}; "
        f"load {record['load_before'][0]:.1f} before, {record['load_after'][0]:.1f} after",
        "",
        f"`snakemake -n`: {record['dryrun']['wall_s']} s, {record['dryrun']['snakemake_rss_mb']} MB",
        f"`snakemake --cores 2` (plot=umap): {wall / 60:.1f} min (exit {rc}); snakemake itself {record['snakemake_rss_mb']} MB",
        "",
        "| stage | jobs | job seconds (summed) | largest job's peak RSS (MB) |",
        "| --- | --- | --- | --- |",
    ]
    for stage, v in record["stages"].items():
        lines.append(f"| {stage} | {v['jobs']} | {v['job_s']:.0f} | {v['peak_rss_mb'] or ''} |")
    lines += ["", f"soft JSON {record.get('soft_json_mb')} MB, map {record.get('map_mb')} MB, {record.get('n_clusters')} clusters found; "
              f"ARI against the generator's clusters {record.get('ari_all')} over all files, {record.get('ari_members')} over "
              f"the files that are not noise; {record.get('noise_found_as_noise')} of the noise files labelled noise"]
    text = "\n".join(lines)
    open(os.path.join(a.workdir, "million.md"), "w").write(text + "\n")
    print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
