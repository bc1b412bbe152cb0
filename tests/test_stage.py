"""_stage.run, the wrapper of every stage script: one line on the terminal, whatever fails."""

import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

# A stage that logs, then writes its output. /dev/full fails every write with ENOSPC,
# as a full disk does: writes to the log and to the output both fail.
STAGE = textwrap.dedent(
    """
    import json, sys
    from types import SimpleNamespace
    from _stage import InputError, run

    def main(snakemake, log):
        log.info("exporting")
        if sys.argv[2] == "input":
            raise InputError("zz.npy: bad")
        with open(sys.argv[3], "w") as f:
            json.dump({"clusters": 3}, f)

    run(SimpleNamespace(log=[sys.argv[1]], rule="export"), main)
    """
)


def run_stage(log, failure="disk", output="/dev/full"):
    env = {"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", STAGE, log, failure, output], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("log", ["/dev/full", "/nonexistent/export.log"])
def test_a_full_disk_still_gives_the_one_line(log):
    proc = run_stage(log)
    assert proc.returncode == 1
    assert proc.stderr == (
        "embclust export: failed: OSError: [Errno 28] No space left on device "
        "(no traceback: its log could not be written)\n"
    )


def test_an_input_error_on_a_full_disk_is_its_one_line():
    proc = run_stage("/dev/full", failure="input")
    assert (proc.returncode, proc.stderr) == (1, "embclust export: error: zz.npy: bad\n")


def test_a_failure_with_room_for_the_log_keeps_its_traceback_there(tmp_path):
    log = tmp_path / "export.log"
    proc = run_stage(str(log), output=str(tmp_path / "missing/out.json"))
    assert proc.returncode == 1
    assert proc.stderr == f"embclust export: failed: FileNotFoundError: [Errno 2] No such file or directory: '{tmp_path}/missing/out.json' (traceback in {log})\n"
    text = log.read_text()
    assert text.startswith("exporting\nTraceback (most recent call last):") and "FileNotFoundError" in text


# umap-learn's smooth_knn_dist is not cache=True: without cache_compiled_code every job compiled it.
CACHED_UMAP = textwrap.dedent(
    """
    import numpy as np
    from _stage import cache_compiled_code

    cache_compiled_code()
    from umap.umap_ import smooth_knn_dist

    smooth_knn_dist(np.ones((20, 4), dtype=np.float32), 4.0)
    print(sum(smooth_knn_dist.stats.cache_hits.values()))
    """
)


def test_the_next_process_loads_umaps_compiled_code_from_disk(tmp_path):
    """cache_compiled_code: the first process compiles and stores, the second loads."""
    env = {"PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONPATH": str(REPO / "scripts")}
    hits = [
        subprocess.run([sys.executable, "-c", CACHED_UMAP], env=env, capture_output=True, text=True, check=True).stdout.split()
        for _ in range(2)
    ]
    assert hits == [["0"], ["1"]]
    assert any((tmp_path / "numba").rglob("*smooth_knn_dist*.nbi"))
