"""Figures and the interactive map: one real snakemake run (labels, audio, an HDBSCAN and a
spectral result) checked from several sides, plus unit tests of the drawing functions."""

import csv
import json
import re
import subprocess
import sys
import wave
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest
from conftest import REPO, Workflow, make_blobs

matplotlib.use("Agg")
import plot  # noqa: E402
import map as map_script  # noqa: E402

HDBSCAN = "results/emb/mean/pca-50/hdbscan-mcs5-ms5-euclidean"
SPECTRAL = "results/emb/mean/pca-50/spectral-k3-euclidean-s0"
FIGURES = ("plot-pca", "sizes", "tree")
NO_AUDIO = "c0_000"  # the one file without a clip
NO_LABEL = "c2_029"  # the one file the labels CSV leaves out


def write_wav(path, seconds=0.25, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


_RUN = {}  # one run for this module and tests/test_map_browser.py, which imports the fixture


@pytest.fixture(scope="session")
def plots_run(tmp_path_factory):
    """Blobs with a labels CSV and clips, run once with HDBSCAN and spectral, plot=pca."""
    if not _RUN:
        _RUN.update(make_plots_run(tmp_path_factory.mktemp("plots")))
    return _RUN


def make_plots_run(root):
    truth = make_blobs(root / "emb")
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "speaker", "blob"])
        for i, (id_, c) in enumerate(sorted(truth.items())):
            if id_ != NO_LABEL:
                writer.writerow([id_, f"spk{i % 4}", f"blob{c}"])
    (root / "audio").mkdir()
    for id_ in truth:
        if id_ != NO_AUDIO:
            write_wav(root / "audio" / f"{id_}.wav")
    wf = Workflow(root / "wf")
    config = ["--config", f"embedding_dir={root / 'emb'}", f"labels={root / 'labels.csv'}",
              f"audio_dir={root / 'audio'}", "algorithm=[hdbscan,spectral]", "n_clusters=3", "plot=pca"]
    run = wf.run(*config)
    return {"wf": wf, "root": root, "truth": truth, "run": run, "config": config}


def test_one_run_draws_every_figure_and_map(plots_run):
    wf = plots_run["wf"]
    jobs = plots_run["run"].jobs
    # Two results: each gets a layout plot, a size chart and a map; only HDBSCAN a tree;
    # a result's figures are one job, its map another; the PCA variance is drawn once
    # for the shared reduction.
    # The sweep's selected result (best/) gets a map of its own, with each file's stability.
    assert {k: jobs.get(k) for k in ("figures", "figures_spectral", "variance", "map", "map_best", "plot", "sizes",
                                     "tree")} == {
        "figures": 1, "figures_spectral": 1, "variance": 1, "map": 2, "map_best": 1, "plot": None, "sizes": None,
        "tree": None}
    assert (wf.root / "results/emb/best/map-pca.html").stat().st_size > 1_000_000
    for result, names in ((HDBSCAN, FIGURES), (SPECTRAL, ("plot-pca", "sizes"))):
        for name in names:
            png = (wf.root / result / f"{name}.png").read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, (result, name)
            svg = ET.parse(wf.root / result / f"{name}.svg").getroot()
            assert svg.tag.endswith("svg")
        assert (wf.root / result / "map-pca.html").stat().st_size > 1_000_000
    assert not (wf.root / SPECTRAL / "tree.png").exists()
    for ext in ("png", "svg"):
        assert (wf.root / f"results/emb/mean/pca-50/variance.{ext}").exists()


def test_figures_are_byte_for_byte_reproducible(plots_run):
    wf = plots_run["wf"]
    before = wf.files()
    outputs = [p for p in before if re.search(r"(plot-pca|sizes|tree|variance)\.(png|svg)$|map-pca\.html$", p)]
    assert len(outputs) == 15  # best/map-pca.html too
    rerun = wf.run(*plots_run["config"], "--forcerun", "figures", "figures_spectral", "variance", "map", "map_best")
    assert rerun.jobs["map"] == 2 and rerun.jobs["map_best"] == 1
    after = wf.files()
    changed = [p for p in outputs if after[p][1] != before[p][1]]
    assert changed == []
    assert all(after[p][0] != before[p][0] for p in outputs), "the figures were not redrawn"
    svg = (wf.root / HDBSCAN / "sizes.svg").read_text()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg


def map_data(path):
    """(figure, data) embedded in a map page, as its script reads them."""
    text = path.read_text(encoding="utf-8")
    found = [json.loads(re.search(f'<script type="application/json" id="{name}">(.*?)</script>', text, re.S).group(1))
             for name in ("map-figure", "map-data")]
    return found[0], found[1]


def test_map_is_self_contained_with_relative_audio_links(plots_run):
    root = plots_run["root"]
    path = plots_run["wf"].root / HDBSCAN / "map-pca.html"
    text = path.read_text()
    # plotly.js inlined, and nothing fetched from elsewhere.
    assert re.search(r"plotly\.js v\d+\.\d+", text)
    assert not re.search(r"""<(script|link|img|audio|source)[^>]+(src|href)=["']?(https?:)?//""", text)
    # Clips are linked relative to the map, so results and audio can move together.
    _, data = map_data(path)
    has = map_script.decode(data["audio"]["has"])
    links = {i: map_script.audio_link(data["audio"]["prefix"], i) for i, h in zip(data["ids"], has) if h}
    assert len(links) == len(plots_run["truth"]) - 1 and NO_AUDIO not in links
    assert all(link.startswith("../") for link in links.values())
    assert str(root) not in text
    for link in links.values():
        assert (plots_run["wf"].root / HDBSCAN / link).resolve().is_file()
    # Both label columns can colour the map; the unlabelled file says so.
    assert "colour by speaker" in text and "colour by blob" in text and "(no label)" in text


def test_new_clips_or_labels_redraw_only_the_maps_and_label_metrics(plots_run):
    wf, root, config = plots_run["wf"], plots_run["root"], plots_run["config"]
    clip = root / "audio" / f"{NO_AUDIO}.wav"
    write_wav(clip)
    try:
        assert wf.run(*config, "-n").jobs == {"map": 2, "map_best": 1}
    finally:
        clip.unlink()
    assert wf.run(*config, "-n").jobs == {}
    labels = root / "labels.csv"
    original = labels.read_text()
    labels.write_text(original.replace("spk1", "spk9"))
    try:
        # New labels also rescore each result's metrics, and so the sweep's summary.
        assert wf.run(*config, "-n").jobs == {"map": 2, "metrics": 2, "summary": 1, "select_best": 1, "map_best": 1}
    finally:
        labels.write_text(original)


def test_report_holds_the_figures(plots_run):
    wf = plots_run["wf"]
    wf.run(*plots_run["config"], "--report", "report.html")
    text = (wf.root / "report.html").read_text(errors="replace")
    for category in ("Cluster layouts", "Cluster sizes", "Condensed trees", "PCA variance", "Interactive maps"):
        assert category in text
    for name in ("sizes.svg", "tree.png", "variance.png", "plot-pca.svg", "map-pca.html"):
        assert name in text


# ---- the drawing functions on their own -------------------------------------------


def test_palette_needs_no_matplotlib_and_is_matplotlibs():
    """The palette's colours are kept in plot.py, so that the map job does not import
    matplotlib for them: they are the tables' colours as matplotlib gives them."""
    import subprocess
    import sys
    from pathlib import Path

    import matplotlib.colors

    assert plot.CANDIDATES == plot._candidates()
    ours = plot.palette(len(plot.CANDIDATES) + 5)
    # Past the tables' size every colour is used: as matplotlib writes it.
    assert {matplotlib.colors.to_hex(c) for c in plot.CANDIDATES} == set(ours)
    code = "import sys; sys.path.insert(0, 'scripts'); import plot; plot.palette(40); print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "False"


def test_palette_stays_distinguishable_beyond_ten_clusters():
    colours = plot.palette(30)
    assert len(set(colours)) == 30
    rgb = np.array([matplotlib.colors.to_rgb(c) for c in colours])
    assert (rgb.max(axis=1) - rgb.min(axis=1) > 0.1).all(), "a grey (noise) colour slipped in"
    lab = plot._lab(rgb)
    dist = np.linalg.norm(lab[:, None] - lab[None], axis=2) + np.eye(30) * 1e9
    assert dist.min() > 10  # clearly different colours (Delta E 76)
    assert plot.palette(12)[:9] == plot.palette(9)  # more clusters never recolour the first ones


def blob_layout(n_clusters, per=20, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 10, size=(n_clusters, 2))
    xy = np.concatenate([c + rng.normal(0, spread, size=(per, 2)) for c in centres] + [rng.uniform(0, 10, (40, 2))])
    labels = np.concatenate([np.full(per, c) for c in range(n_clusters)] + [np.full(40, -1)])
    return xy, labels, rng.uniform(0.2, 1, len(labels))


def test_scatter_labels_every_cluster_without_overlap():
    # 25 clusters in a small square: their ids would collide where they were placed naively.
    xy, labels, prob = blob_layout(25, seed=3)
    fig = plot.scatter(xy, labels, prob, "title")
    ax = fig.axes[0]
    fig.canvas.draw()
    texts = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in texts) == list(range(25))
    boxes = [t.get_bbox_patch().get_window_extent() for t in texts]
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert overlaps == []
    # Noise is drawn first (below), grey and smaller than cluster points.
    first, second = ax.collections[0], ax.collections[1]
    assert first.get_sizes()[0] < second.get_sizes()[0]
    assert matplotlib.colors.to_hex(first.get_facecolors()[0]) == plot.NOISE_COLOUR
    # Opacity follows membership strength.
    alphas = second.get_facecolors()[:, 3]
    assert alphas.min() < 0.7 < alphas.max()


def label_distances(fig, xy, labels):
    """{cluster: distance, in axes fractions, from its id's box to the nearest point of its
    core (the half of its points nearest its median)}, for each id on the scatter figure."""
    ax = fig.axes[0]
    fig.canvas.draw()
    pts = (ax.transData + ax.transAxes.inverted()).transform(xy)
    out = {}
    for text in ax.texts:
        if text.get_text().isdigit():
            own = pts[labels == int(text.get_text())]
            near_median = np.hypot(*(own - np.median(own, axis=0)).T)
            core = own[near_median <= np.median(near_median)]
            box = text.get_bbox_patch().get_window_extent().transformed(ax.transAxes.inverted())
            gap = np.maximum(np.maximum(box.p0 - core, core - box.p1), 0)
            out[int(text.get_text())] = float(np.hypot(*gap.T).min())
    return out


def test_scatter_keeps_each_label_near_its_cluster():
    """The demo's defect: a small or thin cluster's id went above its highest point, so
    one stray member at the top of the figure took the id (and a line the whole height
    of the plot) with it; labels pushed apart also drifted far from their clusters."""
    rng = np.random.default_rng(5)
    xy, labels, prob = blob_layout(20, seed=3)
    # Cluster 0: a thin streak at the bottom left with one member far up, as in the demo.
    streak = np.column_stack([rng.uniform(0.5, 2.5, 40), rng.normal(0.5, 0.05, 40)])
    labels[labels == 0] = -1
    xy = np.concatenate([xy, streak, [[1.0, 9.8]]])
    labels = np.concatenate([labels, np.zeros(41, int)])
    # Cluster 7: a few points in two groups, far apart.
    seven = np.flatnonzero(labels == 7)
    xy[seven[:3]] += [0, 4]
    prob = np.concatenate([prob, np.ones(41)])
    distances = label_distances(plot.scatter(xy, labels, prob, "title"), xy, labels)
    assert sorted(distances) == list(range(20))
    far = {c: round(d, 3) for c, d in distances.items() if d > 0.05}
    assert far == {}, far


def test_tree_rings_each_selected_cluster_in_its_colour():
    hdbscan = pytest.importorskip("hdbscan")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c * 10, 1, size=(40, 2)) for c in range(4)])
    model = hdbscan.HDBSCAN(min_cluster_size=10).fit(x)
    labels = model.labels_
    fig = plot.tree(model.condensed_tree_.to_numpy(), labels, "title")
    fig.canvas.draw()
    ax = fig.axes[0]
    rings = ax.collections[-1]  # bars, lines, then the rings
    assert len(rings.get_paths()) == labels.max() + 1 == 4
    assert [matplotlib.colors.to_hex(c) for c in rings.get_edgecolors()] == plot.palette(4)
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "2", "3"]
    # Each id points at the top of its ring, inside the cluster's horizontal extent, and
    # sits just above it (nothing to move apart here).
    to_data = ax.transAxes + ax.transData.inverted()
    for text, ring in zip(sorted(ax.texts, key=lambda t: int(t.get_text())), rings.get_paths()):
        x, y = to_data.transform(text.xy)
        box = ring.get_extents()
        assert box.x0 < x < box.x1 and abs(y - box.y0) < 1e-6 * (abs(box.y0) + abs(box.y1))
        assert text.arrow_patch is None and abs(text.xyann[1] - text.xy[1]) < 0.06


def test_tree_ids_of_many_clusters_do_not_overlap():
    """Hundreds of branches side by side: the ids of the largest are moved apart, each
    still near its ring (a line joins those that had to move)."""
    hdbscan = pytest.importorskip("hdbscan")
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(rng.uniform(0, 300, 2), 1, size=(8 + c % 7, 2)) for c in range(150)])
    model = hdbscan.HDBSCAN(min_cluster_size=5).fit(x)
    fig = plot.tree(model.condensed_tree_.to_numpy(), model.labels_, "title")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert len(ax.texts) == plot.MAX_LABELS < model.labels_.max() + 1
    boxes = [matplotlib.text.Text.get_window_extent(t) for t in ax.texts]  # the id, not its line
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert not overlapping
    assert all(abs(t.xyann[0] - t.xy[0]) < 0.25 for t in ax.texts)


def test_icicle_data_is_hdbscans_own_without_importing_it(tmp_path):
    """The tree's bars, lines, bounds and selected clusters equal hdbscan's plot data;
    drawing it imports neither hdbscan nor scikit-learn (seconds of the figures job)."""
    hdbscan = pytest.importorskip("hdbscan")
    from hdbscan.plots import CondensedTree

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(c * 6, 1 + c % 3, size=(30 + 7 * c, 2)) for c in range(12)] + [rng.uniform(-5, 80, (60, 2))])
    model = hdbscan.HDBSCAN(min_cluster_size=8).fit(x)
    ct, labels = model.condensed_tree_.to_numpy(), model.labels_
    assert labels.max() >= 5
    for rectangles in (2, 5, 20):
        ours, theirs = plot.icicle_data(ct, rectangles), CondensedTree(ct, labels).get_plot_data(max_rectangle_per_icicle=rectangles)
        assert ours.keys() == theirs.keys()
        for key in ours:
            if key == "cluster_bounds":
                assert ours[key].keys() == theirs[key].keys()
                assert all(np.allclose(ours[key][c], theirs[key][c]) for c in ours[key])
            else:
                assert np.allclose(np.asarray(ours[key], float), np.asarray(theirs[key], float)), key
    assert plot.selected_clusters(ct, labels) == sorted(CondensedTree(ct, labels)._select_clusters())
    np.save(tmp_path / "ct.npy", ct)
    np.save(tmp_path / "labels.npy", labels)
    script = (f"import sys; sys.path.insert(0, {str(REPO / 'scripts')!r}); import numpy as np, plot; "
              f"plot.tree(np.load({str(tmp_path / 'ct.npy')!r}), np.load({str(tmp_path / 'labels.npy')!r}), 't'); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hdbscan', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tree_of_many_clusters_is_one_image_in_svg(tmp_path, monkeypatch):
    """Thousands of branches: bars, lines and rings are one embedded image in the
    SVG, and only the MAX_LABELS largest clusters are named."""
    hdbscan = pytest.importorskip("hdbscan")
    monkeypatch.setattr(plot, "RASTERIZE_TREE_NODES", 5)
    monkeypatch.setattr(plot, "MAX_LABELS", 3)
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(c * 10, 1, size=(20 + 5 * c, 2)) for c in range(8)])
    model = hdbscan.HDBSCAN(min_cluster_size=10).fit(x)
    labels = model.labels_
    fig = plot.tree(model.condensed_tree_.to_numpy(), labels, "title")
    assert sorted(int(t.get_text()) for t in fig.axes[0].texts) == sorted(plot.largest_clusters(labels, 3).tolist())
    plot.save(fig, tmp_path / "t.png", tmp_path / "t.svg")
    svg = (tmp_path / "t.svg").read_text()
    assert svg.count("<image") == 1 and "<ellipse" not in svg


def test_scatter_of_many_points_is_one_image_in_svg(tmp_path, monkeypatch):
    """Past RASTERIZE_POINTS the SVG holds the points as one embedded image (text stays
    vector); below it every point is its own element."""
    rng = np.random.default_rng(3)
    layout = rng.normal(size=(300, 2))
    labels = np.repeat([-1, 0, 1], 100)
    probabilities = np.ones(300)
    for limit, images in ((1000, 0), (299, 1)):
        monkeypatch.setattr(plot, "RASTERIZE_POINTS", limit)
        plot.save(plot.scatter(layout, labels, probabilities, "t"), tmp_path / "s.png", tmp_path / "s.svg")
        svg = (tmp_path / "s.svg").read_text()
        assert svg.count("<image") == images
        assert (svg.count("<use") >= 300) == (images == 0)


def test_variance_and_sizes_figures_show_their_numbers():
    fig = plot.variance([0.5, 0.3, 0.1], "t")
    ax, right = fig.axes
    assert [round(p.get_height(), 6) for p in ax.patches] == [50.0, 30.0, 10.0]
    assert np.allclose(right.lines[0].get_ydata(), [50, 80, 90])
    assert "3 components keep 90.0% of the variance" in ax.get_title()
    fig = plot.sizes(np.array([-1, -1, 0, 1, 1, 1]), "t")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [2, 1, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["noise", "0", "1"]


def test_cluster_names_label_the_layout_plot_and_the_size_chart_and_the_footnote_says_so():
    rng = np.random.default_rng(0)
    labels = np.repeat([-1, 0, 1, 2], 20)
    xy = rng.normal(size=(80, 2)) + 6 * labels[:, None]
    names = {0: "dog barks", 2: "a name far longer than a label should be"}
    ax = plot.scatter(xy, labels, np.ones(80), "t", names).axes[0]
    on_plot = sorted(t.get_text() for t in ax.texts if hasattr(t, "xyann"))
    assert on_plot == ["0: dog barks", "1", "2: a name far longer than …"]
    assert "2 clusters named (cluster_names)" in ax.texts[0].get_text()
    ax = plot.sizes(labels, "t", names).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["noise", "0: dog barks", "1", "2: a name far longer than …"]
    assert ax.get_xlabel() == "cluster (2 named by cluster_names)"
    assert plot.sizes(labels, "t").axes[0].get_xlabel() == "cluster"


def test_sizes_of_many_clusters_by_rank():
    """Past MAX_BARS clusters the sizes figure is one line of sizes by rank, largest first."""
    labels = np.concatenate([np.full(3, -1)] + [np.full(1000 // (c + 1), c) for c in range(plot.MAX_BARS + 20)])
    ax = plot.sizes(labels, "t").axes[0]
    assert len(ax.patches) == 0 and len(ax.lines) == 1
    y = ax.lines[0].get_ydata()
    assert len(y) == plot.MAX_BARS + 20 and y[0] == 1000 and (np.diff(y) <= 0).all()
    assert "noise: 3 files" in ax.texts[0].get_text()


def test_title_states_the_settings():
    settings = {
        "dataset": "digits",
        "pooling": {"method": "mean", "frames": None},
        "reducer": {"method": "pca", "dim": 50},
        "clusterer": {"algorithm": "hdbscan", "min_cluster_size": 5, "min_samples": 3, "metric": "cosine"},
        "layout": {"method": "umap", "metric": "cosine", "seed": 0},
    }
    title = plot.describe(settings)
    for part in ("digits", "mean pooling", "PCA to 50 dims", "min_cluster_size=5", "min_samples=3", "cosine",
                 "UMAP layout"):
        assert part in title


def test_titles_state_trimmed_pooling():
    import paths

    title = plot.describe({"dataset": "d", "pooling": paths.parse_pooling("mean-trim50")})
    assert title == "d: mean pooling of the audio's frames (50/s)"
    assert plot.describe({"dataset": "d", "pooling": paths.parse_pooling("mean")}) == "d: mean pooling"


def small_map(n=1000, clusters=3, seed=0, **kw):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, clusters, n)
    xy = rng.normal(0, 5, size=(n, 2)).astype(np.float32)
    prob, outl = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    ids = [f"f{i:05d}" for i in range(n)]
    table = {i: {"speaker": f"spk{k % 7}"} for k, i in enumerate(ids) if k % 10}
    audio = ("../audio/", {i for k, i in enumerate(ids) if k % 2})
    fig, data = map_script.build(xy, labels, prob, outl, ids, ["speaker"], table, audio, **kw)
    return (xy, labels, prob, outl, ids, table, audio), fig, data


def test_map_data_is_columns_of_typed_arrays_that_decode_to_the_inputs():
    (xy, labels, prob, outl, ids, table, audio), fig, data = small_map()
    dec = map_script.decode
    assert data["ids"] == ids
    assert np.array_equal(dec(data["x"]), xy[:, 0]) and np.array_equal(dec(data["y"]), xy[:, 1])
    assert np.array_equal(dec(data["cluster"]).astype(int) - 1, labels) and data["cluster"]["dtype"] == "u1"
    assert np.array_equal(dec(data["probability"]), prob.astype(np.float32))
    assert np.array_equal(dec(data["outlier"]), outl.astype(np.float32))
    (col,) = data["columns"]
    assert col["codes"]["dtype"] == "u1"
    assert [col["values"][c] for c in dec(col["codes"])] == [table.get(i, {}).get("speaker", "(no label)") for i in ids]
    assert [i for i, h in zip(ids, dec(data["audio"]["has"])) if h] == sorted(audio[1])
    assert data["drawn"] is None
    # No per-point data in the figure: the page's script fills the traces from the columns.
    points = [t for t in fig.data if t.name not in ("search", "chosen cluster")]
    assert points and all(t.x is None and t.y is None and t.customdata is None for t in points)
    # Each cluster colouring trace takes the points its code maps to.
    cluster = data["colourings"][0]
    names = [fig.data[cluster["first"] + t].name for t in cluster["trace_of"]]
    assert names[0].startswith("noise (") and names[1:] == [f"cluster {c} ({(labels == c).sum()})" for c in range(3)]


def test_assigned_clips_are_a_layer_after_the_clustered_files_in_every_column():
    new = {"name": "new", "ids": ["n0", "n1", "f00002"], "xy": np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32),
           "labels": np.array([0, -1, 2]), "probabilities": np.array([0.9, 0.0, 0.5]),
           "outlier_scores": np.array([0.1, 1.0, 0.2])}
    (xy, labels, prob, outl, ids, table, audio), fig, data = small_map(
        200, new=new, draw_at_most=100)
    dec = map_script.decode
    assert data["ids"] == ids + new["ids"] and data["n_clustered"] == 200
    assert np.array_equal(dec(data["x"])[200:], new["xy"][:, 0]) and np.array_equal(dec(data["y"])[200:], new["xy"][:, 1])
    assert dec(data["cluster"])[200:].tolist() == [1, 0, 3]
    assert np.allclose(dec(data["probability"])[200:], new["probabilities"])
    assert np.allclose(dec(data["outlier"])[200:], new["outlier_scores"])
    # Always drawn, even when the clustered files are sampled.
    assert dec(data["drawn"])[200:].tolist() == [1, 1, 1]
    (col,) = data["columns"]
    assert [col["values"][c] for c in dec(col["codes"])[200:]] == ["(no label)", "(no label)", "spk2"]
    # The layer: one outlined trace, shown in every colouring; the colourings count only clustered files.
    layer = fig.data[data["layer"]["trace"]]
    assert layer.name == "new clips: new (3)" and layer.marker.line.width == 2 and layer.x is None
    for button in fig.layout.updatemenus[0].buttons:
        assert button.args[0]["visible"][data["layer"]["trace"]]
    cluster = data["colourings"][0]
    assert fig.data[cluster["first"] + cluster["trace_of"][1]].name == f"cluster 0 ({(labels == 0).sum()})"
    text = map_script.page(fig, data, "t", ["speaker"])
    assert "200 files and 3 new clips assigned afterwards (new, outlined)" in text


def test_map_page_grows_by_its_columns_not_by_per_point_records():
    sizes = {}
    for n in (2000, 4000):
        _, fig, data = small_map(n)
        sizes[n] = len(map_script.page(fig, data, "t", ["speaker"]).encode())
    # 4 float32 columns, 3 one-byte codes, base64 (4/3): 25 bytes; an id "f00000" in a JSON array: 9.
    per_point = (sizes[4000] - sizes[2000]) / 2000
    assert per_point < 36, per_point


def test_integer_codes_take_the_smallest_type():
    for top, dtype in ((255, "u1"), (256, "u2"), (65535, "u2"), (65536, "i4")):
        enc = map_script.encode_codes(np.array([0, top]))
        assert enc["dtype"] == dtype and map_script.decode(enc).tolist() == [0, top]


def test_sample_keeps_every_cluster_and_is_deterministic():
    labels = np.r_[np.zeros(10_000, int), np.ones(2, int), np.full(5, 2), np.full(40, -1)]
    labels = labels[np.random.default_rng(1).permutation(len(labels))]
    drawn = map_script.sample(labels, 1000)
    assert np.array_equal(drawn, map_script.sample(labels, 1000))
    assert 1000 <= drawn.sum() <= 1000 + 3 * 4
    for c, keep in ((1, 2), (2, 3), (-1, 3)):
        assert drawn[labels == c].sum() >= keep
    assert map_script.sample(labels, len(labels)).all()
    # Above the limit the map carries every file but draws the sample over a density.
    (xy, *_), fig, data = small_map(3000, draw_at_most=500)
    assert len(data["ids"]) == 3000 and 500 <= map_script.decode(data["drawn"]).sum() < 600
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 1 and np.nansum(np.power(10.0, np.array(heat[0].z, dtype=float) - 0.3)) == pytest.approx(3000, rel=1e-2)


def test_many_clusters_keep_the_largest_in_the_legend_and_share_one_trace():
    labels = np.repeat(np.arange(-1, 100), np.r_[5, np.arange(100, 0, -1)])
    traces, trace_of = map_script.cluster_colouring(labels)
    assert len(traces) == 1 + 39 + 1
    assert [t["name"] for t in traces[1:40]] == [f"cluster {c} ({100 - c})" for c in range(39)]
    assert traces[-1]["name"] == f"61 other clusters ({sum(range(1, 62))})" and traces[-1]["colour"] == "cluster"
    assert trace_of[0] == 0 and list(trace_of[1:40]) == list(range(1, 40)) and set(trace_of[40:]) == {40}


def test_stability_is_a_column_a_colouring_and_a_list_of_the_least_stable():
    """The selected result's map: stability as one float32 column (clustered files only), a
    colouring of one trace on a colour scale with a colour bar, and the least stable files."""
    n = 300
    stability = np.random.default_rng(3).uniform(0.1, 1, n)
    stability[[7, 250, 40]] = 0.05  # ties: listed in file order
    new = {"name": "new", "ids": ["n0"], "xy": np.array([[1.0, 2.0]], dtype=np.float32), "labels": np.array([1]),
           "probabilities": np.array([0.5]), "outlier_scores": np.array([0.5])}
    (xy, labels, prob, outl, ids, table, audio), fig, data = small_map(n, stability=stability, new=new)
    dec = map_script.decode
    assert np.array_equal(dec(data["stability"]), stability.astype(np.float32)) and data["n_clustered"] == n
    unstable = dec(data["unstable"])
    assert len(unstable) == map_script.LEAST_STABLE == 50
    assert unstable[:3].tolist() == [7, 40, 250]
    assert unstable.tolist() == sorted(range(n), key=lambda i: (stability[i], i))[:50]
    # The colouring: after the clusters, before the label columns; one trace, no legend
    # entry, its colour bar on [0, 1]; the menu shows it alone (with the layer, the chosen
    # cluster's outline and the ring).
    cluster, stab, speaker = data["colourings"]
    assert stab["source"] == "stability" and speaker["source"] == 0
    trace = fig.data[stab["first"]]
    assert trace.showlegend is False and trace.marker.showscale and (trace.marker.cmin, trace.marker.cmax) == (0, 1)
    assert trace.marker.colorbar.title.text == "stability" and trace.marker.colorscale[0][1] == "#c0392b"
    assert trace.x is None  # filled by the page's script
    buttons = {b.label: b.args[0]["visible"] for b in fig.layout.updatemenus[0].buttons}
    assert list(buttons) == ["colour by cluster", "colour by stability", "colour by speaker"]
    shown = [t for t, v in enumerate(buttons["colour by stability"]) if v]
    assert shown == [stab["first"], data["layer"]["trace"], data["highlight"], len(fig.data) - 1]
    # The label colouring after it still maps its codes to its own traces (new clips recoded).
    assert all(fig.data[speaker["first"] + t].name.startswith(("spk", "(no label)")) for t in speaker["trace_of"])
    text = map_script.page(fig, data, "t", ["speaker"])
    assert 'id="next-unstable"' in text and '<ol id="unstable">' in text
    assert f"{int((stability < 0.5).sum())} of {n} files are below 0.5" in text
    assert f"the 50 least stable files (stability 0.050 to {np.sort(stability)[49]:.3f})" in text
    # Every other map is as before: no stability column, list or colouring.
    _, fig, plain_data = small_map(n)
    assert plain_data["stability"] is None and plain_data["unstable"] is None
    assert [g["source"] for g in plain_data["colourings"]] == [-1, 0]
    assert 'id="next-unstable"' not in map_script.page(fig, plain_data, "t", ["speaker"])


def test_stability_is_read_line_by_line_in_the_result_order(tmp_path):
    ids = ["a", "b", "c"]
    path = tmp_path / "clusters_hard.json"
    # As scripts/select_best.py writes best/clusters_hard.json: one entry per line.
    entries = [{"id": i, "path": f"{i}.npy", "cluster": 0, "probability": 1.0, "outlier_score": 0.0, "stability": s}
               for i, s in zip(ids, (1.0, 0.25, 0.5))]
    path.write_text("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")
    assert map_script.read_stability(path, ids).tolist() == [1.0, 0.25, 0.5]
    with pytest.raises(ValueError, match="order"):
        map_script.read_stability(path, ["a", "c", "b"])
    with pytest.raises(ValueError, match="lists 3 files, the result 4"):
        map_script.read_stability(path, ids + ["d"])


def test_stability_adds_a_float_column_not_per_point_records():
    sizes = {}
    for n in (2000, 4000):
        _, fig, data = small_map(n, stability=np.linspace(0, 1, n))
        sizes[n] = len(map_script.page(fig, data, "t", ["speaker"]).encode())
    per_point = (sizes[4000] - sizes[2000]) / 2000
    assert per_point < 36 + 6, per_point  # one more float32 column, base64: 5.3 bytes


def test_cluster_table_and_the_doubtful_clips():
    labels = np.array([0, 0, 0, 1, 1, -1])
    prob = np.array([1.0, 0.5, 0.2, 0.9, 0.7, 0.0], dtype=np.float32)
    outl = np.array([0.0, 0.3, 0.6, 0.1, 0.2, 0.95])
    xy = np.array([[0, 0], [1, 0], [2, 0], [10, 10], [12, 10], [50, 50]], dtype=np.float32)
    table = map_script.cluster_table(xy, labels, prob, stability=np.array([1, 0.5, 0.5, 1, 1, 0.2]))
    dec = map_script.decode
    assert table["n"] == 2 and dec(table["size"]).tolist() == [3, 2]
    assert dec(table["median_probability"]).tolist() == pytest.approx([0.5, 0.8])
    assert dec(table["x"]).tolist() == [1, 11] and dec(table["stability"]).tolist() == [0.5, 1]
    assert dec(table["x0"])[0] < 0.1 and dec(table["x1"])[0] > 1.9  # the zoom box: 2nd to 98th percentiles
    # Lowest probabilities among the clustered files (noise is not a member), then the highest outlier scores.
    assert map_script.doubtful(labels, prob, outl, k=2).tolist() == [2, 1, 5, 4]
