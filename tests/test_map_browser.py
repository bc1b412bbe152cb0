"""The interactive map in a real browser: headless Debian Chromium driven by Playwright,
with every request that is not a local file refused and recorded."""

import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from test_plots import HDBSCAN, NO_AUDIO, NO_LABEL, plots_run  # noqa: F401  (shared session fixture)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed with apt-get when missing and we are root."""
    if not os.path.exists(CHROMIUM):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                pytest.skip(f"could not install chromium: {' '.join(cmd)} failed: {proc.stderr[-500:]}")
    return CHROMIUM


@pytest.fixture
def page(chromium):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=FLAGS,
            viewport={"width": 1200, "height": 850}, service_workers="block")
        page = context.pages[0] if context.pages else context.new_page()
        page.problems, page.external = [], []

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                page.external.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        context.set_offline(True)
        page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        yield page
        context.close()


POINT_OF = """id => {
  const gd = document.getElementById('map');
  for (const trace of gd.querySelectorAll('.scatterlayer .trace')) {
    const data = trace.__data__[0].trace;
    const points = trace.querySelectorAll('path.point');
    for (const el of points) {
      const cd = data.customdata[el.__data__.i];
      if (cd[0] === id) { const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2, cd[4]]; }
    }
  }
  return null;
}"""

# Zoom far in on one file, as a user would to single out a point among overlapping ones.
ZOOM_TO = """id => {
  const gd = document.getElementById('map');
  for (const trace of gd.data) {
    if (trace.visible === false || !trace.customdata) continue;
    const i = trace.customdata.findIndex(cd => cd[0] === id);
    if (i < 0) continue;
    const [x, y] = [trace.x[i], trace.y[i]];
    const dx = (gd._fullLayout.xaxis.range[1] - gd._fullLayout.xaxis.range[0]) / 1e4;
    const dy = (gd._fullLayout.yaxis.range[1] - gd._fullLayout.yaxis.range[0]) / 1e4;
    return Plotly.relayout(gd, {'xaxis.range': [x - dx, x + dx], 'yaxis.range': [y - dy, y + dy]}).then(() => true);
  }
  return false;
}"""

AUTOSCALE = "() => Plotly.relayout(document.getElementById('map'), {'xaxis.autorange': true, 'yaxis.autorange': true})"

AUDIO_DURATION = """() => new Promise(resolve => {
  const a = document.getElementById('player');
  if (a.readyState >= 1) resolve(a.duration);
  a.addEventListener('loadedmetadata', () => resolve(a.duration));
  a.addEventListener('error', () => resolve(-1));
  a.load();
})"""


def isolated(out, exclude):
    """The id whose layout point lies farthest from any other, so hovering it is unambiguous."""
    from _stage import read_ids

    ids, _ = read_ids(out / "pooled/mean.ids.tsv")
    xy = np.load(out / "mean/pca-50/layout-pca.npy")
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    return max((i for i in ids if i not in exclude), key=lambda i: d[ids.index(i)].min())


def hover_text(page, expect):
    """The hover label's text once it names `expect` (or whatever it shows after 5 s)."""
    try:
        page.wait_for_function(
            "id => (document.querySelector('#map .hoverlayer') || {}).textContent.includes(id)", arg=expect, timeout=5000)
    except Exception:
        pass
    return page.text_content("#map .hoverlayer")


def test_map_in_headless_chromium(plots_run, page):  # noqa: F811
    wf, truth = plots_run["wf"], plots_run["truth"]
    path = wf.root / HDBSCAN / "map-pca.html"
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready=yes]", timeout=20000)

    # One point per input file, all drawn in the initial (cluster) colouring.
    assert page.locator("#map .scatterlayer .trace path.point").count() == len(truth)

    # Hover shows the id, its cluster, membership probability and outlier score, and labels.
    target = isolated(wf.root / "results/emb", exclude={NO_AUDIO, NO_LABEL})
    x, y, link = page.evaluate(POINT_OF, target)
    page.mouse.move(x, y)
    text = hover_text(page, target)  # plotly clicks the hovered point
    assert target in text and "cluster:" in text and "membership probability:" in text
    assert "outlier score:" in text and "speaker: spk" in text and f"blob: blob{truth[target]}" in text

    # Clicking plays that clip, by a relative link that resolves to the wav file.
    page.mouse.click(x, y)
    page.wait_for_function(f"document.getElementById('player').dataset.id === '{target}'", timeout=5000)
    src = page.evaluate("document.getElementById('player').getAttribute('src')")
    assert src == link and src.startswith("../") and src.endswith(f"audio/{target}.wav")
    assert abs(page.evaluate(AUDIO_DURATION) - 0.25) < 0.01

    # A file without a clip says so and leaves the player alone.
    assert page.evaluate(ZOOM_TO, NO_AUDIO)
    x, y, link = page.evaluate(POINT_OF, NO_AUDIO)
    assert link == ""
    page.mouse.move(5, 5)
    page.mouse.move(x, y)
    assert NO_AUDIO in hover_text(page, NO_AUDIO)  # plotly clicks the hovered point
    page.wait_for_timeout(400)  # two clicks within plotly's 300 ms make a double click (reset zoom)
    page.mouse.click(x, y)
    page.wait_for_function(f"document.getElementById('status').textContent.includes('{NO_AUDIO}: no audio')")
    assert page.evaluate("document.getElementById('player').dataset.id") == target
    page.evaluate(AUTOSCALE)

    # Search by id rings the file and shows its hover label.
    page.mouse.move(5, 5)
    page.fill("#search", "c2_010")
    page.press("#search", "Enter")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('found c2_010')")
    assert "c2_010" in hover_text(page, "c2_010")
    page.fill("#search", "nope")
    page.press("#search", "Enter")
    page.wait_for_function("document.getElementById('status').textContent === 'no file with id nope'")

    # Colour by a label column: the menu swaps the legend to that column's values.
    page.click("#map .updatemenu-header-group")
    page.locator("#map .updatemenu-dropdown-button", has_text="colour by speaker").click()
    page.wait_for_function("document.querySelector('#map .legendtitletext').textContent === 'speaker'")
    legend = page.text_content("#map .legend")
    assert all(f"spk{i}" in legend for i in range(4)) and "(no label) (1)" in legend
    assert page.locator("#map .scatterlayer .trace path.point").count() == len(truth)
    assert page.evaluate(ZOOM_TO, NO_LABEL)
    x, y, _ = page.evaluate(POINT_OF, NO_LABEL)
    page.mouse.move(5, 5)
    page.mouse.move(x, y)
    text = hover_text(page, NO_LABEL)
    assert NO_LABEL in text and "speaker: (no label)" in text

    assert page.problems == [], page.problems
    assert page.external == [], page.external
