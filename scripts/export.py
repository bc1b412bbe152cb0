"""Export stage: the cluster JSONs, one entry per input file in sorted-id order.

Two rules run it: `export` writes the soft memberships, `hard_json` the hard
assignments with the result's cluster names (scripts/names.py), so that naming a
cluster rewrites only the hard JSON.

HDBSCAN's soft memberships are computed here, block by block as the JSON is
written, so memory never grows with files x clusters. They follow the definition
of hdbscan's `all_points_membership_vectors` exactly (same numbers to 1e-6 in the
tests), vectorised: for a point x and selected cluster j,

    distance part  r_j = (1 / min distance from x to j's exemplars), normalised
    tree part      o_j = softmax_j exp(-max_lambda(x's tree node) / h_j), where h_j
                   is the lambda at which x's tree node and j merge in the
                   condensed tree (x's own lambda if one contains the other)
    membership     m_j = r_j o_j / sum_k r_k o_k  x  P(x in any cluster)

Exemplars are the points of each cluster's leaves at their leaves' highest
lambda, as in hdbscan's PredictionData. The distances' cross terms come from BLAS
products; the rest is one compiled pass per point over the clusters in depth-first
order (scripts/_memberships.py), where the merge heights are running minima that
change at most the tree's depth times.

With many clusters the full vector is too big to write (50k files x 2,000
clusters is 10^8 numbers), so above DENSE_MAX_CLUSTERS the soft JSON holds each
file's TOP_K best clusters, their memberships and the total over all clusters.
"""

import functools
import json
import shutil

import numpy as np
from _stage import Progress, read_ids

DECIMALS = 6  # probabilities are rounded so the JSON is stable and compact
# soft_top_k: auto writes every cluster's membership up to this many clusters...
DENSE_MAX_CLUSTERS = 50
# ...and above it each file's TOP_K largest.
TOP_K = 10
# Rows per block: keeps the block's files x clusters memberships near 32 MB.
BLOCK_ELEMENTS = 4_000_000
# One BLAS product of the distances: up to PRODUCT_ROWS files against about
# PRODUCT_ELEMENTS / PRODUCT_ROWS exemplars (1 MB, so that the minimum over each
# cluster's exemplars reads it from cache; narrower products run slower in BLAS).
PRODUCT_ROWS = 256
PRODUCT_ELEMENTS = 131_072
# The tree nodes x clusters table of merge heights (the assign stage's) is built whole
# up to this size (800 MB in float64; a million files in 5,000 clusters have about
# 10,000 nodes).
NODE_TABLE_ELEMENTS = 100_000_000
# Squared distances below this share of |x|^2 + |e|^2 are recomputed exactly.
EXACT_BELOW = 1e-6


# ---- hdbscan's soft memberships, vectorised -----------------------------------------


def memberships_code():
    """scripts/_memberships.py, imported when memberships are computed: it brings numba
    (a quarter of a second), which hard_json, plot.py and map.py, importing this module
    for other things, do without."""
    import _memberships

    return _memberships


class ClusterTree:
    """The cluster nodes of a condensed tree (hdbscan numbers them from N, the root,
    parents before children), with Euler-tour tables for lowest common ancestors."""

    def __init__(self, condensed_tree):
        tree = np.asarray(condensed_tree)
        self.n_points = int(tree["parent"].min())
        self.n_nodes = int(max(tree["parent"].max(), tree["child"][tree["child_size"] > 1].max(initial=0)) + 1 - self.n_points)
        clusters = tree[tree["child_size"] > 1]
        self.parent = np.full(self.n_nodes, -1)
        self.parent[clusters["child"] - self.n_points] = clusters["parent"] - self.n_points
        # Lambda at which a node splits into its two children (both children are
        # born at that lambda): hdbscan's merge height for points on either side.
        self.split_lambda = np.zeros(self.n_nodes)
        self.split_lambda[clusters["parent"] - self.n_points] = clusters["lambda_val"]
        # Highest lambda among a node's rows (points and child clusters): its max_lambda.
        self.max_lambda = np.full(self.n_nodes, -np.inf)
        np.maximum.at(self.max_lambda, tree["parent"] - self.n_points, tree["lambda_val"])
        self.is_leaf = np.ones(self.n_nodes, dtype=bool)
        self.is_leaf[clusters["parent"] - self.n_points] = False
        self._euler_tour()

    def _euler_tour(self):
        children = [[] for _ in range(self.n_nodes)]
        for node in range(1, self.n_nodes):  # parents have lower numbers than children
            if self.parent[node] >= 0:
                children[self.parent[node]].append(node)
        depth = np.zeros(self.n_nodes, dtype=np.int64)
        tour, first, last = [], np.zeros(self.n_nodes, dtype=np.int64), np.zeros(self.n_nodes, dtype=np.int64)
        stack = [(0, 0)]  # (node, index of the next child to visit)
        while stack:
            node, i = stack.pop()
            if i == 0:
                first[node] = len(tour)
            tour.append(node)
            if i < len(children[node]):
                child = children[node][i]
                depth[child] = depth[node] + 1
                stack += [(node, i + 1), (child, 0)]
            else:
                last[node] = len(tour) - 1
        self.first, self.last, self.depth = first, last, depth
        self.tour = np.asarray(tour, dtype=np.int64)
        # Sparse table: levels[k][i] = the shallowest tour entry in tour[i : i + 2**k].
        levels = [np.arange(len(tour))]
        while 2 ** len(levels) <= len(tour):
            prev, half = levels[-1], 2 ** (len(levels) - 1)
            a, b = prev[: len(tour) - 2 * half + 1], prev[half : len(tour) - half + 1]
            levels.append(np.where(depth[self.tour[a]] <= depth[self.tour[b]], a, b))
        self.levels = levels

    def contains(self, ancestor, node):
        """Whether `ancestor` is `node` or above it (elementwise)."""
        return (self.first[ancestor] <= self.first[node]) & (self.last[node] <= self.last[ancestor])

    def lowest_common_ancestor(self, a, b):
        lo = np.minimum(self.first[a], self.first[b])
        hi = np.maximum(self.first[a], self.first[b])
        k = np.log2(hi - lo + 1).astype(np.int64)
        # Exact floor(log2) for any tour length (the float log2 can round up at powers of two).
        k -= (1 << k) > hi - lo + 1
        out = np.empty(np.broadcast(lo, hi).shape, dtype=np.int64)
        for level in np.unique(k):
            at = k == level
            table = self.levels[level]
            i, j = table[lo[at]], table[hi[at] - (1 << level) + 1]
            out[at] = self.tour[np.where(self.depth[self.tour[i]] <= self.depth[self.tour[j]], i, j)]
        return out

    def leaves_under(self, nodes):
        """For each leaf node: the index in `nodes` (disjoint subtrees) holding it, or -1."""
        leaves = np.flatnonzero(self.is_leaf)
        order = np.argsort(self.first[nodes])
        starts = self.first[nodes][order]
        slot = np.searchsorted(starts, self.first[leaves], side="right") - 1
        owner = np.where(slot >= 0, order[np.maximum(slot, 0)], -1)
        owner[(owner >= 0) & ~self.contains(nodes[np.maximum(owner, 0)], leaves)] = -1
        return leaves, owner


def exemplar_rows(tree, points, clusters):
    """(mask, cluster): which of the condensed tree's point rows are exemplars, and each
    row's selected cluster (its index in `clusters`, -1 for none). Exemplars are the
    points of each selected cluster's leaves at the leaf's highest lambda, as in
    hdbscan's PredictionData."""
    n = tree.n_points
    leaves, owner = tree.leaves_under(clusters)
    leaf_owner = np.full(tree.n_nodes, -1)
    leaf_owner[leaves] = owner
    at_peak = points["lambda_val"] == tree.max_lambda[points["parent"] - n]
    exemplar_cluster = leaf_owner[points["parent"] - n]
    return at_peak & (exemplar_cluster >= 0), exemplar_cluster


def exemplar_files(condensed_tree, labels):
    """A boolean mask over the files: HDBSCAN's exemplars of the clusters behind `labels`
    (the map plays them first)."""
    tree = np.asarray(condensed_tree)
    cluster_tree = ClusterTree(tree)
    clusters = np.sort(selected_clusters(tree, labels)) - cluster_tree.n_points
    points = tree[tree["child_size"] == 1]
    keep, _ = exemplar_rows(cluster_tree, points, clusters)
    out = np.zeros(len(labels), dtype=bool)
    out[points["child"][keep]] = True
    return out


class SoftMemberships:
    """hdbscan's all_points_membership_vectors, a block of points at a time.

    `x`: the points as clustered (prepared for the metric); `selected`: the
    condensed-tree numbers of the selected clusters, which become columns in
    increasing order (hdbscan's label order)."""

    def __init__(self, x, condensed_tree, selected):
        tree = np.asarray(condensed_tree)
        self.x = x
        self.tree = ClusterTree(tree)
        n = self.tree.n_points
        self.clusters = np.sort(np.asarray(selected, dtype=np.int64)) - n
        points = tree[tree["child_size"] == 1]
        self.point_node = np.zeros(len(x), dtype=np.int64)
        self.point_lambda = np.zeros(len(x))
        self.point_node[points["child"]] = points["parent"] - n
        self.point_lambda[points["child"]] = points["lambda_val"]
        keep, exemplar_cluster = exemplar_rows(self.tree, points, self.clusters)
        counts = np.bincount(exemplar_cluster[keep], minlength=len(self.clusters))
        if (counts == 0).any():
            raise RuntimeError(f"{int((counts == 0).sum())} selected clusters have no exemplars")
        self._depth_first_ranges()
        self._exemplar_runs(x[points["child"][keep]], self.position[exemplar_cluster[keep]])
        self.cluster_max_lambda = self.tree.max_lambda[self.clusters]

    def _exemplar_runs(self, exemplars, position):
        """Lay the exemplars (each with its cluster's depth-first position) out for
        _nearest_d2: in runs of clusters with the same number of exemplars c, each run
        about PRODUCT_ELEMENTS / PRODUCT_ROWS exemplars, slot by slot (the first exemplar
        of each cluster of the run, then the second...), so that the minimum over a
        cluster's exemplars is c - 1 vectorised passes over the run. self.runs: (first
        exemplar, c, number of clusters, first column); _nearest_d2 writes the clusters in
        this order, the cluster at depth-first position p in column self.column[p]."""
        order = np.argsort(position, kind="stable")
        exemplars, position = exemplars[order], position[order]
        counts = np.bincount(position, minlength=self.n_clusters)
        first = np.r_[0, np.cumsum(counts)[:-1]]  # each position's first exemplar
        width = max(1, PRODUCT_ELEMENTS // PRODUCT_ROWS)
        layout, self.runs, e0, column = [], [], 0, 0
        self.column = np.empty(self.n_clusters, dtype=np.int64)
        for c in np.unique(counts):
            positions = np.flatnonzero(counts == c)
            for run in np.array_split(positions, -(-len(positions) * c // width)):
                layout.append((first[run][None, :] + np.arange(c)[:, None]).ravel())
                self.runs.append((e0, int(c), len(run), column))
                self.column[run] = column + np.arange(len(run))
                e0 += len(run) * c
                column += len(run)
        self.exemplars = np.ascontiguousarray(exemplars[np.concatenate(layout)], dtype=np.float64)
        self.exemplar_sq = (self.exemplars**2).sum(axis=1)

    def _depth_first_ranges(self):
        """The tables behind node_heights and block. In depth-first order the clusters under any
        tree node are one contiguous range, and the merge height of a node with the
        clusters left (or right) of that range is a running minimum over the merge
        heights of neighbouring clusters: one pass over K per node, whatever the depth."""
        tree, clusters = self.tree, self.clusters
        order = np.argsort(tree.first[clusters], kind="stable")
        self.depth_first = order  # column (label) of the cluster at each depth-first position
        self.position = np.empty_like(order)
        self.position[order] = np.arange(len(order))
        firsts = tree.first[clusters[order]]
        # Every node's clusters inside it: depth-first positions lo..hi-1.
        self.lo = np.searchsorted(firsts, tree.first, side="left")
        self.hi = np.searchsorted(firsts, tree.last, side="right")
        # hdbscan selects clusters none of which contains another; then a node has at most
        # one selected cluster above it, and it is the one just before the node's range.
        above = np.full(tree.n_nodes, -1)
        is_selected = np.zeros(tree.n_nodes, dtype=bool)
        is_selected[clusters] = True
        for node in range(1, tree.n_nodes):  # parents have lower numbers than children
            p = tree.parent[node]
            if p >= 0:
                above[node] = p if is_selected[p] else above[p]
        if (above[clusters] >= 0).any():
            raise RuntimeError("a selected cluster lies inside another selected cluster")
        self.selected_above = above
        # Merge height of each pair of clusters neighbouring in depth-first order.
        a, b = clusters[order[:-1]], clusters[order[1:]]
        self.neighbour_heights = tree.split_lambda[tree.lowest_common_ancestor(a, b)] if len(a) else np.zeros(0)
        self.lower_before, self.lower_after = memberships_code().lower_neighbours(self.neighbour_heights)
        # Where each node's walk outwards starts (block): its related clusters are positions
        # related_lo..hi-1 (the selected cluster above it, if any, at lo-1), and its merge
        # heights with the clusters just outside them, left and right.
        k, nodes, by_position = len(clusters), np.arange(tree.n_nodes), clusters[order]
        self.related_lo = self.lo - (above >= 0)
        self.start_left = np.full(tree.n_nodes, np.nan)
        self.start_right = np.full(tree.n_nodes, np.nan)
        left, right = self.related_lo > 0, self.hi < k
        self.start_left[left] = tree.split_lambda[tree.lowest_common_ancestor(nodes[left], by_position[self.related_lo[left] - 1])]
        self.start_right[right] = tree.split_lambda[tree.lowest_common_ancestor(nodes[right], by_position[self.hi[right]])]

    @functools.cached_property
    def _node_heights(self):
        """Every node's heights at once when the table is small (one lookup per point
        after that); otherwise None, and each block's nodes are computed as they come."""
        if self.tree.n_nodes * self.n_clusters > NODE_TABLE_ELEMENTS:
            return None
        return self.node_heights(np.arange(self.tree.n_nodes))

    @property
    def n_clusters(self):
        return len(self.clusters)

    def block_size(self):
        return max(1, BLOCK_ELEMENTS // self.n_clusters)

    def _nearest_d2(self, x):
        """Squared distance from each point to each cluster's nearest exemplar, rows x K,
        the cluster at depth-first position p in column self.column[p]. The cross terms
        x.e come from one BLAS product per PRODUCT_ROWS points and run of clusters
        (_exemplar_runs); then _memberships takes each cluster's minimum."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        x_sq = (x**2).sum(axis=1)
        # |x|^2 + |e|^2 - 2 x.e cancels badly for near-equal points, and an exemplar's
        # distance to itself must be exactly 0 (hdbscan treats 0 apart): below this the
        # kernel recomputes the pair directly.
        limit = EXACT_BELOW * (x_sq + self.exemplar_sq.max())
        d2, kernels = np.empty((len(x), self.n_clusters)), memberships_code()
        for r in range(0, len(x), PRODUCT_ROWS):
            rows = slice(r, r + PRODUCT_ROWS)
            for e0, c, n, column in self.runs:
                xe = x[rows] @ self.exemplars[e0 : e0 + c * n].T
                kernels.nearest_d2(xe, x[rows], x_sq[rows], self.exemplars, self.exemplar_sq, e0, c, n, column, limit[rows], d2[rows])
        return d2

    def exemplar_distances(self, rows, x=None):
        """Distance from each point to its nearest exemplar of each cluster, rows x K;
        `x`: other points than the clustered ones (the assign stage's new clips)."""
        d2 = self._nearest_d2(self.x[rows] if x is None else x)
        d = np.empty_like(d2)
        d[:, self.depth_first] = np.sqrt(d2[:, self.column])
        return d

    def node_heights(self, nodes):
        """nodes x K: the lambda of the split that separates each tree node from each
        cluster, or NaN where one contains the other.

        In depth-first order, node v's own clusters are positions lo..hi-1. For a
        cluster at p < lo the split is the lowest common ancestor of clusters p..lo-1
        and v, the shallowest of the pairwise ancestors of neighbours along the way,
        which splits at the lowest lambda (lambdas only grow down the tree): a running
        minimum from lo-1 leftwards over neighbour_heights, started at v's merge height
        with cluster lo-1. Likewise rightwards from hi."""
        tree, k = self.tree, self.n_clusters
        lo, hi = self.lo[nodes], self.hi[nodes]
        # The selected cluster above a node contains it (NaN): it sits at lo-1.
        above = self.selected_above[nodes] >= 0
        clusters = self.clusters[self.depth_first]
        start_left = tree.split_lambda[tree.lowest_common_ancestor(nodes, clusters[np.maximum(lo - 1, 0)])]
        start_right = tree.split_lambda[tree.lowest_common_ancestor(nodes, clusters[np.minimum(hi, k - 1)])]
        # Leftwards: neighbour_heights[p] (between p and p+1) for p < lo-1, then the start;
        # rightwards: the start at hi, then neighbour_heights[p-1] for p > hi. Elsewhere inf.
        leftwards, rightwards = np.empty((len(nodes), k)), np.empty((len(nodes), k))
        leftwards[:, : k - 1] = self.neighbour_heights
        rightwards[:, 1:] = self.neighbour_heights
        for i, (first, stop) in enumerate(zip(lo.tolist(), hi.tolist())):
            leftwards[i, max(first - 1, 0) :] = np.inf
            if first > 0 and not above[i]:
                leftwards[i, first - 1] = start_left[i]
            rightwards[i, : stop + 1] = np.inf
            if stop < k:
                rightwards[i, stop] = start_right[i]
        heights = np.minimum.accumulate(rightwards, axis=1, out=rightwards)
        np.minimum(heights, np.minimum.accumulate(leftwards[:, ::-1], axis=1)[:, ::-1], out=heights)
        for i, (first, stop) in enumerate(zip(lo.tolist(), hi.tolist())):
            heights[i, first - bool(above[i]) : stop] = np.nan
        return heights[:, self.position]

    def block(self, rows):
        """(memberships rows x K, probability of being in any cluster per row).

        hdbscan's normalisations (of the distance part, of the tree part, of their
        product) cancel into one: m_j = (1/d_j) o_j / sum_k (1/d_k) o_k, with
        o_j = exp(exp(-max_lambda / h_j)) the unnormalised tree factor (h_j the merge
        height of the point's tree node and cluster j, the point's own lambda where one
        contains the other). A point at distance 0 from exemplars of z clusters gets 1/z
        of the distance part in each of them and none elsewhere (hdbscan's 1/d there is
        the largest float / K). One BLAS product gives the distances' cross terms; the
        rest is one compiled pass per point over the clusters (_memberships)."""
        node = self.point_node[rows]
        m, in_any = self._nearest_d2(self.x[rows]), np.empty(len(rows))
        memberships_code().memberships(
            m, self.column, self.depth_first, self.related_lo[node], self.hi[node], self.start_left[node], self.start_right[node],
            self.neighbour_heights, self.lower_before, self.lower_after, self.tree.max_lambda[node] + 1e-8, self.point_lambda[rows], self.cluster_max_lambda, in_any)
        return m, in_any

    def blocks(self, log=None, part=(0, 1)):
        """(rows, memberships, in_any) for consecutive blocks of the points of `part`
        (i, n), the i-th of n row ranges (rows_of_part). Blocks start at multiples of
        the block size whatever the range, and rows outside it are dropped: every row is
        computed in the same block, in the same BLAS call, as when the whole job computes
        all rows, so the numbers are the same to the last bit."""
        n, size = len(self.x), self.block_size()
        first, stop = rows_of_part(part, n)
        progress = Progress(log, stop - first, "soft memberships") if log else None
        for start in range(first // size * size, stop, size):
            rows = np.arange(start, min(start + size, n))
            m, in_any = self.block(rows)
            keep = (rows >= first) & (rows < stop)
            yield rows[keep], m[keep], in_any[keep]
            if progress:
                progress.update(min(start + size, stop) - first)


def rows_of_part(part, n):
    """(start, stop) of part (i, n_parts) of n rows: the i-th of n_parts near-equal ranges."""
    i, n_parts = part
    return i * n // n_parts, (i + 1) * n // n_parts


def selected_clusters(condensed_tree, labels):
    """The condensed-tree numbers of the clusters behind labels 0..K-1, found as
    hdbscan's CondensedTree._select_clusters finds them (which
    all_points_membership_vectors uses): for each label, the lowest-numbered tree
    node that one of its points falls out of."""
    points = condensed_tree[condensed_tree["child_size"] == 1]
    label = labels[points["child"]]
    clustered = label >= 0
    selected = np.full(int(labels.max(initial=-1)) + 1, np.iinfo(np.int64).max)
    np.minimum.at(selected, label[clustered], points["parent"][clustered].astype(np.int64))
    return selected.tolist()


def soft_blocks(x, clusters, log=None, part=(0, 1)):
    """(rows, memberships, in_any) blocks for a cluster stage result: HDBSCAN's from
    its condensed tree, spectral clustering's neighbour vote from the stored matrix.
    `part` (i, n): only the i-th of n row ranges (rows_of_part)."""
    labels = clusters["labels"]
    first, stop = rows_of_part(part, len(labels))
    if clusters.get("soft") is not None:  # spectral: rows sum to 1
        soft = clusters["soft"]
        size = max(1, BLOCK_ELEMENTS // max(1, soft.shape[1]))
        for start in range(first, stop, size):
            m = soft[start : min(start + size, stop)]
            yield np.arange(start, start + len(m)), m, m.sum(axis=1)
        return
    if labels.max(initial=-1) < 0:
        for start in range(first, stop, 65536):
            n = min(65536, stop - start)
            yield np.arange(start, start + n), np.zeros((n, 0)), np.zeros(n)
        return
    tree = clusters["condensed_tree"]
    yield from SoftMemberships(x, tree, selected_clusters(tree, labels)).blocks(log, part)


class PreparedRows:
    """The clustered matrix prepared for the metric (neighbours.prepare, row by row) as
    rows are read from it: a job holds its blocks' rows and the exemplars, not a float64
    copy of every file (80 bytes a dimension per file: 4 GB at 10M files in 50)."""

    def __init__(self, matrix, metric):
        self.matrix, self.metric = matrix, metric

    def __len__(self):
        return len(self.matrix)

    def __getitem__(self, rows):
        from neighbours import prepare

        return prepare(self.matrix[rows], self.metric)


# ---- the JSONs ----------------------------------------------------------------------


def top_clusters(m, k, decimals=None):
    """(cluster ids, memberships), each rows x min(k, K), largest first (ties: lower id),
    of m rounded to `decimals` as np.round rounds (one compiled pass over each row)."""
    k = min(k, m.shape[1])
    ids, values = np.zeros((len(m), k), dtype=np.int64), np.zeros((len(m), k))
    if k:
        memberships_code().top_clusters(np.ascontiguousarray(m, dtype=np.float64), k, 0.0 if decimals is None else 10.0**decimals, ids, values)
    return ids, values


def soft_format(setting, n_clusters):
    """('dense', None) or ('top', k) for the soft_top_k setting and a result's K."""
    if setting == "all" or (setting == "auto" and n_clusters <= DENSE_MAX_CLUSTERS):
        return "dense", None
    return "top", TOP_K if setting == "auto" else int(setting)


def soft_entries(ids, paths, blocks, form, k):
    """One soft JSON entry per file, generated block by block."""
    for rows, m, in_any in blocks:
        if form == "dense":
            for i, row in zip(rows, np.round(m, DECIMALS).tolist()):
                yield {"id": ids[i], "path": paths[i], "probabilities": row}
            continue
        top, values = top_clusters(m, k, DECIMALS)
        for i, c, v, p in zip(rows, top.tolist(), values.tolist(), np.round(in_any, DECIMALS).tolist()):
            yield {"id": ids[i], "path": paths[i], "top_clusters": c, "top_probabilities": v, "in_any_cluster": p}


def hard_entries(ids, paths, labels, probabilities, outlier_scores, names=None):
    """One entry per file; with cluster names (cluster_names), each entry's `cluster_name`
    (null for noise and for clusters without a name)."""
    for i, p, c, q, o in zip(ids, paths, labels.tolist(), np.round(probabilities, DECIMALS).tolist(), np.round(outlier_scores, DECIMALS).tolist()):
        entry = {"id": i, "path": p, "cluster": c, "probability": q, "outlier_score": o}
        if names is not None:
            entry["cluster_name"] = names.get(c)
        yield entry


def write_json_array(entries, path):
    """A JSON array with one entry per line (valid JSON that also diffs and greps
    well), written as the entries come, so memory does not grow with the file."""
    with open(path, "w") as f:
        first = True
        for entry in entries:
            f.write(("[\n" if first else ",\n") + json.dumps(entry))
            first = False
        f.write("[]\n" if first else "\n]\n")


def write_hard(snakemake, log):
    """clusters_hard.json, with the result's cluster names when cluster_names gives them."""
    import names as cluster_names

    ids, paths = read_ids(snakemake.input.ids)
    clusters = np.load(snakemake.input.clusters)
    labels = clusters["labels"]
    if len(ids) != len(labels):
        raise RuntimeError(f"{len(ids)} ids but {len(labels)} labels")
    names = cluster_names.load(snakemake.input.get("names"), snakemake.params.result, ids, int(labels.max(initial=-1)) + 1)
    write_json_array(hard_entries(ids, paths, labels, clusters["probabilities"], clusters["outlier_scores"], names),
                     snakemake.output.hard)
    log.info(f"wrote {len(ids)} entries" + (f", {len(names)} clusters named" if names is not None else ""))


def write_json_lines(entries, path):
    """The lines write_json_array writes between its brackets for these entries (an
    export_block job's share of the soft JSON); nothing for no entries."""
    with open(path, "w") as f:
        f.write(",\n".join(json.dumps(entry) for entry in entries))


def join_json_lines(parts, path):
    """The JSON array of the entries in `parts` (write_json_lines files, in row order):
    the bytes write_json_array writes for all their entries at once."""
    with open(path, "w") as out:
        first = True
        for part in parts:
            with open(part) as f:
                text = f.read(1)
                if not text:
                    continue
                out.write(("[\n" if first else ",\n") + text)
                shutil.copyfileobj(f, out, 2**24)
            first = False
        out.write("[]\n" if first else "\n]\n")


def soft_part(snakemake, log, ids, paths, clusters, part):
    """The soft JSON entries of row range `part` (i, n) of the clustered files."""
    labels = clusters["labels"]
    n_clusters = int(labels.max(initial=-1)) + 1
    form, k = soft_format(snakemake.params.soft_top_k, n_clusters)
    log.info(f"{len(ids)} files, {n_clusters} clusters: soft memberships " + ("of every cluster" if form == "dense" else f"of each file's top {k} clusters") + (f", row range {part[0] + 1} of {part[1]}" if part[1] > 1 else ""))
    x = PreparedRows(np.load(snakemake.input.matrix, mmap_mode="r"), snakemake.params.metric) if clusters.get("soft") is None else None
    return soft_entries(ids, paths, soft_blocks(x, clusters, log, part), form, k)


def main(snakemake, log):
    if snakemake.rule == "hard_json":
        return write_hard(snakemake, log)
    ids, paths = read_ids(snakemake.input.ids)
    clusters = dict(np.load(snakemake.input.clusters))
    labels = clusters["labels"]
    if len(ids) != len(labels):
        raise RuntimeError(f"{len(ids)} ids but {len(labels)} labels")
    if snakemake.rule == "export_block":  # one row range of the soft JSON
        i, n = map(int, snakemake.wildcards.block.split("-of-"))
        write_json_lines(soft_part(snakemake, log, ids, paths, clusters, (i, n)), snakemake.output.part)
        return
    if snakemake.input.blocks:  # export_shards > 1: the export_block jobs computed them
        join_json_lines(snakemake.input.blocks, snakemake.output.soft)
        log.info(f"joined {len(snakemake.input.blocks)} row ranges of soft memberships")
    else:
        write_json_array(soft_part(snakemake, log, ids, paths, clusters, (0, 1)), snakemake.output.soft)
    log.info(f"wrote the soft memberships of {len(ids)} files")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
