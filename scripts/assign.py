"""Assign stage: new clips placed into an existing clustering, without re-clustering it.

The new files (assign_dir) were pooled as the result's own files were, by the
pool_assign jobs (scripts/pool.py, one per shard). Here they are

1. transformed with the result's fitted reduction, read from plain arrays
   (reducer.npz, allow_pickle=False): PCA as (x - mean) @ components_t; UMAP as
   umap's own transform places a new point before optimising it (place_umap);
   reduce=none leaves them as they are;
2. prepared for the metric as the clustered matrix was (cosine: L2-normalised);
3. assigned, every nearest-neighbour search exact (NearestTraining):
   - HDBSCAN, vectorised over the new clips, with hdbscan's definitions: label and
     membership strength as `approximate_predict`, outlier score as
     `approximate_predict_scores`, soft memberships as `membership_vector`. What it
     needs is plain arrays: the condensed tree and labels (clusters.npz), the
     clustered points' core distances (the neighbours stage's graph; hdbscan's
     prediction data takes the distance to the min_samples-th nearest point counting
     the point itself, column min_samples - 1) and the exemplars, found in the tree
     as export finds them (scripts/export.py's SoftMemberships, reused here).
   - spectral clustering: the neighbour vote its soft memberships use. A clustered
     file's vote is over itself and its SPECTRAL_NEIGHBOURS nearest files; a new
     clip's is over its SPECTRAL_NEIGHBOURS + 1 nearest clustered files, so a copy
     of a clustered file gets that file's own vote back. Its label is the most
     voted cluster (ties: the one of the nearest voter), its probability that
     cluster's share, its outlier score 1 - probability.
"""

import hashlib
import json

import numpy as np
from _stage import InputError, Progress, read_ids
from export import BLOCK_ELEMENTS, SoftMemberships, hard_entries, selected_clusters, soft_entries, soft_format, write_json_array

# Cells of training points for the exact search: about sqrt(N), at most this many.
MAX_CELLS = 4096
# Rounds of k-means that shape the cells (any cells give exact results; tighter ones prune more).
CELL_ROUNDS = 4
# Float64 numbers in one block of distances (about 64 MB).
DISTANCE_BLOCK = 8_000_000
# Candidates beyond k whose distances are recomputed exactly before the final order.
EXACT_EXTRA = 8


# ---- exact nearest clustered points ------------------------------------------------


def squared_distances(a, a_sq, b, b_sq):
    d2 = a @ b.T
    d2 *= -2
    d2 += a_sq[:, None]
    d2 += b_sq[None, :]
    return np.maximum(d2, 0, out=d2)


class NearestTraining:
    """The exact k nearest clustered points of new points: (distances, indices), nearest
    first (equal distances: lower index first), distances computed as
    sqrt(sum((q - x)**2)), like hdbscan's trees.

    The clustered points are grouped into cells (a few rounds of k-means from a seeded
    sample). Any point of a cell is at least |q - centre| - radius from q, so once a
    batch of new points has its k-th distance from the cells nearest to it, only the
    cells whose bound is below that need measuring; the rest are ruled out, not guessed.
    With clustered data a new point meets a few cells instead of all N points."""

    def __init__(self, x, seed=0):
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.sq = (self.x**2).sum(axis=1)
        n = len(self.x)
        rng = np.random.default_rng(seed)
        centres = self.x[np.sort(rng.choice(n, max(1, min(int(np.sqrt(n)), MAX_CELLS)), replace=False))]
        for _ in range(CELL_ROUNDS + 1):
            cell = self._nearest_centre(centres)
            order = np.argsort(cell, kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(cell[order]) != 0])
            sizes = np.diff(np.r_[starts, n])
            centres = np.add.reduceat(self.x[order], starts, axis=0) / sizes[:, None]
        # The last round's means are the centres; members are the last assignment.
        self.starts = np.r_[starts, n]
        member_cell = np.repeat(np.arange(len(centres)), sizes)
        self.centres = centres
        self.centre_sq = (centres**2).sum(axis=1)
        distance = np.sqrt(((self.x[order] - centres[member_cell]) ** 2).sum(axis=1))
        # Within each cell, members farthest from the centre first: the ones a bound
        # |q - centre| - |y - centre| cannot rule out are a prefix.
        outward = np.lexsort((-distance, member_cell))
        self.members, self.member_distance = order[outward], distance[outward]
        self.radius = self.member_distance[starts]
        # Bound on the rounding of the product form of distances, in distance units.
        self.slack = 1e-6 * (np.sqrt(self.sq.max()) + 1.0)

    def _nearest_centre(self, centres):
        centre_sq = (centres**2).sum(axis=1)
        rows = max(1, DISTANCE_BLOCK // len(centres))
        out = np.empty(len(self.x), dtype=np.int64)
        for start in range(0, len(self.x), rows):
            block = self.x[start : start + rows] @ centres.T
            block *= -2
            block += centre_sq
            out[start : start + rows] = block.argmin(axis=1)
        return out

    def cell_points(self, cells, beyond=None):
        """The members of `cells`; with `beyond`, only those at least that far from their centre."""
        parts = []
        for i, c in enumerate(cells):
            a, b = self.starts[c], self.starts[c + 1]
            if beyond is not None:
                b = a + int(np.searchsorted(-self.member_distance[a:b], -beyond[i], side="right"))
            parts.append(self.members[a:b])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def query(self, q, k, log=None):
        q = np.ascontiguousarray(q, dtype=np.float64)
        k = min(k, len(self.x))
        m = len(q)
        out_d, out_i = np.empty((m, k)), np.empty((m, k), dtype=np.int64)
        if m == 0:
            return out_d, out_i
        q_sq = (q**2).sum(axis=1)
        progress = Progress(log, m, "new clips searched") if log else None
        step = max(1, DISTANCE_BLOCK // len(self.centres))
        for chunk in range(0, m, step):
            rows = np.arange(chunk, min(chunk + step, m))
            to_centre = np.sqrt(squared_distances(q[rows], q_sq[rows], self.centres, self.centre_sq))
            first = to_centre.argmin(axis=1)
            by_cell = np.argsort(first, kind="stable")
            bounds = np.flatnonzero(np.r_[True, np.diff(first[by_cell]) != 0, True])
            for a, b in zip(bounds[:-1], bounds[1:]):
                group = by_cell[a:b]
                self._query_group(q, q_sq, rows[group], to_centre[group], first[group[0]], k, out_d, out_i)
                if progress:
                    progress.update(chunk + b)
        return out_d, out_i

    def _query_group(self, q, q_sq, rows, to_centre, home, k, out_d, out_i):
        """Rows whose nearest centre is `home`: first the cells nearest to home until
        they hold k points, which bound each row's k-th distance; then, in every other
        cell, the members that |q - centre| - |y - centre| does not put beyond it."""
        between = np.sqrt(np.maximum(self.centre_sq - 2 * self.centres @ self.centres[home] + self.centre_sq[home], 0))
        by_distance = np.argsort(between, kind="stable")
        sizes = np.diff(self.starts)[by_distance]
        first_cells = by_distance[: int(np.searchsorted(np.cumsum(sizes), k)) + 1]
        others = np.ones(len(self.centres), dtype=bool)
        others[first_cells] = False
        others = np.flatnonzero(others)
        near = self.cell_points(first_cells)
        # The group's k-th distances from its first cells, then the other cells' members
        # it cannot rule out, measured in batches of about DISTANCE_BLOCK numbers.
        d2_near = squared_distances(q[rows], q_sq[rows], self.x[near], self.sq[near])
        kth_all = np.sqrt(np.partition(d2_near, k - 1, axis=1)[:, k - 1])
        widest = (to_centre[:, others] - kth_all[:, None]).min(axis=0) - self.slack
        batch = max(1, DISTANCE_BLOCK // (len(near) + len(self.cell_points(others, widest))))
        for start in range(0, len(rows), batch):
            r = rows[start : start + batch]
            d2, kth = d2_near[start : start + batch], kth_all[start : start + batch]
            # A member y of cell c can be nearer than kth only if |y - c| >= |q - c| - kth.
            beyond = (to_centre[start : start + batch, others] - kth[:, None]).min(axis=0) - self.slack
            reachable = beyond <= self.radius[others]
            extra = self.cell_points(others[reachable], beyond[reachable])
            candidates_of = near
            if len(extra):
                candidates_of = np.concatenate([near, extra])
                d2 = np.hstack([d2, squared_distances(q[r], q_sq[r], self.x[extra], self.sq[extra])])
            keep = min(k + EXACT_EXTRA, len(candidates_of))
            if keep < len(candidates_of):
                candidates = np.argpartition(d2, keep - 1, axis=1)[:, :keep]
            else:
                candidates = np.tile(np.arange(len(candidates_of)), (len(r), 1))
            index = candidates_of[candidates]
            exact = np.sqrt(((q[r][:, None, :] - self.x[index]) ** 2).sum(axis=2))
            order = np.lexsort((index, exact), axis=1)[:, :k]
            out_d[r] = np.take_along_axis(exact, order, axis=1)
            out_i[r] = np.take_along_axis(index, order, axis=1)


# ---- the fitted reduction ----------------------------------------------------------

# A new row this close to a clustered one, relative to its norm, is a copy of it (float32
# rounding of the same row through a transform), placed on its point.
COPY_TOLERANCE = 1e-5


def place_umap(new, pooled, embedding, n_neighbors, metric, log=None):
    """New rows placed in a UMAP embedding as umap's own transform starts them: at the
    average of their n_neighbors nearest clustered rows' coordinates, weighted by
    umap's fuzzy membership strengths (umap's smooth_knn_dist and
    compute_membership_strengths, with transform's local connectivity 0); a row equal
    to a clustered one lands on its coordinates. umap's transform then moves the point
    for some epochs of its stochastic layout optimisation; that step needs the pickled
    model and is left out (a deterministic placement instead of a stochastic one).
    The neighbours are exact, where umap's transform searches approximately above 4,096
    clustered rows."""
    from neighbours import prepare
    from _stage import cache_compiled_code
    from umap.umap_ import compute_membership_strengths, smooth_knn_dist

    cache_compiled_code()

    search = NearestTraining(prepare(pooled, metric))
    distances, indices = search.query(prepare(new, metric), n_neighbors, log)
    # A copy of a clustered row, up to float32 rounding (a PCA transform of the copy
    # differs from the reduced row by about 1e-7 of its norm): within COPY_TOLERANCE of
    # the row's norm, it lands on that row, as an exact copy does.
    copy = distances[:, 0] <= COPY_TOLERANCE * (np.sqrt(search.sq[indices[:, 0]]) + 1e-30)
    if metric == "cosine":
        distances = distances**2 / 2  # umap's cosine distance, 1 - cos, from the unit vectors' distance
    distances = distances.astype(np.float32)
    k = indices.shape[1]
    connected = indices.copy()
    if metric == "cosine":  # umap's disconnection distance for cosine
        connected[distances >= 2] = -1
    sigmas, rhos = smooth_knn_dist(distances, float(k), local_connectivity=0.0)
    _, _, strengths, _ = compute_membership_strengths(connected, distances, sigmas, rhos, bipartite=True)
    weights = strengths.reshape(len(new), k)
    weights[connected < 0] = 0
    out = np.einsum("ij,ijk->ik", weights / weights.sum(axis=1, keepdims=True, dtype=np.float32), embedding[indices], dtype=np.float32)
    # init_graph_transform: a strength of exactly 1 (the same row) puts the point on that
    # clustered row, the lowest-numbered one if several.
    exact = weights == 1
    hit = exact.any(axis=1)
    if hit.any():
        lowest = np.where(exact[hit], indices[hit], np.iinfo(np.int64).max).min(axis=1)
        out[hit] = embedding[lowest]
    near = copy & ~hit
    out[near] = embedding[indices[near, 0]]
    # No neighbour within umap's disconnection distance (cosine only): umap would give NaN.
    lost = weights.sum(axis=1) == 0
    out[lost] = embedding[indices[lost, 0]]
    return out


def transform(new, fitted, pooled=None, embedding=None, log=None):
    """New pooled rows in the clustered space: the result's reduction applied to them."""
    method = str(fitted["method"]) if fitted is not None else "none"
    if method == "pca":
        return ((new - fitted["mean"]) @ fitted["components_t"]).astype(np.float32)
    if method == "umap":
        return place_umap(new, pooled, embedding, int(fitted["n_neighbors"]), str(fitted["metric"]), log)
    return np.asarray(new, dtype=np.float32)


# ---- assignment --------------------------------------------------------------------


class HdbscanAssigner:
    """hdbscan's approximate_predict, approximate_predict_scores and membership_vector for
    many new points at once, from the condensed tree, the labels, the clustered points
    (prepared for the metric) and their core distances as hdbscan's prediction data has
    them (distance to the min_samples-th nearest point, the point itself counted)."""

    def __init__(self, x, condensed_tree, labels, core_distances, min_samples):
        self.x = x
        self.core = core_distances
        self.min_samples = min_samples
        self.soft = SoftMemberships(x, condensed_tree, selected_clusters(condensed_tree, labels))
        tree = self.soft.tree
        parent = tree.parent
        # Every node's label (a selected cluster's, for it and all below it) and the
        # selected cluster it belongs to; nodes are numbered parents first.
        self.node_label = np.full(tree.n_nodes, -1)
        self.node_label[self.soft.clusters] = np.arange(self.soft.n_clusters)
        selected_of = np.full(tree.n_nodes, -1)
        selected_of[self.soft.clusters] = self.soft.clusters
        for node in range(1, tree.n_nodes):
            if self.node_label[node] < 0 and parent[node] >= 0:
                self.node_label[node] = self.node_label[parent[node]]
                selected_of[node] = selected_of[parent[node]]
        # prediction data's max_lambdas: the selected cluster's own highest lambda.
        self.cluster_max_lambda = np.where(selected_of >= 0, tree.max_lambda[np.maximum(selected_of, 0)], 0.0)
        # The lambda at which each node is born (its parent's split).
        self.birth = np.where(parent >= 0, tree.split_lambda[np.maximum(parent, 0)], np.inf)
        # approximate_predict_scores: the highest lambda anywhere below each node.
        self.subtree_max_lambda = tree.max_lambda.copy()
        for node in range(tree.n_nodes - 1, 0, -1):
            if parent[node] >= 0:
                self.subtree_max_lambda[parent[node]] = max(self.subtree_max_lambda[parent[node]], self.subtree_max_lambda[node])

    @property
    def n_neighbours(self):
        return 2 * self.min_samples

    def neighbour_and_lambda(self, distances, indices):
        """hdbscan's _find_neighbor_and_lambda for each row: (neighbour, lambda)."""
        own_core = distances[:, min(self.min_samples, distances.shape[1] - 1)]
        reach = np.maximum(np.maximum(self.core[indices], own_core[:, None]), distances)
        nearest = reach.argmin(axis=1)
        rows = np.arange(len(distances))
        shortest = reach[rows, nearest]
        with np.errstate(divide="ignore"):
            lam = np.where(shortest > 0, 1.0 / shortest, np.finfo(np.float64).max)
        return indices[rows, nearest], lam

    def predict(self, distances, indices):
        """(labels, probabilities, outlier scores, neighbour, lambda) of new points from
        their 2 x min_samples nearest clustered points."""
        neighbour, lam = self.neighbour_and_lambda(distances, indices)
        node = self.soft.point_node[neighbour]
        neighbour_lambda = self.soft.point_lambda[neighbour]
        # approximate_predict: from the neighbour's node, up while the node is born at
        # or above the new point's lambda.
        where = node.copy()
        climbing = np.flatnonzero(neighbour_lambda > lam)
        while len(climbing):
            at = where[climbing]
            up = (self.soft.tree.parent[at] >= 0) & (self.birth[at] >= lam[climbing])
            climbing = climbing[up]
            where[climbing] = self.soft.tree.parent[at[up]]
        labels = self.node_label[where]
        top = self.cluster_max_lambda[where]
        with np.errstate(divide="ignore", invalid="ignore"):
            probabilities = np.where(labels < 0, 0.0, np.where(top > 0, np.minimum(top, lam) / top, 1.0))
            # approximate_predict_scores: a point at distance 0 from a clustered one takes its lambda.
            own = np.where(distances.min(axis=1) == 0, neighbour_lambda, lam)
            peak = self.subtree_max_lambda[node]
            scores = np.where(peak > 0, (peak - own) / peak, 0.0)
        return labels, probabilities, scores, neighbour, lam

    def memberships(self, x, neighbour, lam):
        """(memberships rows x K, probability of being in any cluster): membership_vector."""
        soft, k = self.soft, self.soft.n_clusters
        node = soft.point_node[neighbour]
        lam = np.minimum(lam, soft.point_lambda[neighbour])  # the neighbour's lambda when lower
        nodes, inverse = np.unique(node, return_inverse=True)
        table = soft._node_heights
        heights = (table[nodes] if table is not None else soft.node_heights(nodes))[inverse]
        related = np.isnan(heights)
        rows = np.arange(len(x))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = soft.exemplar_distances(rows, x)
            r = np.where(d != 0, 1.0 / d, np.finfo(np.float64).max / k)
            r /= r.sum(axis=1, keepdims=True)
            # per_cluster_scores takes the point's lambda as float32.
            h = np.where(related, lam.astype(np.float32).astype(np.float64)[:, None], heights)
            peak = soft.tree.max_lambda[node][:, None]
            gap = peak - h
            score = peak / np.where(gap <= 0, 1e-8, gap)
            o = np.exp(score - np.nanmax(score, axis=1, keepdims=True))
            o /= o.sum(axis=1, keepdims=True)
            m = np.sqrt(r) * o**2
            m /= m.sum(axis=1, keepdims=True)
            h = np.where(related, lam[:, None], heights)
            top = h.argmax(axis=1)
            in_any = h[rows, top] / (np.maximum(lam, soft.tree.max_lambda[soft.clusters[top]]) + 1e-8)
        return m * in_any[:, None], in_any


def hdbscan_assign(x_train, x_new, clusters, graph, min_samples, log=None):
    """(labels, probabilities, outlier scores, soft blocks generator) for new points."""
    labels = clusters["labels"]
    n_new = len(x_new)
    if labels.max(initial=-1) < 0:
        # No clusters: hdbscan predicts noise, outlier score 1.
        blocks = iter([(np.arange(n_new), np.zeros((n_new, 0)), np.zeros(n_new))])
        return np.full(n_new, -1), np.zeros(n_new), np.ones(n_new), blocks
    core = graph["distances"][:, min_samples - 1]
    model = HdbscanAssigner(x_train, clusters["condensed_tree"], labels, core, min_samples)
    distances, indices = NearestTraining(x_train).query(x_new, model.n_neighbours, log)
    assigned, probabilities, scores, neighbour, lam = model.predict(distances, indices)

    def blocks():
        size = max(1, BLOCK_ELEMENTS // max(len(model.soft.exemplars), model.soft.n_clusters))
        for start in range(0, n_new, size):
            rows = np.arange(start, min(start + size, n_new))
            m, in_any = model.memberships(x_new[rows], neighbour[rows], lam[rows])
            yield rows, m, in_any

    return assigned, probabilities, scores, blocks()


def vote_assign(x_train, x_new, labels, neighbours):
    """The neighbour vote: each cluster's share among the `neighbours` nearest clustered
    points; label the most voted (ties: the nearest voter's)."""
    _, indices = NearestTraining(x_train).query(x_new, neighbours)
    votes = labels[indices]
    k = int(labels.max()) + 1
    rows = np.arange(len(x_new))
    soft = np.zeros((len(x_new), k))
    for column in votes.T:
        soft[rows, column] += 1
    soft /= votes.shape[1]
    leading = soft == soft.max(axis=1, keepdims=True)
    assigned = votes[rows, leading[rows[:, None], votes].argmax(axis=1)]
    probabilities = soft[rows, assigned]
    blocks = iter([(rows, soft, soft.sum(axis=1))])
    return assigned, probabilities, 1.0 - probabilities, blocks


# ---- "none of these": new clips outside every cluster's density ----------------------

# Clustered clips of one cluster whose core distances are measured (a seeded sample above this).
DENSITY_SAMPLE = 2000


def outside_clusters(train, new, labels, assigned, k, seed=0, log=None):
    """(outside, scores): which new clips lie outside the density of the cluster they were
    assigned, and an outlier score for each, from distances in a space where they mean
    what they say (the pooled space under UMAP, whose placement always lands a new clip
    among the clustered ones; the clustered space otherwise).

    A clip's reachability is hdbscan's mutual reachability to its nearest clustered clip:
    min over its k nearest clustered clips n of max(d(clip, n), core(n), core(clip)),
    a core distance being the distance to the k-th nearest clustered clip (a clustered
    clip counting itself). The clip is outside cluster C when that exceeds the largest
    core distance among C's clips (all of them, or a seeded sample of DENSITY_SAMPLE and
    the clip's own neighbours): it is sparser there than any clip C holds. A copy of a
    clustered clip has that clip's core distance, so it is never outside its cluster.
    The score is GLOSH's form, 1 - (C's smallest core distance) / reachability."""
    k = max(1, min(k, len(train)))
    search = NearestTraining(train)
    distances, indices = search.query(new, k, log)
    own_core = distances[:, k - 1]
    rng = np.random.default_rng(seed)
    receiving = np.unique(assigned[assigned >= 0])
    measured = [np.unique(indices)]
    for c in receiving:
        members = np.flatnonzero(labels == c)
        if len(members) > DENSITY_SAMPLE:
            members = np.sort(rng.choice(members, DENSITY_SAMPLE, replace=False))
        measured.append(members)
    measured = np.unique(np.concatenate(measured))
    core = np.full(len(train), np.nan)
    core[measured] = search.query(train[measured], k)[0][:, k - 1]
    reach = np.maximum(np.maximum(distances, core[indices]), own_core[:, None]).min(axis=1)
    outside, scores = np.zeros(len(new), dtype=bool), np.zeros(len(new))
    for c in receiving:
        cores = core[measured[labels[measured] == c]]
        rows = assigned == c
        # Relative slack: a copy's distances are its clip's, computed the same way.
        outside[rows] = reach[rows] > cores.max() * (1 + 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores[rows] = np.where(reach[rows] > 0, 1 - cores.min() / reach[rows], 0.0)
    return outside, np.clip(scores, 0.0, 1.0)


def zero_soft(blocks, rows_out):
    """Soft-membership blocks with the rows of clips in no cluster set to zero."""
    for rows, m, in_any in blocks:
        out = rows_out[rows]
        if out.any():
            m, in_any = m.copy(), np.asarray(in_any, dtype=np.float64).copy()
            m[out] = 0
            in_any[out] = 0
        yield rows, m, in_any


# ---- reading the new clips ---------------------------------------------------------


def read_new(matrix_paths, ids_paths, width, fit, keep_pooled=False, refuse_zero=False):
    """(ids, paths, rows) of the new clips in sorted-id order, each shard's rows passed
    through fit(rows) (the reduction) as they are read, and with keep_pooled, their
    pooled rows too. Flattened shards are cut or zero-padded to the clustered width:
    the frames the result's pooling kept. refuse_zero (cosine): all-zero pooled rows, which
    have no cosine direction, are refused, their files named, before any reduction."""
    ids, paths, blocks, pooled, zero = [], [], [], [], []
    for matrix_path, ids_path in zip(matrix_paths, ids_paths):
        shard_ids, shard_paths = read_ids(ids_path)
        rows = np.load(matrix_path, allow_pickle=False)
        if rows.shape[1] != width:
            cut = np.zeros((len(rows), width), dtype=rows.dtype)
            cut[:, : min(width, rows.shape[1])] = rows[:, :width]
            rows = cut
        ids += shard_ids
        paths += shard_paths
        if refuse_zero:
            zero += [shard_paths[i] for i in np.flatnonzero(~rows.any(axis=1))]
            if zero:
                continue
        blocks.append(fit(rows))
        if keep_pooled:
            pooled.append(rows)
    if zero:
        raise InputError(
            f"{len(zero)} new clips pool to all-zero vectors, which have no cosine direction: {shown(sorted(zero))}; "
            "remove them or assign to a euclidean result"
        )
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    out = [ids[i] for i in order], [paths[i] for i in order], np.concatenate(blocks)[order]
    return out + (np.concatenate(pooled)[order],) if keep_pooled else out


def shown(names, limit=3):
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def assign(snakemake, log):
    """Read the inputs, assign, write the JSONs; returns the provenance dict."""
    from cluster import SPECTRAL_NEIGHBOURS
    from neighbours import prepare

    params = snakemake.params
    clusterer, metric = params.clusterer, params.clusterer["metric"]
    matrix = np.load(snakemake.input.matrix, mmap_mode="r")
    fitted = np.load(snakemake.input.fitted, allow_pickle=False) if snakemake.input.get("fitted") else None
    pooled = np.load(snakemake.input.pooled, mmap_mode="r") if snakemake.input.get("pooled") else None
    if fitted is not None and str(fitted["method"]) == "pca":
        width = len(fitted["mean"])
    else:
        width = (pooled if pooled is not None else matrix).shape[1]
    umap_reduced = fitted is not None and str(fitted["method"]) == "umap"
    ids, paths, reduced, *new_pooled = read_new(
        snakemake.input.shards, snakemake.input.shard_ids, width, lambda rows: transform(rows, fitted, pooled, matrix, log),
        keep_pooled=umap_reduced, refuse_zero=metric == "cosine",
    )
    if not ids:
        raise InputError("no new clips to assign")
    clustered_ids, _ = read_ids(snakemake.input.ids)
    again = sorted(set(ids) & set(clustered_ids))
    if again:
        log.say(f"{len(again)} of {len(ids)} new clips have ids already in the clustering ({shown(again)}): assigned all the same")
    clusters = dict(np.load(snakemake.input.clusters, allow_pickle=False))
    x_train, x_new = prepare(matrix, metric), prepare(reduced, metric)
    log.info(f"assigning {len(ids)} clips to {params.result} ({len(x_train)} clustered files, {x_train.shape[1]} dims)")
    if clusterer["algorithm"] == "hdbscan":
        graph = dict(np.load(snakemake.input.graph, allow_pickle=False))
        labels, probabilities, scores, blocks = hdbscan_assign(x_train, x_new, clusters, graph, clusterer["min_samples"], log)
    else:
        labels, probabilities, scores, blocks = vote_assign(x_train, x_new, clusters["labels"], SPECTRAL_NEIGHBOURS + 1)
    # The outlier score is a share: hdbscan's formula can leave [0, 1] for a new point
    # denser than any clustered one; it is clipped, as the clustered files' never need.
    scores = np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)
    # "None of these" (outside_clusters): under UMAP, from the pooled space, as a UMAP
    # placement is always among the clustered clips; for spectral clustering, which has
    # no noise of its own, in the clustered space. HDBSCAN on PCA or no reduction needs
    # no more: its prediction already measures the clustered space, a linear one.
    if umap_reduced or clusterer["algorithm"] == "spectral":
        space = (prepare(pooled, metric), prepare(new_pooled[0], metric)) if umap_reduced else (x_train, x_new)
        k = clusterer["min_samples"] if clusterer["algorithm"] == "hdbscan" else SPECTRAL_NEIGHBOURS + 1
        outside, far = outside_clusters(*space, clusters["labels"], labels, k, log=log)
        outside &= labels >= 0
        if outside.any():
            labels, probabilities = np.where(outside, -1, labels), np.where(outside, 0.0, probabilities)
            scores = np.where(outside, np.maximum(scores, far), scores)
            blocks = zero_soft(blocks, outside)
            where = "pooled" if umap_reduced else "clustered"
            log.say(
                f"{int(outside.sum())} new clips are sparser in the {where} space than every clip of the cluster "
                f"they would join ({shown([ids[i] for i in np.flatnonzero(outside)])}): noise (-1)"
            )
    write_json_array(hard_entries(ids, paths, labels, probabilities, scores), snakemake.output.hard)
    # For the map's layer of new clips (scripts/map.py): their rows in the clustered space,
    # which each layout places them from (layout.place), and what the hover box shows.
    np.savez(snakemake.output.points, ids=np.array(ids, dtype=str), reduced=reduced.astype(np.float32), labels=labels,
             probabilities=probabilities.astype(np.float32), outlier_scores=scores.astype(np.float32))
    n_clusters = int(clusters["labels"].max(initial=-1)) + 1
    form, k = soft_format(params.soft_top_k, n_clusters)
    write_json_array(soft_entries(ids, paths, blocks, form, k), snakemake.output.soft)
    counts = np.bincount(labels + 1, minlength=n_clusters + 1)
    log.say(f"assigned {len(ids)} clips to {params.result}: {int(counts[0])} noise, {int((counts[1:] > 0).sum())} clusters received clips")
    return {
        "assigned_to": params.result,
        "via": params.via,
        "settings": params.settings,
        "assign_dir": params.assign_dir,
        "n_files": len(ids),
        "n_noise": int(counts[0]),
        "ids_already_clustered": len(again),
        "ids_already_clustered_first": again[:10],
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "method": METHODS[clusterer["algorithm"]],
        "reduction": REDUCTIONS[str(fitted["method"]) if fitted is not None else "none"],
    }


METHODS = {
    "hdbscan": "hdbscan.approximate_predict (label, probability), approximate_predict_scores (outlier_score), "
    "membership_vector (soft), on exact nearest neighbours; under UMAP, noise where the clip's mutual reachability "
    "in the pooled space exceeds every core distance of its cluster's clips",
    "spectral": "vote of the 11 nearest clustered files (label: most votes, ties to the nearest; probability: its "
    "share); noise where the clip's mutual reachability (11 neighbours) exceeds every core distance of its cluster's clips",
}
REDUCTIONS = {
    "none": "none",
    "pca": "the result's PCA: (x - mean) @ components",
    "umap": "umap transform's initial placement: membership-weighted mean of the 15 nearest clustered files' coordinates",
}


def main(snakemake, log):
    provenance = assign(snakemake, log)
    with open(snakemake.output.provenance, "w") as f:
        json.dump(provenance, f, indent=1, allow_nan=False)
        f.write("\n")


if "snakemake" in globals():
    from _stage import run

    run(snakemake, main)  # noqa: F821
