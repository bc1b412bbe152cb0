"""profiles/slurm on a real single-node SLURM cluster (tests/slurm/slurm_cluster.py).

The cluster runs slurmctld, slurmd, slurmdbd (with mariadb) and munge from Debian's
slurm-wlm packages, which the fixture installs with apt-get when they are missing;
it skips only where it cannot (not root, no apt-get, or a SLURM installation of the
machine's own). Every daemon it starts is stopped by PID, and its slurm.conf removed,
before the other tests go on.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, Workflow, executed_jobs

sys.path.insert(0, str(REPO / "tests/slurm"))
import slurm_cluster as slurm  # noqa: E402

RESULT = "results/digits/mean/pca-50/hdbscan-mcs5-ms5-euclidean"
# The plugin's defaults wait 40 s before the first status check (sane on a busy
# cluster); here each of the 6 jobs would cost that.
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]
TIMEOUT = 300  # s per snakemake run: a cluster that cannot answer makes the plugin wait forever


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm.cannot_run()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    state = tmp_path_factory.mktemp("slurm")
    c = slurm.Cluster(state)
    try:
        c.up()
        yield c
    finally:
        left = c.down()
        shutil.rmtree(state / "db", ignore_errors=True)  # mariadb's ~100 MB
    assert left == [], f"daemons still running after stop: {left}"
    assert not c.conf.exists()
    # What the rest of the suite pays: with slurm-client installed, every snakemake start
    # runs `scontrol show config` (10 s timeout); without our slurm.conf it fails at once.
    start = time.monotonic()
    subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=30)
    assert time.monotonic() - start < 2, "scontrol is slow after the cluster stopped"


def snakemake(wf, *args, env):
    """snakemake in wf.root under a time limit; the process group is killed on timeout."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    proc = subprocess.Popen(
        cmd, cwd=wf.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"snakemake {' '.join(args)} ran over {TIMEOUT} s:\n{err[-4000:]}")
    proc.stdout, proc.stderr = out, err
    proc.jobs = executed_jobs(out + err)
    return proc


def demo_workflow(root):
    wf = Workflow(root)
    os.symlink(REPO / "demo", wf.root / "demo")
    return wf


@pytest.mark.slow
def test_demo_on_slurm_matches_a_local_run_and_resumes_after_a_failed_job(cluster, tmp_path):
    # Jobs run `python -m snakemake` with this interpreter: its bin directory first on PATH.
    env = cluster.env(dict(os.environ, PYTHONWARNINGS="ignore"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    wf = demo_workflow(tmp_path / "slurm")
    # One pooling shard: every SLURM job costs ~12 s of status polling. PCA, not the
    # demo's default UMAP reduction: the stages, not UMAP, are under test.
    on_slurm = ["--profile", "profiles/slurm", *FAST_POLLING, "--config", "plot=none", "pool_shards=1", "reduce=pca"]

    # Pooling on SLURM, then the pooled matrix's values are corrupted on shared storage
    # (NaN; its timestamps kept, so Snakemake takes it as done): the reduce job fails.
    pooled = wf.root / "results/digits/pooled/mean.npy"
    pooling = snakemake(wf, str(pooled.relative_to(wf.root)), *on_slurm, env=env)
    assert pooling.returncode == 0, pooling.stderr[-4000:]
    stamp = pooled.stat()
    np.save(pooled, np.full_like(np.load(pooled), np.nan))
    os.utime(pooled, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    failed = snakemake(wf, *on_slurm, env=env)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert failed.jobs == {"reduce": 1, "neighbours": 1, "cluster": 1, "export": 1, "hard_json": 1, "metrics": 1, "provenance": 1}
    assert "Error in rule reduce:" in output and "SLURM status is: 'FAILED'" in output
    # The failure names both logs: the stage's own and the SLURM job's.
    stage_log = "results/digits/logs/reduce/mean/pca-50.log"
    error = output[output.index("Error in rule reduce:") :]
    logs = next(line for line in error.splitlines() if line.strip().startswith("log: "))
    assert logs.strip().startswith(f"log: {stage_log}, ") and logs.endswith("(check log file(s) for error details)")
    slurm_log = Path(logs.split(", ")[1].split(" (check")[0])
    assert slurm_log.is_relative_to(wf.root / ".snakemake/slurm_logs/rule_reduce")
    assert "embclust reduce: failed: ValueError: Input X contains NaN" in slurm_log.read_text()
    assert "Traceback" in (wf.root / stage_log).read_text()
    assert not (wf.root / "results/digits/mean/pca-50/reduced.npy").exists()

    # Fixed (the corrupt file removed) and rerun: the shards are not pooled again. The soft
    # memberships split into row ranges (export_shards=4): four export_block jobs through
    # sbatch, each asking for its own memory and time, joined by the export job into the
    # local, unsplit run's bytes (below).
    pooled.unlink()
    rerun = snakemake(wf, *on_slurm, "export_shards=4", env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert rerun.jobs == {"merge_pool": 1, "reduce": 1, "neighbours": 1, "cluster": 1, "export_block": 4, "export": 1,
                          "hard_json": 1, "metrics": 1, "provenance": 1}
    output = rerun.stdout + rerun.stderr
    # Everything but provenance went through sbatch; provenance ran where snakemake runs.
    assert output.count("has been submitted with SLURM jobid") == 11
    assert "localrule provenance:" in output
    # What SLURM was asked for and did: each rule's threads, mem_mb (2048 = 2G) and runtime.
    rules = dict(re.findall(r"SLURM jobid (\d+) \(log: \S+/rule_(\w+)/", pooling.stdout + pooling.stderr + failed.stdout + failed.stderr + output))
    accounting = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--starttime=2020-01-01", "--format=JobIdRaw,State,AllocCPUS,ReqMem,Timelimit"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    done = sorted((rules[job], state, *request) for job, state, *request in (j.split("|") for j in accounting))
    assert done == [
        ("cluster", "COMPLETED", "1", "2058M", "00:30:00"),  # 2048 + 10 x 1 MB of matrix and neighbour graph
        # 512 to join the row ranges (export); 512 + 1024 for the soft memberships' blocks
        # (export_block); each plus 4 x ids + 2 x clusters file (under 1 MB here).
        ("export", "COMPLETED", "1", "512M", "00:10:00"),
        *[("export_block", "COMPLETED", "1", "1.50G", "00:10:00")] * 4,
        ("hard_json", "COMPLETED", "1", "1G", "00:10:00"),  # 1024 + 2 x (under 1 MB of clusters and ids)
        ("merge_pool", "COMPLETED", "1", "1.50G", "00:10:00"),
        ("merge_pool", "COMPLETED", "1", "1.50G", "00:10:00"),
        ("metrics", "COMPLETED", "1", "2G", "00:10:00"),
        ("neighbours", "COMPLETED", "2", "2G", "00:20:00"),
        ("pool", "COMPLETED", "1", "1056M", "00:10:00"),  # 1024 + 32 x (1 MB, the mean file rounded up)
        ("reduce", "COMPLETED", "2", "2G", "00:20:00"),
        ("reduce", "FAILED", "2", "2G", "00:20:00"),
    ]

    local = demo_workflow(tmp_path / "local")
    run = snakemake(local, "--cores", "2", "--config", "plot=none", "pool_shards=1", "reduce=pca", env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    for name in ("clusters_hard.json", "clusters_soft.json", "clusters.npz", "metrics.json", "provenance.json"):
        assert (wf.root / RESULT / name).read_bytes() == (local.root / RESULT / name).read_bytes(), name

    assert not list((wf.root / RESULT).glob("soft-blocks/*"))  # the row ranges are temp
