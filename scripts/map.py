"""Map stage: an interactive, self-contained HTML map of one result (plotly.js, inlined).

Hover shows a file's id, cluster, membership probability, outlier score and labels;
a box finds a file by id; a menu colours by cluster or by any label column; clicking a
point plays `<audio_dir>/<id>.wav` in the page, through a link relative to the map, so
the results and audio folders can be moved or zipped together. No network is needed:
plotly.js is inlined, and nothing else is loaded.

Points are drawn with WebGL (plotly's `scattergl`). The page carries the data once, in
columns: coordinates, probabilities and outlier scores as little-endian float32, cluster
ids and label values as the smallest unsigned integer codes that hold them, each array
base64-encoded, and the ids as one JSON array of strings. The page's script decodes them
and builds the traces, the hover box and the search; nothing per point is a dictionary.
Above DRAW_AT_MOST points it draws a sample over a density of all points, and says so;
search still finds every id.

Clips assigned to the result afterwards (assign_dir, scripts/assign.py) are a layer of
their own: outlined markers in their assigned cluster's colour, drawn in every colouring,
placed in the layout by layout.place. They follow the clustered files in every array
(`n_clustered` says where), so hover, search and audio treat them like the others.
"""

import base64
import html
import json
import os
import urllib.parse

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline
from _stage import read_ids, read_labels
from plot import NOISE_COLOUR, describe, palette

# A colouring with more values than this gives legend entries to its most frequent
# ones and draws the rest as one trace, so the legend and the page stay usable.
MAX_CATEGORIES = 40
NO_LABEL = "(no label)"
OTHER = "(other values)"
# Above this many points the map draws a sample of this size over a density layer:
# drawing 200,000 points with software WebGL already takes most of the 15 s budget
# (bench/map_scale.py), and more overlapping points add nothing a density does not show.
DRAW_AT_MOST = 100_000
# Every cluster keeps at least this many points in the sample (all of a smaller one),
# so no small cluster disappears from the drawing.
SAMPLE_PER_CLUSTER = 3
DENSITY_BINS = 200

_INT_TYPES = (("u1", np.uint8), ("u2", np.uint16), ("i4", np.int32))


def encode(values, dtype):
    """{"dtype", "b64"}: values as a little-endian typed array (u1, u2, i4 or f4), base64."""
    a = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": np.dtype(dtype).str[1:], "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def encode_codes(codes):
    """Non-negative integer codes in the smallest of u1, u2, i4 that holds them."""
    top = int(codes.max()) if len(codes) else 0
    for name, dtype in _INT_TYPES:
        if top <= np.iinfo(dtype).max:
            return encode(codes, dtype)
    raise ValueError(f"codes up to {top} do not fit an int32")


def decode(enc):
    """The inverse of encode, for tests and tools that read a map's data."""
    dtype = {"u1": "<u1", "u2": "<u2", "i4": "<i4", "f4": "<f4"}[enc["dtype"]]
    return np.frombuffer(base64.b64decode(enc["b64"]), dtype=dtype)


def audio_prefix(audio_dir, map_path):
    """The URL of `audio_dir`, relative to the map, quoted, with a trailing slash ("" when
    it is the map's own folder): the page links `<prefix><quoted id>.wav`."""
    start = os.path.dirname(os.path.abspath(map_path))
    rel = os.path.relpath(os.path.abspath(audio_dir), start).replace(os.sep, "/")
    return "" if rel == "." else urllib.parse.quote(rel) + "/"


def audio_link(prefix, id_):
    """The link the page builds for a clip (its JS quotes the same characters as Python)."""
    return prefix + urllib.parse.quote(f"{id_}.wav", safe="")


def _natural(values):
    """Categories in numeric order when they are all numbers, else alphabetical."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def label_codes(ids, table, column):
    """(values, codes): the distinct values of a label column (files without one get
    NO_LABEL), sorted, and each file's index into them."""
    per_file = [table.get(i, {}).get(column) or NO_LABEL for i in ids]
    values = sorted(set(per_file))
    where = {v: k for k, v in enumerate(values)}
    return values, np.array([where[v] for v in per_file], dtype=np.int64)


def cluster_colouring(labels):
    """(traces, trace_of): one colouring's traces and, for each code (cluster + 1, so
    noise is 0), the trace its points go to. With more than MAX_CATEGORIES clusters the
    largest keep their legend entries and the rest share one trace, each point in its
    cluster's colour."""
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels + 1, minlength=n_clusters + 1)
    colours = palette(n_clusters)
    traces, trace_of = [], np.zeros(n_clusters + 1, dtype=np.int64)
    if sizes[0]:
        traces.append(dict(name=f"noise ({sizes[0]})", colour=NOISE_COLOUR, opacity=0.55, size=4))
    named = range(n_clusters)
    if n_clusters > MAX_CATEGORIES:
        named = sorted(sorted(range(n_clusters), key=lambda c: (-sizes[c + 1], c))[: MAX_CATEGORIES - 1])
    for c in named:
        trace_of[c + 1] = len(traces)
        traces.append(dict(name=f"cluster {c} ({sizes[c + 1]})", colour=colours[c], opacity="probability", size=7))
    if n_clusters > len(named):
        rest = sorted(set(range(n_clusters)) - set(named))
        trace_of[np.array(rest) + 1] = len(traces)
        traces.append(dict(name=f"{len(rest)} other clusters ({int(sizes[np.array(rest) + 1].sum())})",
                           colour="cluster", opacity="probability", size=7))
    return traces, trace_of


def label_colouring(values, codes):
    """(traces, trace_of) for a label column, as cluster_colouring: the MAX_CATEGORIES - 1
    most frequent values get their own colour, the rest are grouped as OTHER."""
    counts = np.bincount(codes, minlength=len(values))
    where = {v: k for k, v in enumerate(values)}
    named = [v for v in values if v != NO_LABEL]
    keep = set(named)
    if len(named) > MAX_CATEGORIES:
        count = dict(zip(values, counts.tolist()))
        keep = set(sorted(named, key=lambda v: (-count[v], v))[: MAX_CATEGORIES - 1])
    traces, trace_of = [], np.zeros(len(values), dtype=np.int64)
    grouped = [v for v in named if v not in keep]
    if NO_LABEL in where:
        k = where[NO_LABEL]
        trace_of[k] = 0
        traces.append(dict(name=f"{NO_LABEL} ({counts[k]})", colour=NOISE_COLOUR, opacity=0.55, size=4))
    cats = _natural(list(keep))
    for v, colour in zip(cats + ([OTHER] if grouped else []), palette(len(cats) + bool(grouped))):
        if v == OTHER:
            members = [where[g] for g in grouped]
            trace_of[members] = len(traces)
            traces.append(dict(name=f"{OTHER} ({int(counts[members].sum())})", colour="#555555", opacity=0.8, size=7))
        else:
            k = where[v]
            trace_of[k] = len(traces)
            traces.append(dict(name=f"{v} ({counts[k]})", colour=colour, opacity=0.8, size=7))
    return traces, trace_of


def sample(labels, size, seed=0):
    """A boolean mask of the points drawn: `size` points at random, plus the first
    SAMPLE_PER_CLUSTER (in the same random order) of each cluster and of noise."""
    n = len(labels)
    if n <= size:
        return np.ones(n, dtype=bool)
    priority = np.random.default_rng(seed).permutation(n)
    drawn = priority < size
    order = np.lexsort((priority, labels))  # by cluster, then priority
    grouped = labels[order]
    starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    drawn[order[rank < SAMPLE_PER_CLUSTER]] = True
    return drawn


def density(xy, bins=DENSITY_BINS):
    """A heatmap trace of log10(files per cell) over every point; empty cells are blank."""
    counts, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins)
    # + 0.3, so that a cell of one file is a shade above the colour scale's blank end.
    z = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 0.3, np.nan).astype(np.float32)
    # numpy arrays go into the page as base64 typed arrays; plotly.js leaves NaN cells blank.
    return go.Heatmap(
        x=((xe[:-1] + xe[1:]) / 2).astype(np.float32), y=((ye[:-1] + ye[1:]) / 2).astype(np.float32),
        z=np.ascontiguousarray(z.T),
        colorscale=[[0, "#f2f2f2"], [1, "#555555"]], zmin=0, showscale=False, hoverinfo="skip",
        name="density of all files", zsmooth=False)


def plain(text):
    """Text that plotly shows as written: it renders a subset of HTML in names and
    titles, and decodes entities after reading tags, so escaped markup stays literal."""
    return html.escape(str(text), quote=False)


def build(layout, labels, probabilities, outlier_scores, ids, columns, table, audio, draw_at_most=DRAW_AT_MOST,
          new=None):
    """(figure, data): the plotly figure without per-point arrays, and the page's data
    from which its script fills them. `audio` is (prefix, set of ids with a clip) or None.
    `new`: the assigned clips' layer, a dict of name, ids, xy, labels, probabilities and
    outlier_scores, or None."""
    labels = np.asarray(labels, dtype=np.int64)
    xy = np.asarray(layout, dtype=np.float32)
    n_clustered = len(ids)
    drawn = sample(labels, draw_at_most)
    fig = go.Figure()
    if not drawn.all():
        fig.add_trace(density(xy))
    colourings = [("cluster", -1, *cluster_colouring(labels))]
    cols = [(col, *label_codes(ids, table, col)) for col in columns]
    colourings += [(col, k, *label_colouring(values, codes)) for k, (col, values, codes) in enumerate(cols)]
    if new is not None:
        # The new clips follow the clustered files in every array; colourings count only
        # the clustered files, the label columns are coded again over both.
        n_new = len(new["ids"])
        ids = list(ids) + list(new["ids"])
        xy = np.concatenate([xy, np.asarray(new["xy"], dtype=np.float32).reshape(n_new, 2)])
        labels = np.concatenate([labels, np.asarray(new["labels"], dtype=np.int64)])
        probabilities = np.concatenate([probabilities, new["probabilities"]])
        outlier_scores = np.concatenate([outlier_scores, new["outlier_scores"]])
        drawn = np.concatenate([drawn, np.ones(n_new, dtype=bool)])
        recoded = [(col, *label_codes(ids, table, col)) for col in columns]
        for k, (col, values, codes) in enumerate(recoded):
            old_values = cols[k][1]
            # A value only new clips have is in no colouring's trace: the layer draws them.
            name, source, traces, trace_of = colourings[k + 1]
            where = {v: j for j, v in enumerate(old_values)}
            colourings[k + 1] = (name, source, traces,
                                 np.array([trace_of[where[v]] if v in where else 0 for v in values], dtype=np.int64))
        cols = recoded
    spans, groups = [], []
    for g, (name, source, traces, trace_of) in enumerate(colourings):
        start = len(fig.data)
        for t in traces:
            marker = dict(size=t["size"], line=dict(width=0))
            if t["colour"] != "cluster":
                marker["color"] = t["colour"]
            if t["opacity"] != "probability":
                marker["opacity"] = t["opacity"]
            # hoverinfo "none": plotly still reports hovers and clicks, the page draws the box.
            fig.add_trace(go.Scattergl(mode="markers", name=plain(t["name"]), hoverinfo="none",
                                       marker=marker, visible=g == 0, legendgroup=name))
        spans.append((name, start, len(fig.data)))
        groups.append({"source": source, "first": start, "trace_of": trace_of.tolist(),
                       "traces": [{"colour": t["colour"] == "cluster", "opacity": t["opacity"] == "probability"}
                                  for t in traces]})
    layer = None
    if new is not None:
        # Outlined markers, in every colouring; the page fills their points and colours.
        layer = len(fig.data)
        fig.add_trace(go.Scattergl(mode="markers", name=plain(f"new clips: {new['name']} ({len(new['ids'])})"),
                                   hoverinfo="none", marker=dict(size=10, line=dict(width=2, color="black"))))
    # The ring around a searched-for file; empty until a search. WebGL, so it lies above
    # the points (plotly stacks its WebGL canvas over its SVG layers).
    fig.add_trace(go.Scattergl(x=[], y=[], mode="markers", name="search", hoverinfo="skip", showlegend=False,
                               marker=dict(symbol="circle-open", size=20, color="black", line=dict(width=3))))
    n = len(fig.data)
    menus = []
    if len(colourings) > 1:
        buttons = [
            dict(label=plain(f"colour by {name}"), method="update",
                 args=[{"visible": [start <= t < stop or t in (n - 1, layer) or fig.data[t].type == "heatmap"
                                    for t in range(n)]},
                       {"legend.title.text": plain(name)}])
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
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    data = {
        "ids": list(ids),
        "n_clustered": n_clustered,
        "layer": None if layer is None else {"trace": layer, "name": new["name"], "noise": NOISE_COLOUR},
        "x": encode(xy[:, 0], "f4"),
        "y": encode(xy[:, 1], "f4"),
        "cluster": encode_codes(labels + 1),  # 0 is noise
        "probability": encode(probabilities, "f4"),
        "outlier": encode(outlier_scores, "f4"),
        "palette": palette(n_clusters),
        "columns": [{"name": col, "values": values, "codes": encode_codes(codes)} for col, values, codes in cols],
        "colourings": groups,
        "drawn": None if drawn.all() else encode(drawn, "u1"),
        "audio": None if audio is None else {
            "prefix": audio[0], "has": encode(np.array([i in audio[1] for i in ids], dtype=np.uint8), "u1")},
    }
    return fig, data


GLUE_JS = r"""
(function () {
'use strict';
var FIG = JSON.parse(document.getElementById('map-figure').textContent);
var D = JSON.parse(document.getElementById('map-data').textContent);
var TYPES = {u1: Uint8Array, u2: Uint16Array, i4: Int32Array, f4: Float32Array};
function decode(enc) {  // base64 of a little-endian typed array
  var s = atob(enc.b64), bytes = new Uint8Array(s.length);
  for (var i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return new TYPES[enc.dtype](bytes.buffer);
}
var ids = D.ids, N = ids.length, NC = D.n_clustered;
var X = decode(D.x), Y = decode(D.y), CL = decode(D.cluster), P = decode(D.probability), O = decode(D.outlier);
var COLS = D.columns.map(function (c) { return {name: c.name, values: c.values, codes: decode(c.codes)}; });
var DRAWN = D.drawn ? decode(D.drawn) : null;
var HAS_AUDIO = D.audio ? decode(D.audio.has) : null;
var traces = FIG.data, RING = traces.length - 1;
var members = [];  // members[t]: the file index of each point of trace t

D.colourings.forEach(function (g) {
  var codes = g.source < 0 ? CL : COLS[g.source].codes, of = g.trace_of, k = g.traces.length;
  var counts = new Int32Array(k), i, j;
  for (i = 0; i < NC; i++) if (!DRAWN || DRAWN[i]) counts[of[codes[i]]]++;
  var idx = [], fill = new Int32Array(k);
  for (j = 0; j < k; j++) idx.push(new Int32Array(counts[j]));
  for (i = 0; i < NC; i++) if (!DRAWN || DRAWN[i]) { j = of[codes[i]]; idx[j][fill[j]++] = i; }
  g.traces.forEach(function (spec, j) {
    var t = g.first + j, ix = idx[j], n = ix.length, tr = traces[t];
    var x = new Float32Array(n), y = new Float32Array(n);
    for (var m = 0; m < n; m++) { x[m] = X[ix[m]]; y[m] = Y[ix[m]]; }
    tr.x = x; tr.y = y;
    if (spec.opacity) {  // a point's opacity is its membership strength
      var op = new Float32Array(n);
      for (m = 0; m < n; m++) op[m] = 0.3 + 0.7 * Math.min(1, Math.max(0, P[ix[m]] || 0));
      tr.marker.opacity = op;
    }
    if (spec.colour) {  // one trace for many clusters: each point in its cluster's colour
      var col = new Array(n);
      for (m = 0; m < n; m++) col[m] = D.palette[CL[ix[m]] - 1];
      tr.marker.color = col;
    }
    members[t] = ix;
  });
});

if (D.layer) {  // the assigned clips: files NC..N-1, each in its cluster's colour
  var nn = N - NC, lx = new Float32Array(nn), ly = new Float32Array(nn), lix = new Int32Array(nn), lc = new Array(nn);
  for (var m = 0; m < nn; m++) {
    lix[m] = NC + m; lx[m] = X[NC + m]; ly[m] = Y[NC + m];
    lc[m] = CL[NC + m] === 0 ? D.layer.noise : D.palette[CL[NC + m] - 1];
  }
  var lt = traces[D.layer.trace];
  lt.x = lx; lt.y = ly; lt.marker.color = lc;
  members[D.layer.trace] = lix;
}

var gd = document.getElementById('map');
var tip = document.getElementById('tip');
var player = document.getElementById('player');
var status = document.getElementById('status');
var box = document.getElementById('search');
var completions = document.getElementById('ids');

function clusterText(i) { return CL[i] === 0 ? 'noise (-1)' : String(CL[i] - 1); }
// Python's urllib.parse.quote: encodeURIComponent leaves !'()* as they are.
function quote(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, function (c) { return '%' + c.charCodeAt(0).toString(16).toUpperCase(); });
}
function link(i) { return HAS_AUDIO && HAS_AUDIO[i] ? D.audio.prefix + quote(ids[i] + '.wav') : ''; }

// The hover box is plain DOM text, so ids and labels can never become markup.
function show(i) {
  var lines = ['cluster: ' + clusterText(i), 'membership probability: ' + P[i].toFixed(3),
               'outlier score: ' + O[i].toFixed(3)];
  COLS.forEach(function (c) { lines.push(c.name + ': ' + c.values[c.codes[i]]); });
  if (DRAWN && !DRAWN[i]) lines.push('(not in the drawn sample)');
  if (i >= NC) lines.push('new clip, assigned (' + D.layer.name + ')');
  var b = document.createElement('b');
  b.textContent = ids[i];
  tip.replaceChildren(b);
  lines.forEach(function (l) { tip.appendChild(document.createElement('br')); tip.appendChild(document.createTextNode(l)); });
  var xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  var px = xa._offset + xa.l2p(X[i]), py = ya._offset + ya.l2p(Y[i]);
  tip.hidden = false;
  tip.dataset.index = i;
  var left = px + 14 + tip.offsetWidth > gd.clientWidth ? px - 14 - tip.offsetWidth : px + 14;
  tip.style.left = Math.max(0, left) + 'px';
  tip.style.top = Math.max(0, py - tip.offsetHeight / 2) + 'px';
}
function hide() { tip.hidden = true; }
function fileOf(pt) { var m = members[pt.curveNumber]; return m ? m[pt.pointNumber] : -1; }

function play(i) {
  var src = link(i);
  if (!src) { status.textContent = ids[i] + ': no audio'; return; }
  player.src = src;
  player.dataset.id = ids[i];
  status.textContent = 'playing ' + ids[i];
  var p = player.play();
  if (p && p.catch) p.catch(function () {});
}

var index = null;  // id -> file, built at the first search
function lookup(id) {
  if (!index) { index = new Map(); for (var i = 0; i < N; i++) index.set(ids[i], i); }
  return index.has(id) ? index.get(id) : -1;
}
function search() {
  var id = box.value;  // not trimmed: ids may begin or end with spaces
  if (!id) return;
  var i = lookup(id);
  if (i < 0) {
    status.textContent = 'no file with id ' + id;
    hide();
    Plotly.restyle(gd, {x: [[]], y: [[]]}, [RING]);
    return;
  }
  Plotly.restyle(gd, {x: [[X[i]]], y: [[Y[i]]]}, [RING]).then(function () { show(i); });
  status.textContent = 'found ' + id + ' (' + (i >= NC ? 'new clip, assigned to ' : '') + 'cluster ' + clusterText(i) + ')'
    + (DRAWN && !DRAWN[i] ? ', not in the drawn sample: ringed' : '');
}
// Completions for the box: the first ids that start with what is typed (a datalist of
// every id would be hundreds of thousands of elements).
function complete() {
  var v = box.value, found = [];
  for (var i = 0; v && i < N && found.length < 20; i++) {
    if (ids[i].startsWith(v)) { var o = document.createElement('option'); o.value = ids[i]; found.push(o); }
  }
  completions.replaceChildren.apply(completions, found);
}

Plotly.newPlot(gd, traces, FIG.layout, {displaylogo: false, responsive: true}).then(function () {
  gd.on('plotly_hover', function (ev) { var i = fileOf(ev.points[0]); if (i >= 0) show(i); });
  gd.on('plotly_unhover', hide);
  gd.on('plotly_relayout', hide);
  gd.on('plotly_click', function (ev) { var i = fileOf(ev.points[0]); if (i >= 0) play(i); });
  box.addEventListener('input', complete);
  box.addEventListener('change', search);
  box.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') search(); });
  document.body.dataset.ready = 'yes';
});
})();
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
#status {{ color: #444; min-width: 12em; white-space: pre-wrap; }}
#help, #sampled {{ color: #666; font-size: 0.8em; margin: 0.2em 0; }}
#sampled {{ color: #8a4b00; }}
#frame {{ position: relative; }}
#map {{ height: 82vh; width: 100%; }}
#tip {{ position: absolute; z-index: 10; pointer-events: none; background: #fff; border: 1px solid #888;
        border-radius: 3px; padding: 4px 6px; font-size: 13px; line-height: 1.35; white-space: pre; }}
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
{sampled}<datalist id="ids"></datalist>
<div id="frame"><div id="map"></div><div id="tip" hidden></div></div>
<script type="application/json" id="map-figure">{figure}</script>
<script type="application/json" id="map-data">{data}</script>
<script type="text/javascript">window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script type="text/javascript">{plotlyjs}</script>
<script type="text/javascript">{glue}</script>
</body>
</html>
"""


def _json_in_html(text):
    """JSON safe inside a <script> element: no "<" can close it (JSON reads \\u003c back)."""
    return text.replace("<", "\\u003c")


def page(fig, data, title, columns):
    n = len(data["ids"])
    n_new = n - data["n_clustered"]
    n_audio = int(decode(data["audio"]["has"]).sum()) if data["audio"] else 0
    n_drawn = int(decode(data["drawn"]).sum()) if data["drawn"] else n
    help_text = (
        f"{data['n_clustered']} files"
        + (f" and {n_new} new clips assigned afterwards ({data['layer']['name']}, outlined)" if data["layer"] else "")
        + ". Hover a point for its id, cluster, membership probability and outlier score"
        + (f" and labels ({', '.join(columns)})" if columns else "")
        + ". Click a legend entry to hide it, double-click to show it alone; drag to zoom, double-click to reset."
        + (f" Click a point to play its clip ({n_audio} of {n} files have audio)." if n_audio else " No audio.")
    )
    sampled = ""
    if n_drawn < n:
        sampled = (f'<p id="sampled">Too many files to draw each one: {n_drawn} of {n} are drawn (a random sample, '
                   f"with at least {SAMPLE_PER_CLUSTER} of every cluster), over a grey density of all {n}. "
                   "Find id searches all of them and rings any file, drawn or not.</p>\n")
    return PAGE.format(
        title=html.escape(title), help=html.escape(help_text), sampled=sampled,
        figure=_json_in_html(pio.to_json(fig, validate=False)),
        data=_json_in_html(json.dumps(data, ensure_ascii=False, separators=(",", ":"))),
        plotlyjs=plotly.offline.get_plotlyjs(), glue=GLUE_JS)


def main(snakemake, log):
    clusters = np.load(snakemake.input.clusters)
    layout = np.load(snakemake.input.layout)
    ids, _ = read_ids(snakemake.input.ids)
    new = None
    if snakemake.input.get("points"):
        from layout import place

        points = np.load(snakemake.input.points, allow_pickle=False)
        xy = place(points["reduced"], np.load(snakemake.input.matrix), layout, snakemake.params.settings["layout"], log)
        new = {"name": snakemake.params.assign_name, "ids": points["ids"].tolist(), "xy": xy, "labels": points["labels"],
               "probabilities": points["probabilities"], "outlier_scores": points["outlier_scores"]}
        log.info(f"{len(new['ids'])} assigned clips drawn as a layer of their own")
    columns, table = [], {}
    if snakemake.input.get("labels"):
        columns, table = read_labels(snakemake.input.labels)
        missing = sum(i not in table for i in ids)
        log.info(f"labels {columns}: {len(ids) - missing} of {len(ids)} files labelled")
    audio = snakemake.params.audio
    clips = set(audio["clips"]) & (set(ids) | set(new["ids"] if new else ())) if audio["dir"] else set()
    log.info(f"audio for {len(clips)} of {len(ids)} files")
    fig, data = build(layout, clusters["labels"], clusters["probabilities"], clusters["outlier_scores"],
                      ids, columns, table,
                      (audio_prefix(audio["dir"], snakemake.output.map), clips) if clips else None, new=new)
    if data["drawn"]:
        log.info(f"{len(ids)} files: the map draws a sample of {int(decode(data['drawn']).sum())} over a density")
    text = page(fig, data, describe(snakemake.params.settings), columns)
    with open(snakemake.output.map, "w", encoding="utf-8") as f:
        f.write(text)


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
