"""embclust as a Snakemake module of another project, as `snakedeploy deploy-workflow`
sets it up: that project's workflow/Snakefile includes this checkout's Snakefile as a
module, with config/ copied beside it, and runs from its own folder."""

import json
import os
import re
import subprocess
import sys

from conftest import REPO, TEST_POOL_SHARDS, executed_jobs

# What snakedeploy writes to <project>/workflow/Snakefile, with the local checkout's Snakefile.
DEPLOYED_SNAKEFILE = f"""\
from snakemake.utils import min_version


min_version("6.10.0")


configfile: "config/config.yaml"


# declare embclust as a module
module embclust:
    snakefile:
        "{REPO / "Snakefile"}"
    config:
        config


# use all rules from embclust
use rule * from embclust
"""


def deploy(project):
    """A project as snakedeploy leaves it: workflow/Snakefile and a copy of config/."""
    (project / "workflow").mkdir(parents=True)
    (project / "workflow/Snakefile").write_text(DEPLOYED_SNAKEFILE)
    (project / "config").mkdir()
    for name in os.listdir(REPO / "config"):
        text = (REPO / "config" / name).read_text(encoding="utf-8")
        if name == "config.yaml":
            # What a user edits in the copy: few pooling jobs, PCA and a PCA layout (no UMAP start-up).
            text = re.sub(r"(?m)^pool_shards: \S+$", f"pool_shards: {TEST_POOL_SHARDS}", text)
            text = re.sub(r"(?m)^plot: \S+$", "plot: pca", text)
            text = re.sub(r"(?m)^reduce: \S+$", "reduce: pca", text)
        (project / "config" / name).write_text(text, encoding="utf-8")


def snakemake(project, *args):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc.jobs = executed_jobs(proc.stdout + proc.stderr)
    return proc


def test_deployed_module_runs_the_demo_from_another_folder(tmp_path):
    project = tmp_path / "my-project"
    deploy(project)
    # The workflow's own default profile, named by path as a module's user would.
    run = snakemake(project, "--workflow-profile", str(REPO / "profiles/default"))
    assert "Using workflow specific profile" in run.stdout + run.stderr
    # The default embedding_dir, demo/digits, is the checkout's: found there, named relative.
    demo = os.path.relpath(REPO / "demo/digits", project)
    assert f"embclust: embedding_dir 'demo/digits' is not in the working directory; using the workflow's own, {demo}" in run.stderr
    result = project / "results/digits/mean/pca-50/hdbscan-mcs5-ms5-euclidean"
    hard = json.loads((result / "clusters_hard.json").read_text())
    assert len(hard) == 1797 and hard[0]["path"] == f"{demo}/digit0000.npy"
    assert max(e["cluster"] for e in hard) >= 9
    # Scripts, schema (its defaults), VERSION, figures and the map (its palette input) all resolved.
    provenance = json.loads((result / "provenance.json").read_text())
    assert provenance["workflow_version"] == (REPO / "VERSION").read_text().strip()
    for name in ("plot-pca.png", "sizes.svg", "tree.png", "map-pca.html", "methods.md", "metrics.json"):
        assert (result / name).stat().st_size > 0, name
    assert (project / "results/digits/mean/pca-50/variance.png").exists()

    # Caching works as in the checkout: nothing to do, then only the stages below a change.
    assert snakemake(project).jobs == {}
    # The demo's labels are found the same way.
    changed = snakemake(project, "--config", "min_cluster_size=7", "labels=demo/digits/labels.csv")
    assert changed.jobs["cluster"] == 1 and "layout" not in changed.jobs and "pool" not in changed.jobs
    metrics = json.loads((result.parent / "hdbscan-mcs7-ms7-euclidean/metrics.json").read_text())
    assert metrics["labels"]["digit"]["all"]["ari"] > 0.2

    # The report finds every caption (relative to the module's rule files).
    snakemake(project, "--report", "report.html")
    report = (project / "report.html").read_text(errors="replace")
    assert "plot-pca.png" in report and "methods.md" in report
