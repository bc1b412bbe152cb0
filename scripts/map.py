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

The map of a sweep's selected result (best/) also carries each file's stability across
the sweep (best/clusters_hard.json, scripts/select_best.py) as one more float32 column: a
"stability" colouring on a colour scale (least stable drawn on top), a line in the hover
box, and a list of the LEAST_STABLE least stable files, to listen to first.

Beside the map, a panel lists every cluster (id, name, size, median membership
probability, and median stability on best/'s map), sorted and filtered in the page and
drawn lazily (only the rows in view exist), so 2,000 clusters or a 1M map stay quick.
Each cluster can be played as a queue: its exemplars first, then its members by
membership probability; a "doubtful clips" queue plays the DOUBTFUL lowest-probability
members and the DOUBTFUL highest outlier scores. The page keeps names and tags in the
browser's localStorage, under the result's identity (its folder and ids' digest,
scripts/names.py), and exports them as cluster_names.csv (read back by the config key
cluster_names) and tags.csv (a labels file). Names, or ids, label the clusters at their
centres, the largest first, each only where it overlaps no other.

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
import names as cluster_names
from _stage import read_ids, read_labels
from export import exemplar_files
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
# The map of the selected result lists this many of its least stable files.
LEAST_STABLE = 50
# The doubtful clips queue: this many lowest-probability members, then this many of the
# highest outlier scores (any file).
DOUBTFUL = 100
# A cluster's zoom box: these percentiles of its members, so one stray member does not
# zoom out to the whole map.
ZOOM_PERCENTILES = (2, 98)
# Stability 0 (the file's company changes with every setting) is red, 1 (always the
# same company) blue; the amber middle stays visible on white.
STABILITY_SCALE = [[0.0, "#c0392b"], [0.5, "#e6a100"], [1.0, "#2c7fb8"]]

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


def least_stable(stability, k=LEAST_STABLE):
    """Indices of the k least stable files, least stable first (ties in file order)."""
    stability = np.asarray(stability, dtype=np.float64)
    return np.lexsort((np.arange(len(stability)), stability))[:k]


def read_stability(path, ids):
    """Each file's stability from best/clusters_hard.json, in the order of `ids`. The file
    holds one entry per line: read line by line, so memory does not grow with its size."""
    out = np.empty(len(ids), dtype=np.float32)
    k = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip().rstrip(",")
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if k >= len(ids) or entry["id"] != ids[k]:
                raise ValueError(f"{path} does not list the clustered files in their order (entry {k + 1})")
            out[k] = entry["stability"]
            k += 1
    if k != len(ids):
        raise ValueError(f"{path} lists {k} files, the result {len(ids)}")
    return out


def cluster_table(xy, labels, probabilities, stability=None):
    """Per cluster, for the panel, the map's labels and zooming: size, median membership
    probability, median stability (or None), centre (the median of its members) and zoom
    box (ZOOM_PERCENTILES of its members), each encoded as a column."""
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    columns = {k: np.zeros(n_clusters, dtype=np.float32) for k in ("median_probability", "x", "y", "x0", "x1", "y0", "y1")}
    med_stability = None if stability is None else np.zeros(n_clusters, dtype=np.float32)
    for c in range(n_clusters):
        rows = order[bounds[c] : bounds[c + 1]]
        if not len(rows):  # a cluster id with no files (never from HDBSCAN): no centre, no label
            columns["x"][c] = columns["y"][c] = np.nan
            continue
        columns["median_probability"][c] = np.median(probabilities[rows])
        columns["x"][c], columns["y"][c] = np.median(xy[rows], axis=0)
        (columns["x0"][c], columns["y0"][c]), (columns["x1"][c], columns["y1"][c]) = np.percentile(
            xy[rows], ZOOM_PERCENTILES, axis=0)
        if med_stability is not None:
            med_stability[c] = np.median(stability[rows])
    table = {"n": n_clusters, "size": encode_codes(np.diff(bounds)),
             "stability": None if med_stability is None else encode(med_stability, "f4")}
    table.update({k: encode(v, "f4") for k, v in columns.items()})
    return table


def doubtful(labels, probabilities, outlier_scores, k=DOUBTFUL):
    """The doubtful clips queue: the k clustered files of lowest membership probability
    (lowest first), then the k files of highest outlier score not already listed."""
    clustered = np.flatnonzero(labels >= 0)
    weakest = clustered[np.lexsort((clustered, probabilities[clustered]))][:k]
    outlying = np.lexsort((np.arange(len(labels)), -np.asarray(outlier_scores, dtype=np.float64)))
    outlying = outlying[~np.isin(outlying, weakest)][:k]
    return np.concatenate([weakest, outlying]).astype(np.int64)


def plain(text):
    """Text that plotly shows as written: it renders a subset of HTML in names and
    titles, and decodes entities after reading tags, so escaped markup stays literal."""
    return html.escape(str(text), quote=False)


def build(layout, labels, probabilities, outlier_scores, ids, columns, table, audio, draw_at_most=DRAW_AT_MOST,
          new=None, stability=None, exemplars=None, names=None, result=None):
    """(figure, data): the plotly figure without per-point arrays, and the page's data
    from which its script fills them. `audio` is (prefix, set of ids with a clip) or None.
    `new`: the assigned clips' layer, a dict of name, ids, xy, labels, probabilities and
    outlier_scores, or None. `stability`: each clustered file's stability across the
    sweep (the selected result's map), or None. `exemplars`: a boolean mask of HDBSCAN's
    exemplars (played first in a cluster's queue), or None. `names`: {cluster: name}
    from cluster_names, or None. `result`: the result's folder under the dataset (what
    the page's Export writes as its identity, with the ids' digest), or None."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    xy = np.asarray(layout, dtype=np.float32)
    n_clustered = len(ids)
    clusters = cluster_table(xy, labels, probabilities, stability)
    doubtful_files = doubtful(labels, probabilities, outlier_scores)
    identity = None if result is None else {"name": result, "digest": cluster_names.ids_digest(ids)}
    drawn = sample(labels, draw_at_most)
    fig = go.Figure()
    if not drawn.all():
        fig.add_trace(density(xy))
    colourings = [("cluster", -1, *cluster_colouring(labels))]
    if stability is not None:
        # One trace on a colour scale; the page fills its points and colours.
        colourings.append(("stability", "stability", [dict(name="stability", colour="stability", opacity=0.9, size=7)],
                           np.zeros(1, dtype=np.int64)))
    first_label = len(colourings)
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
            name, source, traces, trace_of = colourings[k + first_label]
            where = {v: j for j, v in enumerate(old_values)}
            colourings[k + first_label] = (name, source, traces,
                                 np.array([trace_of[where[v]] if v in where else 0 for v in values], dtype=np.int64))
        cols = recoded
    spans, groups = [], []
    for g, (name, source, traces, trace_of) in enumerate(colourings):
        start = len(fig.data)
        for t in traces:
            marker = dict(size=t["size"], line=dict(width=0))
            if t["colour"] == "stability":
                marker.update(colorscale=STABILITY_SCALE, cmin=0, cmax=1, showscale=True,
                              colorbar=dict(title=dict(text="stability"), len=0.6, y=0, yanchor="bottom"))
            elif t["colour"] != "cluster":
                marker["color"] = t["colour"]
            if t["opacity"] != "probability":
                marker["opacity"] = t["opacity"]
            # hoverinfo "none": plotly still reports hovers and clicks, the page draws the box.
            fig.add_trace(go.Scattergl(mode="markers", name=plain(t["name"]), hoverinfo="none",
                                       marker=marker, visible=g == 0, legendgroup=name,
                                       **({"showlegend": False} if t["colour"] == "stability" else {})))
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
    # The cluster chosen in the panel, its members outlined; empty until one is chosen. Thin
    # and grey, so that the black ring of the clip playing stands out among them.
    highlight = len(fig.data)
    fig.add_trace(go.Scattergl(x=[], y=[], mode="markers", name="chosen cluster", hoverinfo="skip", showlegend=False,
                               marker=dict(symbol="circle-open", size=9, color="rgba(0,0,0,0.45)", line=dict(width=1))))
    # The ring around a searched-for or playing file; empty until one. WebGL, so it lies above
    # the points (plotly stacks its WebGL canvas over its SVG layers); wide and thick, to
    # show inside a dense cluster.
    fig.add_trace(go.Scattergl(x=[], y=[], mode="markers", name="search", hoverinfo="skip", showlegend=False,
                               marker=dict(symbol="circle-open", size=24, color="black", line=dict(width=4))))
    n = len(fig.data)
    menus = []
    if len(colourings) > 1:
        buttons = [
            dict(label=plain(f"colour by {name}"), method="update",
                 args=[{"visible": [start <= t < stop or t in (n - 1, highlight, layer) or fig.data[t].type == "heatmap"
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
        # The clustered files' stability (the assigned clips have none), and the least stable ones.
        "stability": None if stability is None else encode(stability, "f4"),
        "unstable": None if stability is None else encode_codes(least_stable(stability)),
        "clusters": clusters,
        "highlight": highlight,
        "exemplar": None if exemplars is None else encode(np.asarray(exemplars, dtype=np.uint8), "u1"),
        "doubtful": encode_codes(doubtful_files),
        "names": {str(c): name for c, name in sorted((names or {}).items())},
        "result": identity,
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

var S = D.stability ? decode(D.stability) : null;  // the clustered files' stability (best/ only)
var UNSTABLE = D.unstable ? decode(D.unstable) : null;  // the least stable files, least stable first

D.colourings.forEach(function (g) {
  if (g.source === 'stability') {  // one trace on the colour scale, the least stable drawn last (on top)
    var order = [];
    for (var f = 0; f < NC; f++) if (!DRAWN || DRAWN[f]) order.push(f);
    order.sort(function (a, b) { return S[b] - S[a] || a - b; });
    var st = traces[g.first], sx = new Float32Array(order.length), sy = new Float32Array(order.length);
    var sc = new Array(order.length);
    for (var q = 0; q < order.length; q++) { sx[q] = X[order[q]]; sy[q] = Y[order[q]]; sc[q] = S[order[q]]; }
    st.x = sx; st.y = sy; st.marker.color = sc;
    members[g.first] = Int32Array.from(order);
    return;
  }
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
  if (S && i < NC) lines.splice(1, 0, 'stability: ' + S[i].toFixed(3));
  COLS.forEach(function (c) { lines.push(c.name + ': ' + c.values[c.codes[i]]); });
  if (DRAWN && !DRAWN[i]) lines.push('(not in the drawn sample)');
  if (i >= NC) lines.push('new clip, assigned (' + D.layer.name + ')');
  if (CL[i] > 0 && NAMES[CL[i] - 1]) lines.splice(0, 1, 'cluster: ' + clusterText(i) + ', ' + NAMES[CL[i] - 1]);
  if (TAGS[ids[i]]) lines.push('tag: ' + TAGS[ids[i]]);
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
  current = i;
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
    ringed = -1;
    Plotly.restyle(gd, {x: [[]], y: [[]]}, [RING]).then(placeLabels);
    return;
  }
  ring(i);
  status.textContent = 'found ' + id + ' (' + (i >= NC ? 'new clip, assigned to ' : '') + 'cluster ' + clusterText(i)
    + (S && i < NC ? ', stability ' + S[i].toFixed(3) : '') + ')'
    + (DRAWN && !DRAWN[i] ? ', not in the drawn sample: ringed' : '');
}
function ring(i) {
  current = ringed = i;
  return Plotly.restyle(gd, {x: [[X[i]]], y: [[Y[i]]]}, [RING]).then(function () { placeLabels(); show(i); });
}

// The least stable files (the selected result's map): a list to listen to first, and a
// button that steps through it. Each rings the file, shows its details and plays its clip.
var nextUnstable = 0;
function listen(k) {
  var i = UNSTABLE[k], audio = link(i) !== '';
  nextUnstable = (k + 1) % UNSTABLE.length;
  ring(i);
  document.querySelectorAll('#unstable li').forEach(function (li, j) { li.classList.toggle('current', j === k); });
  if (audio) play(i);
  status.textContent = 'least stable ' + (k + 1) + ' of ' + UNSTABLE.length + ': ' + ids[i] + ' (stability '
    + S[i].toFixed(3) + ', cluster ' + clusterText(i) + ')' + (audio ? ', playing' : ', no audio');
}
function listUnstable() {
  var list = document.getElementById('unstable');
  UNSTABLE.forEach(function (i, k) {
    var li = document.createElement('li'), b = document.createElement('button');
    b.type = 'button';
    b.textContent = ids[i];
    li.appendChild(b);
    li.appendChild(document.createTextNode(' ' + S[i].toFixed(3) + ', ' + (CL[i] === 0 ? 'noise' : 'cluster ' + (CL[i] - 1))));
    b.addEventListener('click', function () { listen(k); });
    list.appendChild(li);
  });
  document.getElementById('next-unstable').addEventListener('click', function () { listen(nextUnstable); });
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


// ---- The cluster panel, the listening queue, names and tags --------------------------
var K = D.clusters.n, SIZE = decode(D.clusters.size), MEDP = decode(D.clusters.median_probability);
var CX = decode(D.clusters.x), CY = decode(D.clusters.y);
var BOX = ['x0', 'x1', 'y0', 'y1'].map(function (k) { return decode(D.clusters[k]); });
var MEDS = D.clusters.stability ? decode(D.clusters.stability) : null;
var EX = D.exemplar ? decode(D.exemplar) : null;
var DOUBTFUL = decode(D.doubtful);
var current = -1;  // the file last ringed or played: what "tag clip" tags
var ringed = -1;  // the file the ring is on

// Names and tags live in this browser under the result's identity, so that reopening the
// file (or another copy of the same result) keeps them; names from cluster_names come first.
var STORE = 'embclust-map:' + (D.result ? D.result.name + '@' + D.result.digest : document.title);
var kept = {};
try { kept = JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { kept = {}; }
var NAMES = Object.assign({}, D.names, kept.names || {});  // cluster id -> name ('' : removed)
var TAGS = Object.assign({}, kept.tags || {});  // file id -> tag
function persist() {
  try { localStorage.setItem(STORE, JSON.stringify({names: NAMES, tags: TAGS})); }
  catch (e) { status.textContent = 'names and tags cannot be kept in this browser (' + e.message + '): export them'; }
}
function clusterLabel(c) { return NAMES[c] ? c + ': ' + NAMES[c] : String(c); }

// Each cluster's files, by a counting sort over the cluster codes, built at the first use.
var starts = null, byCluster = null;
function clusterMembers(c) {
  if (!starts) {
    starts = new Int32Array(K + 2);
    for (var i = 0; i < NC; i++) starts[CL[i] + 1]++;
    for (var k = 1; k < K + 2; k++) starts[k] += starts[k - 1];
    var fill = starts.slice(0, K + 1);
    byCluster = new Int32Array(NC);
    for (i = 0; i < NC; i++) byCluster[fill[CL[i]]++] = i;
  }
  return byCluster.subarray(starts[c + 1], starts[c + 2]);
}

// The panel: ROWS holds the clusters shown, in the chosen order; only the rows in view
// are elements (ROW pixels each), so thousands of clusters cost what a screenful does.
var ROW = 22, ROWS = [], sortKey = 'size', sortDir = -1, chosen = -1;
var list = document.getElementById('rows'), spacer = document.getElementById('spacer');
var filterBox = document.getElementById('filter'), nameBox = document.getElementById('cluster-name');
var KEYS = {id: function (c) { return c; }, name: function (c) { return NAMES[c] || ''; },
            size: function (c) { return SIZE[c]; }, probability: function (c) { return MEDP[c]; },
            stability: function (c) { return MEDS ? MEDS[c] : 0; }};
function refreshPanel() {
  var t0 = performance.now(), q = filterBox.value.trim().toLowerCase(), key = KEYS[sortKey], out = [];
  for (var c = 0; c < K; c++) if (!q || (c + ' ' + (NAMES[c] || '')).toLowerCase().indexOf(q) >= 0) out.push(c);
  var keys = out.map(key);
  var at = out.map(function (c, k) { return k; });
  at.sort(function (a, b) {
    var x = keys[a], y = keys[b];
    if (sortKey === 'name') { if (!x !== !y) return x ? -1 : 1; }  // named clusters first, either way
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir || out[a] - out[b];
  });
  ROWS = at.map(function (k) { return out[k]; });
  spacer.style.height = ROWS.length * ROW + 'px';
  document.getElementById('panel-count').textContent = ROWS.length + ' of ' + K + ' clusters';
  document.querySelectorAll('#panel-head [data-key]').forEach(function (h) {
    h.dataset.sorted = h.dataset.key === sortKey ? (sortDir < 0 ? 'down' : 'up') : '';
  });
  renderRows();
  document.body.dataset.panelMs = (performance.now() - t0).toFixed(1);
}
function renderRows() {
  var first = Math.floor(list.scrollTop / ROW), last = Math.min(ROWS.length, first + Math.ceil(list.clientHeight / ROW) + 2);
  var made = [];
  for (var k = first; k < last; k++) {
    var c = ROWS[k], row = document.createElement('div');
    row.className = 'row' + (c === chosen ? ' chosen' : '');
    row.style.top = k * ROW + 'px';
    row.dataset.cluster = c;
    var cells = [String(c), NAMES[c] || '', String(SIZE[c]), MEDP[c].toFixed(2)];
    if (MEDS) cells.push(MEDS[c].toFixed(2));
    var swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = D.palette[c];
    row.appendChild(swatch);
    cells.forEach(function (text, j) {
      var cell = document.createElement('span');
      cell.className = 'cell c' + j;
      cell.textContent = text;
      cell.title = text;
      row.appendChild(cell);
    });
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'play';
    b.textContent = '\u25b6';
    b.title = 'play this cluster';
    row.appendChild(b);
    made.push(row);
  }
  spacer.replaceChildren.apply(spacer, made);
}
list.addEventListener('scroll', renderRows);
spacer.addEventListener('click', function (ev) {
  var row = ev.target.closest('.row');
  if (!row) return;
  var c = Number(row.dataset.cluster);
  if (ev.target.classList.contains('play')) playCluster(c); else choose(c, true);
  ev.target.blur();
});
document.querySelectorAll('#panel-head [data-key]').forEach(function (h) {
  h.addEventListener('click', function () {
    if (sortKey === h.dataset.key) sortDir = -sortDir;
    else { sortKey = h.dataset.key; sortDir = sortKey === 'id' || sortKey === 'name' ? 1 : -1; }
    refreshPanel();
  });
});
filterBox.addEventListener('input', refreshPanel);

// Choosing a cluster outlines its members, zooms to it and shows its name for editing.
function choose(c, zoom) {
  chosen = c;
  nameBox.value = NAMES[c] || '';
  nameBox.disabled = false;
  document.getElementById('chosen').textContent = 'cluster ' + c + ' (' + SIZE[c] + ' files)';
  var m = clusterMembers(c), hx = new Float32Array(m.length), hy = new Float32Array(m.length);
  for (var k = 0; k < m.length; k++) { hx[k] = X[m[k]]; hy[k] = Y[m[k]]; }
  var update = Plotly.restyle(gd, {x: [hx], y: [hy]}, [D.highlight]);
  if (zoom) {
    var dx = Math.max(BOX[1][c] - BOX[0][c], 1e-6) * 0.25, dy = Math.max(BOX[3][c] - BOX[2][c], 1e-6) * 0.25;
    update = update.then(function () {
      return Plotly.relayout(gd, {'xaxis.range': [BOX[0][c] - dx, BOX[1][c] + dx], 'yaxis.range': [BOX[2][c] - dy, BOX[3][c] + dy]});
    });
  }
  var k = ROWS.indexOf(c);
  if (k >= 0 && (k * ROW < list.scrollTop || (k + 1) * ROW > list.scrollTop + list.clientHeight)) list.scrollTop = k * ROW - list.clientHeight / 2;
  renderRows();
  return update;
}
nameBox.addEventListener('change', function () {
  if (chosen < 0) return;
  NAMES[chosen] = nameBox.value.replace(/[\r\n]+/g, ' ').trim();
  persist();
  refreshPanel();
  placeLabels();
  status.textContent = NAMES[chosen] ? 'cluster ' + chosen + ' named ' + NAMES[chosen] : 'cluster ' + chosen + ' has no name';
});
nameBox.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') nameBox.dispatchEvent(new Event('change')); });

// The listening queue: a cluster's files, exemplars first, then by membership probability,
// highest first (or lowest first, to find the doubtful ones, exemplars then not first).
var Q = null, lowestFirst = document.getElementById('lowest-first');
function clusterOrder(c) {
  var m = Array.from(clusterMembers(c)), low = lowestFirst.checked;
  m.sort(function (a, b) {
    return (EX && !low ? EX[b] - EX[a] : 0) || (low ? P[a] - P[b] : P[b] - P[a]) || a - b;
  });
  return m;
}
function playCluster(c) {
  choose(c, true);
  Q = {name: 'cluster ' + clusterLabel(c), cluster: c, order: clusterOrder(c), pos: 0};
  step(0);
}
function playDoubtful() {
  Q = {name: 'doubtful clips', cluster: -1, order: Array.from(DOUBTFUL), pos: 0};
  step(0);
}
function step(k) {
  if (!Q || !Q.order.length) { status.textContent = 'choose a cluster to play (its \u25b6 in the panel)'; return; }
  if (k < 0 || k >= Q.order.length) { status.textContent = Q.name + ': ' + (k < 0 ? 'first' : 'last') + ' clip'; return; }
  Q.pos = k;
  var i = Q.order[k], audio = link(i) !== '';
  ring(i);
  if (audio) play(i);
  var text = Q.name + ': clip ' + (k + 1) + ' of ' + Q.order.length + ', ' + ids[i] + ' (probability ' + P[i].toFixed(3)
    + (Q.cluster < 0 ? ', outlier score ' + O[i].toFixed(3) + ', cluster ' + clusterText(i) : '')
    + (EX && EX[i] ? ', exemplar' : '') + ')' + (audio ? ', playing' : ', no audio');
  status.textContent = text;
  document.getElementById('queue').textContent = text;
}
function nextCluster(d) {
  if (!ROWS.length) return;
  var k = Q && Q.cluster >= 0 ? ROWS.indexOf(Q.cluster) : chosen >= 0 ? ROWS.indexOf(chosen) : -1;
  k = k < 0 ? (d > 0 ? 0 : ROWS.length - 1) : Math.min(ROWS.length - 1, Math.max(0, k + d));
  playCluster(ROWS[k]);
}
lowestFirst.addEventListener('change', function () { if (Q && Q.cluster >= 0) playCluster(Q.cluster); lowestFirst.blur(); });
document.getElementById('doubtful').addEventListener('click', function (ev) { playDoubtful(); ev.target.blur(); });
// Keys, anywhere but in a text box: space play/pause, right/left the next/previous clip,
// down/up the next/previous cluster in the panel's order.
document.addEventListener('keydown', function (ev) {
  var t = ev.target.tagName;
  if (t === 'INPUT' || t === 'TEXTAREA' || t === 'SELECT' || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  var act = {' ': function () { if (!player.getAttribute('src')) return step(Q ? Q.pos : 0); if (player.paused) player.play(); else player.pause(); },
             ArrowRight: function () { step(Q ? Q.pos + 1 : 0); }, ArrowLeft: function () { step(Q ? Q.pos - 1 : 0); },
             ArrowDown: function () { nextCluster(1); }, ArrowUp: function () { nextCluster(-1); }}[ev.key];
  if (!act) return;
  ev.preventDefault();
  act();
});

// Tags: free text on the current clip or on the points of a lasso or box selection.
var tagBox = document.getElementById('tag'), selection = [];
function countTags() { document.getElementById('tag-count').textContent = Object.keys(TAGS).length + ' clips tagged'; }
function tag(files) {
  var text = tagBox.value.replace(/[\r\n]+/g, ' ').trim();
  files.forEach(function (i) { if (text) TAGS[ids[i]] = text; else delete TAGS[ids[i]]; });
  persist();
  countTags();
  status.textContent = (text ? 'tagged ' : 'untagged ') + (files.length === 1 ? ids[files[0]] : files.length + ' clips')
    + (text ? ' ' + text : '');
}
document.getElementById('tag-clip').addEventListener('click', function (ev) {
  ev.target.blur();
  if (current < 0) { status.textContent = 'play, find or click a clip first'; return; }
  tag([current]);
});
document.getElementById('tag-selection').addEventListener('click', function (ev) {
  ev.target.blur();
  if (!selection.length) { status.textContent = 'select points first (lasso or box, in the bar above the map)'; return; }
  tag(selection);
});

// Export: cluster_names.csv, with the result's identity on its first line (the workflow's
// cluster_names key checks it), and tags.csv, a labels file (id,tag) for the next run.
function csvField(s) { return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function download(name, text) {
  var a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}
document.getElementById('export').addEventListener('click', function (ev) {
  ev.target.blur();
  var named = Object.keys(NAMES).map(Number).filter(function (c) { return NAMES[c]; }).sort(function (a, b) { return a - b; });
  var lines = (D.result ? ['# embclust result: ' + D.result.name + ' input_ids_sha256=' + D.result.digest] : []).concat(
    ['cluster,name'], named.map(function (c) { return c + ',' + csvField(NAMES[c]); }));
  download('cluster_names.csv', lines.join('\n') + '\n');
  var tagged = Object.keys(TAGS).sort();
  download('tags.csv', ['id,tag'].concat(tagged.map(function (i) { return csvField(i) + ',' + csvField(TAGS[i]); })).join('\n') + '\n');
  status.textContent = 'exported ' + named.length + ' names and ' + tagged.length + ' tags';
});

// Labels on the map, as datamapplot places them: each cluster's name (or id) at its
// centre, the largest clusters first, each only where it overlaps none placed before;
// zooming in spreads the centres apart, so more of them fit.
var BY_SIZE = Array.from({length: K}, function (_, c) { return c; }).sort(function (a, b) { return SIZE[b] - SIZE[a] || a - b; });
var MAP_LABELS = 150, labelLayer = document.getElementById('labels'), showLabels = document.getElementById('show-labels');
function placeLabels() {
  var xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  if (!xa || !xa.l2p || !showLabels.checked) { labelLayer.replaceChildren(); return; }
  // The ringed clip's spot is kept free: a label over it would hide the ring.
  var boxes = ringed >= 0 ? [[xa.l2p(X[ringed]) - 14, ya.l2p(Y[ringed]) - 14, xa.l2p(X[ringed]) + 14, ya.l2p(Y[ringed]) + 14]] : [];
  var made = [];
  for (var k = 0; k < BY_SIZE.length && made.length < MAP_LABELS; k++) {
    var c = BY_SIZE[k], px = xa.l2p(CX[c]), py = ya.l2p(CY[c]);
    if (!(px >= 0 && py >= 0 && px <= xa._length && py <= ya._length)) continue;
    var text = NAMES[c] || String(c), big = k < 10, w = (big ? 7.5 : 6.5) * Math.min(text.length, 30) + 8, h = big ? 18 : 16;
    // At the centre, or else just above or below it (clear of the ring), or not at all.
    var box = null;
    for (var s = 0; s < 3 && !box; s++) {
      var cy = py + [0, -h - 6, h + 6][s], b = [px - w / 2, cy - h / 2, px + w / 2, cy + h / 2], free = true;
      for (var j = 0; j < boxes.length && free; j++) {
        var o = boxes[j];
        free = b[2] < o[0] || b[0] > o[2] || b[3] < o[1] || b[1] > o[3];
      }
      if (free) box = b;
    }
    if (!box) continue;
    boxes.push(box);
    var el = document.createElement('span');
    el.className = 'maplabel' + (big ? ' big' : '') + (NAMES[c] ? ' named' : '');
    el.textContent = text.length > 30 ? text.slice(0, 29) + '\u2026' : text;
    el.dataset.cluster = c;
    el.style.left = xa._offset + box[0] + 'px';
    el.style.top = ya._offset + box[1] + 'px';
    el.style.borderColor = D.palette[c];
    made.push(el);
  }
  labelLayer.replaceChildren.apply(labelLayer, made);
}
showLabels.addEventListener('change', placeLabels);
countTags();

Plotly.newPlot(gd, traces, FIG.layout, {displaylogo: false, responsive: true}).then(function () {
  gd.on('plotly_hover', function (ev) { var i = fileOf(ev.points[0]); if (i >= 0) show(i); });
  gd.on('plotly_unhover', hide);
  gd.on('plotly_relayout', function () { hide(); placeLabels(); });
  gd.on('plotly_click', function (ev) { var i = fileOf(ev.points[0]); if (i >= 0) play(i); });
  gd.on('plotly_selected', function (ev) {
    selection = ev && ev.points ? ev.points.map(fileOf).filter(function (i) { return i >= 0; }) : [];
    document.getElementById('selected').textContent = selection.length ? selection.length + ' selected' : '';
  });
  window.addEventListener('resize', placeLabels);
  refreshPanel();
  placeLabels();
  box.addEventListener('input', complete);
  box.addEventListener('change', search);
  box.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') search(); });
  if (UNSTABLE) listUnstable();
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
#least {{ font-size: 0.85em; margin: 0.2em 0; color: #444; }}
#least summary {{ cursor: pointer; }}
#unstable {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(15em, 1fr)); max-height: 30vh;
             overflow-y: auto; margin: 0.3em 0; padding: 0; list-style-position: inside; }}
#unstable li.current {{ font-weight: bold; }}
#main {{ display: flex; gap: 0.6em; align-items: stretch; }}
#frame {{ position: relative; flex: 1 1 auto; min-width: 0; }}
#map {{ height: 82vh; width: 100%; }}
#labels {{ position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; overflow: hidden; }}
.maplabel {{ position: absolute; font-size: 11px; line-height: 14px; padding: 0 3px; background: rgba(255,255,255,0.8);
             border: 1px solid; border-radius: 3px; white-space: pre; color: #222; }}
.maplabel.big {{ font-size: 12.5px; line-height: 16px; font-weight: bold; }}
.maplabel.named {{ font-style: italic; }}
#panel {{ flex: 0 0 25em; display: flex; flex-direction: column; font-size: 12px; height: 82vh; border-left: 1px solid #ccc;
          padding-left: 0.5em; }}
#panel input[type=text] {{ width: 100%; box-sizing: border-box; }}
#panel-head, .row {{ display: grid; grid-template-columns: 0.8em 3.2em 1fr 4em 3.2em {stability_col} 1.8em; gap: 0.3em;
                     align-items: center; }}
#panel-head span {{ cursor: pointer; font-weight: bold; user-select: none; }}
#panel-head span[data-sorted=down]::after {{ content: " \u25bc"; }}
#panel-head span[data-sorted=up]::after {{ content: " \u25b2"; }}
#rows {{ position: relative; flex: 1 1 auto; overflow-y: auto; min-height: 8em; border: 1px solid #ddd; }}
#spacer {{ position: relative; }}
.row {{ position: absolute; left: 0; right: 0; height: 22px; cursor: pointer; border-bottom: 1px solid #f0f0f0; }}
.row:hover {{ background: #f4f8ff; }}
.row.chosen {{ background: #e3eeff; font-weight: bold; }}
.row .cell {{ overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
.row .c2, .row .c3, .row .c4 {{ text-align: right; }}
.row .play {{ padding: 0 2px; font-size: 10px; }}
.swatch {{ width: 0.8em; height: 0.8em; border-radius: 50%; display: inline-block; }}
#panel fieldset {{ border: 1px solid #ddd; margin: 0.3em 0 0 0; padding: 0.2em 0.4em; }}
#queue {{ color: #333; min-height: 2.6em; }}
kbd {{ border: 1px solid #aaa; border-radius: 2px; padding: 0 2px; font-size: 0.9em; }}
#tip {{ position: absolute; z-index: 10; pointer-events: none; background: #fff; border: 1px solid #888;
        border-radius: 3px; padding: 4px 6px; font-size: 13px; line-height: 1.35; white-space: pre; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div id="controls">
<label>find id <input id="search" list="ids" size="24" placeholder="type an id, press Enter"></label>
{next}<audio id="player" controls preload="none"></audio>
<span id="status"></span>
</div>
<p id="help">{help}</p>
{sampled}{unstable}<datalist id="ids"></datalist>
<div id="main">
<div id="frame"><div id="map"></div><div id="labels"></div><div id="tip" hidden></div></div>
<div id="panel">
<input id="filter" type="text" placeholder="filter clusters: type an id or a name" autocomplete="off">
<div id="panel-count"></div>
<div id="panel-head"><i></i><span data-key="id">id</span><span data-key="name">name</span><span data-key="size">size</span>
<span data-key="probability" title="median membership probability">prob.</span>{stability_head}<i></i></div>
<div id="rows"><div id="spacer"></div></div>
<fieldset><legend>listen</legend>
<button id="doubtful" type="button">play doubtful clips</button>
<label><input id="lowest-first" type="checkbox"> lowest probability first</label>
<div id="queue">Click a cluster to zoom to it, its \u25b6 to play it.</div>
<div><kbd>space</kbd> play/pause, <kbd>\u2192</kbd> <kbd>\u2190</kbd> next/previous clip,
<kbd>\u2193</kbd> <kbd>\u2191</kbd> next/previous cluster</div>
</fieldset>
<fieldset><legend>name and tag</legend>
<div id="chosen">no cluster chosen</div>
<input id="cluster-name" type="text" placeholder="name the chosen cluster, press Enter" disabled autocomplete="off">
<input id="tag" type="text" placeholder="tag, e.g. wrong speaker (empty: remove)" autocomplete="off">
<button id="tag-clip" type="button">tag clip</button> <button id="tag-selection" type="button">tag selection</button>
<span id="selected"></span> <span id="tag-count"></span><br>
<label><input id="show-labels" type="checkbox" checked> labels on the map</label>
<button id="export" type="button">Export</button>
</fieldset>
</div>
</div>
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
        + " The panel lists every cluster: sort by a column, filter by typing, click one to zoom to it, its \u25b6 to"
        " listen to it (exemplars first, then by membership probability). Names and tags are kept in this browser;"
        " Export saves cluster_names.csv (the config key cluster_names) and tags.csv (a labels file)."
    )
    unstable = next_button = ""
    if data["stability"]:
        stability = decode(data["stability"])
        listed = stability[decode(data["unstable"])]
        help_text += (
            f" Colour by stability (the menu) to see how consistently each file lands with the same files across the"
            f" sweep's results (1: always the same company; the least stable are drawn on top), and listen to the"
            f" least stable first: {int((stability < 0.5).sum())} of {data['n_clustered']} files are below 0.5.")
        next_button = '<button id="next-unstable" type="button">next least stable file</button>\n'
        unstable = (f'<details id="least"><summary>the {len(listed)} least stable files (stability {listed.min():.3f}'
                    f' to {listed.max():.3f}): click one to find and play it</summary><ol id="unstable"></ol>'
                    "</details>\n")
    sampled = ""
    if n_drawn < n:
        sampled = (f'<p id="sampled">Too many files to draw each one: {n_drawn} of {n} are drawn (a random sample, '
                   f"with at least {SAMPLE_PER_CLUSTER} of every cluster), over a grey density of all {n}. "
                   "Find id searches all of them and rings any file, drawn or not.</p>\n")
    return PAGE.format(
        title=html.escape(title), help=html.escape(help_text), sampled=sampled, unstable=unstable, next=next_button,
        stability_col="3.2em" if data["clusters"]["stability"] else "",
        stability_head='<span data-key="stability" title="median stability across the sweep">stab.</span>'
        if data["clusters"]["stability"] else "",
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
    stability, title = None, describe(snakemake.params.settings)
    if snakemake.input.get("stability"):
        # The selected result's map (best/): each file's stability across the sweep.
        stability = read_stability(snakemake.input.stability, ids)
        title += f"\nselected from {snakemake.params.selected_from} results of a sweep (best/), with each file's stability"
        log.info(f"stability of {len(ids)} files: {int((stability < 0.5).sum())} below 0.5")
    labels = clusters["labels"]
    names = cluster_names.load(snakemake.input.get("names"), snakemake.params.result, ids, int(labels.max(initial=-1)) + 1)
    if names is not None:
        log.info(f"{len(names)} clusters named ({snakemake.input.names})")
    # HDBSCAN's exemplars, played first in a cluster's queue; spectral clustering has none.
    hdbscan = "condensed_tree" in clusters.files and clusters["condensed_tree"].size and labels.max(initial=-1) >= 0
    exemplars = exemplar_files(clusters["condensed_tree"], labels) if hdbscan else None
    fig, data = build(layout, labels, clusters["probabilities"], clusters["outlier_scores"],
                      ids, columns, table,
                      (audio_prefix(audio["dir"], snakemake.output.map), clips) if clips else None, new=new,
                      stability=stability, exemplars=exemplars, names=names, result=snakemake.params.result)
    if data["drawn"]:
        log.info(f"{len(ids)} files: the map draws a sample of {int(decode(data['drawn']).sum())} over a density")
    text = page(fig, data, title, columns)
    with open(snakemake.output.map, "w", encoding="utf-8") as f:
        f.write(text)


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
