import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests/slurm"))
sys.path.insert(0, str(REPO / "workflow"))  # snakemake_exit, beside the Snakefile
from slurm_cluster import APT_GET  # noqa: E402,F401  (the apt-get every fixture that installs runs)

# Fewer pooling jobs than the default 8 on tiny test data: each job is a new Python
# process, and the suite runs ~40 workflows. Sharding itself is tested with more.
TEST_POOL_SHARDS = 2

WORKFLOW_FILES = ("Snakefile", "VERSION", "workflow", "scripts", "config", "profiles", "environment.yml", "requirements.txt")


def make_blobs(directory, n_per_cluster=30, centres=3, width=64, frames=(3, 9), seed=0, dtype=np.float32):
    """Frame-level files around `centres` well-separated points; ids sort by cluster."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    means = rng.normal(0, 10, size=(centres, width))
    truth = {}
    for c in range(centres):
        for j in range(n_per_cluster):
            t = int(rng.integers(frames[0], frames[1] + 1))
            a = means[c] + rng.normal(0, 1, size=(t, width))
            np.save(directory / f"c{c}_{j:03d}.npy", a.astype(dtype))
            truth[f"c{c}_{j:03d}"] = c
    return truth


class Workflow:
    """A copy of the workflow in a temporary directory, run with real snakemake."""

    def __init__(self, root, pool_shards=TEST_POOL_SHARDS):
        self.root = Path(root)
        self.root.mkdir(parents=True)
        for name in WORKFLOW_FILES:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, self.root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src, self.root / name)
        config = self.root / "config/config.yaml"
        config.write_text(re.sub(r"(?m)^pool_shards: \S+$", f"pool_shards: {pool_shards}", config.read_text()))

    def run(self, *args, check=True, cores=2):
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *args]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        proc.jobs = executed_jobs(proc.stdout + proc.stderr)
        outside = [a.split("=", 1)[1] for a in args if isinstance(a, str) and a.startswith("output_dir=")]
        check_json_files([self.root] + [self.root / d for d in outside])
        return proc

    def files(self, under="results"):
        """{path: (mtime_ns, bytes)} of every file under `under`, logs excluded."""
        out = {}
        for p in (self.root / under).rglob("*"):
            if p.is_file() and "/logs/" not in str(p):
                out[str(p.relative_to(self.root))] = (p.stat().st_mtime_ns, p.read_bytes())
        return out


# (path, mtime_ns, size) of the JSON files already checked.
_CHECKED = set()


def check_json_files(roots):
    """Every JSON file a workflow run wrote is strict JSON: NaN and Infinity, which
    Python's json writes by default, are rejected by JSON.parse, jq and most readers."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    for root in roots:
        for path in Path(root).rglob("*.json"):
            if ".snakemake" in path.parts or not path.is_file():
                continue
            st = path.stat()
            key = (str(path), st.st_mtime_ns, st.st_size)
            if key in _CHECKED:
                continue
            try:
                json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
            except ValueError as e:
                raise AssertionError(f"{path} is not strict JSON: {e}") from None
            _CHECKED.add(key)


def executed_jobs(output):
    """{rule: count} from the 'Job stats' table snakemake prints before running."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", output, re.S)
    if not m:
        return {}
    jobs = {}
    for line in m.group(1).splitlines():
        rule, count = line.split()
        jobs[rule] = int(count)
    jobs.pop("all", None)
    return jobs


def pytest_collection_modifyitems(items):
    """The slow tests first: with two workers, a 2-minute test started last would run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def workflow(tmp_path):
    return Workflow(tmp_path / "wf")


@pytest.fixture
def blobs(tmp_path):
    """90 frame-level files in 3 clusters; returns (directory, {id: true cluster})."""
    directory = tmp_path / "emb"
    return directory, make_blobs(directory)
