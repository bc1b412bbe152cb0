"""Map stage: an interactive, self-contained HTML map of one result (plotly, inlined).

Hover shows a file's id, cluster, membership probability, outlier score and labels;
a box finds a file by id; a menu colours by cluster or by any label column; clicking a
point plays `<audio_dir>/<id>.wav` in the page, through a link relative to the map, so
the results and audio folders can be moved or zipped together. No network is needed:
plotly.js is inlined, and nothing else is loaded.
"""

import html
import os
import urllib.parse

import numpy as np
import plotly.graph_objects as go
from _stage import read_ids, read_labels
from plot import NOISE_COLOUR, describe, palette

# A label column with more values than this colours its most frequent ones and
# groups the rest, so the legend and the page stay usable.
MAX_CATEGORIES = 40
NO_LABEL = "(no label)"
OTHER = "(other values)"

GLUE_JS = """
var gd = document.getElementById('{plot_id}');
var player = document.getElementById('player');
var status = document.getElementById('status');
var box = document.getElementById('search');
var SEARCH = gd.data.length - 1;  // the last trace rings the found file
function play(cd) {
  if (!cd[4]) { status.textContent = cd[0] + ': no audio'; return; }
  player.src = cd[4];
  player.dataset.id = cd[0];
  status.textContent = 'playing ' + cd[0];
  var p = player.play();
  if (p && p.catch) p.catch(function () {});
}
gd.on('plotly_click', function (ev) {
  if (ev.points.length && ev.points[0].customdata) play(ev.points[0].customdata);
});
function find(id) {
  for (var t = 0; t < SEARCH; t++) {
    var tr = gd.data[t];
    if (tr.visible === false || !tr.customdata) continue;
    for (var i = 0; i < tr.customdata.length; i++) {
      if (tr.customdata[i][0] === id) return {curveNumber: t, pointNumber: i, trace: tr};
    }
  }
  return null;
}
function search() {
  var id = box.value.trim();
  if (!id) return;
  var hit = find(id);
  if (!hit) {
    status.textContent = 'no file with id ' + id;
    Plotly.restyle(gd, {x: [[]], y: [[]]}, [SEARCH]);
    return;
  }
  var i = hit.pointNumber;
  Plotly.restyle(gd, {x: [[hit.trace.x[i]]], y: [[hit.trace.y[i]]]}, [SEARCH]).then(function () {
    Plotly.Fx.hover(gd, [{curveNumber: hit.curveNumber, pointNumber: i}]);
  });
  var cd = hit.trace.customdata[i];
  status.textContent = 'found ' + id + ' (cluster ' + cd[1] + ')';
}
box.addEventListener('change', search);
box.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') search(); });
document.body.dataset.ready = 'yes';
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0.5em 1em; }}
h1 {{ font-size: 1.05em; margin: 0.2em 0; white-space: pre-line; }}
#controls {{ display: flex; gap: 1em; align-items: center; flex-wrap: wrap; font-size: 0.9em; }}
#status {{ color: #444; min-width: 12em; }}
#help {{ color: #666; font-size: 0.8em; margin: 0.2em 0; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div id="controls">
<label>find id <input id="search" list="ids" size="24" placeholder="type an id, press Enter"></label>
<audio id="player" controls preload="none"></audio>
<span id="status"></span>
</div>
<p id="help">{help}</p>
<datalist id="ids">{options}</datalist>
{plot}
</body>
</html>
"""


def audio_links(ids, audio_dir, clips, map_path):
    """{id: URL of <audio_dir>/<id>.wav relative to the map} for the ids with a clip."""
    if not audio_dir:
        return {}
    start = os.path.dirname(os.path.abspath(map_path))
    have = set(clips)
    links = {}
    for i in ids:
        if i in have:
            rel = os.path.relpath(os.path.abspath(os.path.join(audio_dir, f"{i}.wav")), start)
            links[i] = urllib.parse.quote(rel.replace(os.sep, "/"))
    return links


def _natural(values):
    """Categories in numeric order when they are all numbers, else alphabetical."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def colourings(labels, probabilities, columns, table, ids):
    """[(name, [(legend name, indices, colour, opacity per point or number, size)])]: one
    group of traces per way of colouring, by cluster first."""
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    groups = []
    noise = np.flatnonzero(labels < 0)
    by_cluster = []
    if len(noise):
        by_cluster.append((f"noise ({len(noise)})", noise, NOISE_COLOUR, 0.55, 4))
    for c, colour in enumerate(palette(n_clusters)):
        members = np.flatnonzero(labels == c)
        opacity = [round(float(o), 3) for o in 0.3 + 0.7 * np.clip(probabilities[members], 0, 1)]
        by_cluster.append((f"cluster {c} ({len(members)})", members, colour, opacity, 7))
    groups.append(("cluster", by_cluster))
    for col in columns:
        values = np.array([table.get(i, {}).get(col) or NO_LABEL for i in ids], dtype=object)
        counts = {v: int((values == v).sum()) for v in set(values.tolist())}
        named = [v for v in counts if v != NO_LABEL]
        if len(named) > MAX_CATEGORIES:
            keep = set(sorted(named, key=lambda v: (-counts[v], v))[: MAX_CATEGORIES - 1])
            values = np.array([v if v in keep or v == NO_LABEL else OTHER for v in values], dtype=object)
            named = list(keep)
        traces = []
        if NO_LABEL in counts:
            traces.append((f"{NO_LABEL} ({counts[NO_LABEL]})", np.flatnonzero(values == NO_LABEL), NOISE_COLOUR, 0.55, 4))
        cats = _natural(named) + ([OTHER] if OTHER in set(values.tolist()) else [])
        for v, colour in zip(cats, palette(len(cats))):
            members = np.flatnonzero(values == v)
            traces.append((f"{v} ({len(members)})", members, "#555555" if v == OTHER else colour, 0.8, 7))
        groups.append((col, traces))
    return groups


def figure(layout, labels, probabilities, outlier_scores, ids, columns, table, links):
    customdata = [
        [i, "noise (-1)" if c < 0 else str(int(c)), round(float(p), 4), round(float(o), 4), links.get(i, "")]
        + [table.get(i, {}).get(col) or NO_LABEL for col in columns]
        for i, c, p, o in zip(ids, labels, probabilities, outlier_scores)
    ]
    hover = (
        "<b>%{customdata[0]}</b><br>cluster: %{customdata[1]}"
        "<br>membership probability: %{customdata[2]:.3f}<br>outlier score: %{customdata[3]:.3f}"
        + "".join(f"<br>{html.escape(col)}: %{{customdata[{5 + j}]}}" for j, col in enumerate(columns))
        + "<extra></extra>"
    )
    xy = np.round(np.asarray(layout, dtype=float), 5)
    fig = go.Figure()
    groups = colourings(labels, probabilities, columns, table, ids)
    spans = []
    for g, (name, traces) in enumerate(groups):
        start = len(fig.data)
        for legend, idx, colour, opacity, size in traces:
            fig.add_trace(go.Scatter(
                x=xy[idx, 0].tolist(), y=xy[idx, 1].tolist(), mode="markers", name=legend,
                customdata=[customdata[k] for k in idx], hovertemplate=hover,
                marker=dict(color=colour, opacity=opacity, size=size, line=dict(width=0)),
                visible=g == 0, legendgroup=name,
            ))
        spans.append((name, start, len(fig.data)))
    # The ring around a searched-for file; empty until a search.
    fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="search", hoverinfo="skip", showlegend=False,
                             marker=dict(symbol="circle-open", size=20, color="black", line=dict(width=3))))
    n = len(fig.data)
    menus = []
    if len(groups) > 1:
        buttons = [
            dict(label=f"colour by {name}", method="update",
                 args=[{"visible": [start <= t < stop or t == n - 1 for t in range(n)]}, {"legend.title.text": name}])
            for name, start, stop in spans
        ]
        menus = [dict(buttons=buttons, direction="down", x=0, xanchor="left", y=1.0, yanchor="bottom", showactive=True)]
    fig.update_layout(
        template="plotly_white", hovermode="closest", updatemenus=menus,
        legend=dict(title=dict(text="cluster"), itemsizing="constant"),
        margin=dict(l=10, r=10, t=40 if menus else 10, b=10),
        xaxis=dict(showticklabels=False, showgrid=False, zeroline=False, title=None),
        yaxis=dict(showticklabels=False, showgrid=False, zeroline=False, title=None),
    )
    return fig


def page(fig, title, ids, n_audio, columns):
    plot = fig.to_html(
        full_html=False, include_plotlyjs=True, div_id="map", post_script=GLUE_JS,
        default_height="82vh", config={"displaylogo": False, "responsive": True},
    )
    help_text = (
        f"{len(ids)} files. Hover a point for its id, cluster, membership probability and outlier score"
        + (f" and labels ({', '.join(columns)})" if columns else "")
        + ". Click a legend entry to hide it, double-click to show it alone; drag to zoom, double-click to reset."
        + (f" Click a point to play its clip ({n_audio} of {len(ids)} files have audio)." if n_audio else " No audio.")
    )
    options = "".join(f'<option value="{html.escape(i)}">' for i in ids)
    return PAGE.format(title=html.escape(title), help=html.escape(help_text), options=options, plot=plot)


def main(snakemake, log):
    clusters = np.load(snakemake.input.clusters)
    layout = np.load(snakemake.input.layout)
    ids, _ = read_ids(snakemake.input.ids)
    columns, table = [], {}
    if snakemake.input.get("labels"):
        columns, table = read_labels(snakemake.input.labels)
        missing = sum(i not in table for i in ids)
        log.info(f"labels {columns}: {len(ids) - missing} of {len(ids)} files labelled")
    audio = snakemake.params.audio
    links = audio_links(ids, audio["dir"], audio["clips"], snakemake.output.map)
    log.info(f"audio for {len(links)} of {len(ids)} files")
    fig = figure(layout, clusters["labels"], clusters["probabilities"], clusters["outlier_scores"],
                 ids, columns, table, links)
    text = page(fig, describe(snakemake.params.settings), ids, len(links), columns)
    with open(snakemake.output.map, "w") as f:
        f.write(text)


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
