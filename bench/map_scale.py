"""The interactive map at scale: page size, and the time to load and answer a hover in
headless Chromium with software WebGL (SwiftShader), for synthetic results of N files.

    python bench/map_scale.py --n 1797 200000 1000000

For each N: a 2-D layout of `--clusters` Gaussian blobs with power-law sizes plus 10 %
uniform noise, HDBSCAN-like probabilities and outlier scores, ids `clip0000000`, two
label columns (50 speakers, N/20 words), audio for every file. The page is built by
scripts/map.py's own functions (scripts/map.py: build, page) and written under
--workdir. One planted file lies far from all others, so hovering its pixel has one
right answer. Timed in a fresh Chromium per N, with the flags of tests/test_map_browser.py:
  build   Python: build + page + write, in the JSON only (the job below includes it)
  load    page.goto until the page's script has drawn the plot (body[data-ready=yes])
  hover   mouse moved onto the planted file until the hover box shows its id
  panel   the cluster panel (every cluster, median membership probability, ...): its first
          drawing at load (the page's own timer, JS only), a sort by median probability
          (click to re-drawn rows), and typing a filter ("12") until the count of matching
          clusters shows; target: each within 1 s at 2,000 clusters
  job     the map job itself (scripts/map.py's main on the inputs the workflow gives it:
          clusters.npz, layout .npy, ids.tsv, labels CSV) in a fresh process under
          /usr/bin/time -v: wall time and peak RSS, for the map rule's resources
Results are appended to <workdir>/map_scale.json and printed as a table row.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import map as embmap  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
PLANTED = "planted"

PIXEL_OF = """([X, Y]) => {
  const gd = document.getElementById('map'), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const r = gd.getBoundingClientRect();
  return [r.x + xa._offset + xa.l2p(X), r.y + ya._offset + ya.l2p(Y)];
}"""


def synthetic(n, clusters, seed=0):
    """(layout, labels, probabilities, outlier scores, ids, columns, table, planted index)."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, clusters + 1) ** 1.1
    n_noise = n // 10
    labels = np.concatenate([rng.choice(clusters, n - n_noise, p=sizes / sizes.sum()), np.full(n_noise, -1)])
    rng.shuffle(labels)
    centres = rng.uniform(-50, 50, size=(clusters, 2))
    xy = np.where(labels[:, None] >= 0, centres[labels] + rng.normal(0, 0.8, size=(n, 2)),
                  rng.uniform(-55, 55, size=(n, 2)))
    planted = n // 2
    # Far outside every blob, in a cluster of its own, so the sample drawn above
    # DRAW_AT_MOST files keeps it.
    labels[planted], xy[planted] = clusters, (80, 80)
    probabilities = np.where(labels >= 0, rng.uniform(0.2, 1, n), 0)
    outliers = rng.uniform(0, 1, n)
    ids = [f"clip{i:07d}" for i in range(n)]
    ids[planted] = PLANTED
    table = {i: {"speaker": f"spk{k % 50}", "word": f"w{k % max(1, n // 20)}"} for k, i in enumerate(ids)}
    return xy.astype(np.float32), labels, probabilities, outliers, ids, ["speaker", "word"], table, planted


def measure(n, clusters, workdir, draw_at_most):
    layout, labels, prob, outl, ids, columns, table, planted = synthetic(n, clusters)
    path = os.path.join(workdir, f"map-{n}.html")
    t = time.perf_counter()
    fig, data = embmap.build(layout, labels, prob, outl, ids, columns, table,
                             ("../audio/", set(ids)), draw_at_most=draw_at_most)
    text = embmap.page(fig, data, f"synthetic {n}", columns)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    build_s = time.perf_counter() - t
    parts = {k: len(json.dumps(v)) for k, v in data.items()}
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1200, "height": 850}, service_workers="block")
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        renderer = page.evaluate("""() => { const gl = document.createElement('canvas').getContext('webgl');
            const d = gl && gl.getExtension('WEBGL_debug_renderer_info');
            return gl ? (d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : 'webgl') : 'none'; }""")
        t = time.perf_counter()
        page.goto("file://" + path, timeout=120_000)
        page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
        load_s = time.perf_counter() - t
        x, y = page.evaluate(PIXEL_OF, [float(layout[planted, 0]), float(layout[planted, 1])])
        t = time.perf_counter()
        page.mouse.move(x, y)
        page.wait_for_function("id => { const t = document.getElementById('tip'); return !t.hidden && "
                               "t.querySelector('b').textContent === id; }", arg=PLANTED, timeout=120_000)
        hover_s = time.perf_counter() - t
        panel_first_ms = float(page.evaluate("document.body.dataset.panelMs"))
        t = time.perf_counter()
        page.click("#panel-head [data-key=probability]")
        page.wait_for_function("document.querySelector('#panel-head [data-key=probability]').dataset.sorted === 'down'"
                               " && document.querySelectorAll('#spacer .row').length > 0")
        panel_sort_s = time.perf_counter() - t
        n_clusters = int(labels.max()) + 1
        matching = sum("12" in f"{c} " for c in range(n_clusters))
        t = time.perf_counter()
        page.fill("#filter", "12")
        page.wait_for_function("s => document.getElementById('panel-count').textContent === s",
                               arg=f"{matching} of {n_clusters} clusters", timeout=60_000)
        panel_filter_s = time.perf_counter() - t
        memory = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : null")
        context.close()
    drawn = int(embmap.decode(data["drawn"]).sum()) if data["drawn"] else n
    job_dir = os.path.join(workdir, f"job-{n}")
    job_inputs(job_dir, layout, labels, prob, outl, ids, columns, table)
    del fig, data, text, table
    job_s, job_mb = measure_job(job_dir)
    return {"job_s": job_s, "job_peak_mb": job_mb, "load_average": os.getloadavg()[0], "n": n, "clusters": clusters, "bytes": os.path.getsize(path), "drawn": drawn, "build_s": build_s,
            "load_s": load_s, "hover_s": hover_s, "load_hover_s": load_s + hover_s, "js_heap_mb": (memory or 0) / 2**20,
            "data_bytes": parts, "renderer": renderer, "errors": errors, "panel_clusters": n_clusters,
            "panel_first_ms": panel_first_ms, "panel_sort_s": panel_sort_s, "panel_filter_s": panel_filter_s}


def job_inputs(directory, layout, labels, prob, outl, ids, columns, table):
    """The files the map job reads, as the workflow writes them."""
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, "clusters.npz"), labels=labels, probabilities=prob, outlier_scores=outl)
    np.save(os.path.join(directory, "layout.npy"), layout)
    with open(os.path.join(directory, "ids.tsv"), "w") as f:
        f.write("id\tpath\n")
        f.writelines(f"{i}\t/data/emb/{i}.npy\n" for i in ids)
    with open(os.path.join(directory, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *columns])
        w.writerows([i, *(table[i][c] for c in columns)] for i in ids)


def run_job(directory):
    """scripts/map.py's main on the inputs in directory (run by measure_job in a child)."""
    from _stage import Log

    class Files(dict):  # snakemake's input: both input.name and input.get("name")
        __getattr__ = dict.__getitem__

    path = lambda name: os.path.join(directory, name)  # noqa: E731
    ids = [line.split("\t")[0] for line in open(path("ids.tsv")).read().splitlines()[1:]]
    snakemake = types.SimpleNamespace(
        input=Files(clusters=path("clusters.npz"), layout=path("layout.npy"), ids=path("ids.tsv"),
                    labels=path("labels.csv")),
        output=Files(map=path("map.html")),
        params=types.SimpleNamespace(settings={"dataset": "synthetic"}, audio={"dir": path("audio"), "clips": ids},
                                     result="mean/none/hdbscan-mcs5-ms5-euclidean"))
    embmap.main(snakemake, Log(sys.stdout))


def measure_job(directory):
    """(wall s, peak RSS MB) of the map job on the inputs in directory."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, __file__, "--run-job", directory],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1797, 200000])
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--draw-at-most", type=int, default=embmap.DRAW_AT_MOST)
    ap.add_argument("--workdir", default="/tmp/embclust-bench/map")
    ap.add_argument("--run-job", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.run_job:
        return run_job(a.run_job)
    os.makedirs(a.workdir, exist_ok=True)
    print("| files | clusters | drawn | page MB | load s | hover s | load + hover s | JS heap MB | map job s | map job peak MB "
          "| panel first ms | panel sort s | panel filter s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in a.n:
        r = measure(n, min(a.clusters, max(1, n // 20)), a.workdir, a.draw_at_most)
        with open(os.path.join(a.workdir, "map_scale.json"), "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"| {n:,} | {r['clusters']:,} | {r['drawn']:,} | {r['bytes'] / 1e6:.1f} | {r['load_s']:.1f} | "
              f"{r['hover_s']:.2f} | {r['load_hover_s']:.1f} | {r['js_heap_mb']:.0f} | {r['job_s']:.1f} | "
              f"{r['job_peak_mb']:.0f} | {r['panel_first_ms']:.0f} | {r['panel_sort_s']:.2f} | {r['panel_filter_s']:.2f} |",
              flush=True)
        if r["errors"]:
            print("page errors:", r["errors"], file=sys.stderr)
    print(f"renderer: {r['renderer']}; 1-minute load average at the end: {r['load_average']:.1f}")


if __name__ == "__main__":
    main()
