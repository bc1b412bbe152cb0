"""The per-row loops behind export.py's soft memberships, compiled by numba.

They live in a module of their own because snakemake runs export.py from a fresh copy
each job, and numba's cache (cache=True) is keyed to the source file: imported from here,
a job loads the compiled code instead of compiling it again (a few seconds).

Every loop runs one row at a time in a fixed order, single-threaded: a row's numbers do
not depend on the other rows of its block, nor on the number of threads.
"""

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def nearest_d2(xe, x, x_sq, exemplars, e_sq, e0, c, n, column, limit, out):
    """out[i, column + j]: the squared distance from point i to the nearest exemplar of
    cluster j of a run of n clusters with c exemplars each, laid out slot by slot (slot s
    of cluster j is exemplar e0 + s * n + j, so that each slot's minimum runs over
    consecutive numbers and vectorises), from xe[i, q - e0] = x_i . e_q:
    |x|^2 + min(|e|^2 - 2 x.e), recomputed directly below limit[i] (where it cancels
    badly, and so that a point on an exemplar gets exactly 0)."""
    best = np.empty(n)
    for i in range(out.shape[0]):
        row = xe[i]
        for j in range(n):
            best[j] = e_sq[e0 + j] - 2.0 * row[j]
        for s in range(1, c):
            # Slices and a plain select: the form numba's LLVM vectorises.
            slot, slot_sq = row[s * n : (s + 1) * n], e_sq[e0 + s * n : e0 + (s + 1) * n]
            for j in range(n):
                v = slot_sq[j] - 2.0 * slot[j]
                best[j] = v if v < best[j] else best[j]
        for j in range(n):
            d2 = x_sq[i] + best[j]
            if d2 < limit[i]:
                d2 = np.inf
                for s in range(c):
                    q = e0 + s * n + j
                    t2 = 0.0
                    for d in range(x.shape[1]):
                        t = x[i, d] - exemplars[q, d]
                        t2 += t * t
                    d2 = min(d2, t2)
            out[i, column + j] = max(d2, 0.0)


@numba.njit(cache=True, error_model="numpy")
def memberships(d2, column, label, related_lo, related_hi, start_left, start_right, neighbour_heights,
                max_lambda, lam, cluster_max_lambda, in_any):
    """hdbscan's membership vectors of a block of points from their squared distances to
    each cluster's nearest exemplar, d2[i, column[p]] for the cluster at depth-first
    position p, which the memberships overwrite in label order (d2[i, label[p]]); also
    in_any[i].
    export.SoftMemberships.block says what is computed.

    Point i's related clusters (containing its tree node or inside it) are positions
    related_lo[i]..related_hi[i]-1; walking away from them, the merge height h with each
    further cluster is a running minimum over neighbour_heights, started at start_left[i]
    (leftwards) and start_right[i] (rightwards). It changes only where the walk passes a
    shallower split (at most the tree's depth times), so the tree factor
    exp(exp(-max_lambda / h)) is recomputed only there."""
    k = d2.shape[1]
    inverse, w = np.empty(k), np.empty(k)
    for i in range(d2.shape[0]):
        row = d2[i]
        zeros = 0
        for p in range(k):
            inverse[p] = row[column[p]]
            zeros += inverse[p] == 0.0
        if zeros:
            # On exemplars (distance 0): the distance part is shared equally among the
            # clusters at distance 0, none elsewhere.
            for p in range(k):
                inverse[p] = 1.0 if inverse[p] == 0.0 else 0.0
        else:
            for p in range(k):  # apart, so that it vectorises
                inverse[p] = 1.0 / np.sqrt(inverse[p])
        ml, lam_i = max_lambda[i], lam[i]
        lo, hi = related_lo[i], related_hi[i]
        total = 0.0
        # Related clusters: the merge height is the point's own lambda.
        f = np.exp(np.exp(-(ml / lam_i)))
        first_related = k
        for p in range(lo, hi):
            first_related = min(first_related, label[p])
            w[p] = f * inverse[p]
            total += w[p]
        # The highest merge height among the other clusters is where each walk starts,
        # and stays so while the walk passes no lower split: the first cluster (label
        # order) of those is the top.
        top_h, top = -np.inf, 0
        if lo > 0:
            h = start_left[i]
            f = np.exp(np.exp(-(ml / h)))
            p, top_h, top = lo - 1, h, k
            while p >= 0 and (p == lo - 1 or neighbour_heights[p] >= h):
                top = min(top, label[p])
                w[p] = f * inverse[p]
                total += w[p]
                p -= 1
            last_h = h
            while p >= 0:
                h = min(h, neighbour_heights[p])
                if h != last_h:
                    last_h, f = h, np.exp(np.exp(-(ml / h)))
                w[p] = f * inverse[p]
                total += w[p]
                p -= 1
        if hi < k:
            h = start_right[i]
            f = np.exp(np.exp(-(ml / h)))
            p, first = hi, k
            while p < k and (p == hi or neighbour_heights[p - 1] >= h):
                first = min(first, label[p])
                w[p] = f * inverse[p]
                total += w[p]
                p += 1
            if h > top_h or (h == top_h and first < top):
                top_h, top = h, first
            last_h = h
            while p < k:
                h = min(h, neighbour_heights[p - 1])
                if h != last_h:
                    last_h, f = h, np.exp(np.exp(-(ml / h)))
                w[p] = f * inverse[p]
                total += w[p]
                p += 1
        # P(in any cluster): the highest merge height over all clusters, the point's own
        # lambda for the related ones (the first cluster if tied).
        if hi > lo and (lam_i > top_h or (lam_i == top_h and first_related < top)):
            best, height = first_related, lam_i
        else:
            best, height = top, top_h
        in_any[i] = height / max(cluster_max_lambda[best], lam_i)
        scale = in_any[i] / total
        for p in range(k):
            d2[i, label[p]] = w[p] * scale


@numba.njit(cache=True, error_model="numpy")
def top_clusters(m, k, scale, ids, values):
    """Each row's k largest of m (rounded as np.round does to 1/scale when scale > 0),
    largest first, ties to the lower column: ids and values, rows x k."""
    for i in range(m.shape[0]):
        n = 0
        for j in range(m.shape[1]):
            v = m[i, j]
            if n == k and v <= values[i, k - 1]:
                continue  # rounding keeps it at or below; a later column never beats an equal earlier one
            if scale > 0:
                v = np.rint(v * scale) / scale
                if n == k and v <= values[i, k - 1]:
                    continue
            at = min(n, k - 1)
            while at > 0 and values[i, at - 1] < v:
                values[i, at], ids[i, at] = values[i, at - 1], ids[i, at - 1]
                at -= 1
            values[i, at], ids[i, at] = v, j
            n = min(n + 1, k)
