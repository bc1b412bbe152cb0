"""The per-row loops behind export.py's soft memberships, compiled by numba.

They live in a module of their own because snakemake runs export.py from a fresh copy
each job, and numba's cache (cache=True) is keyed to the source file: imported from here,
a job loads the compiled code instead of compiling it again (a few seconds).

Every loop runs one row at a time in a fixed order, single-threaded, so the numbers do
not depend on the number of threads. (The BLAS products before them might depend on a
block's other rows: that is why blocks start at the same rows whatever the row range,
export.SoftMemberships.blocks.)
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


@numba.njit(cache=True, error_model="numpy", inline="always")
def _weigh(w, inverse, start, stop, f):
    """w[p] = f * inverse[p] for p in start..stop-1; returns their sum (four running
    sums, in a fixed order)."""
    s0 = s1 = s2 = s3 = 0.0
    p = start
    while p + 4 <= stop:
        w[p], w[p + 1], w[p + 2], w[p + 3] = f * inverse[p], f * inverse[p + 1], f * inverse[p + 2], f * inverse[p + 3]
        s0 += w[p]
        s1 += w[p + 1]
        s2 += w[p + 2]
        s3 += w[p + 3]
        p += 4
    while p < stop:
        w[p] = f * inverse[p]
        s0 += w[p]
        p += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, error_model="numpy")
def lower_neighbours(heights):
    """(lower_before, lower_after): for each q, the nearest q' < q (-1 if none) and q' > q
    (len(heights) if none) with heights[q'] < heights[q]."""
    n = len(heights)
    before, after = np.full(n, -1, dtype=np.int64), np.full(n, n, dtype=np.int64)
    stack, top = np.empty(n, dtype=np.int64), 0
    for q in range(n):
        while top > 0 and heights[stack[top - 1]] >= heights[q]:
            top -= 1
        before[q] = stack[top - 1] if top > 0 else -1
        stack[top] = q
        top += 1
    top = 0
    for q in range(n - 1, -1, -1):
        while top > 0 and heights[stack[top - 1]] >= heights[q]:
            top -= 1
        after[q] = stack[top - 1] if top > 0 else n
        stack[top] = q
        top += 1
    return before, after


@numba.njit(cache=True, error_model="numpy")
def memberships(d2, column, label, related_lo, related_hi, start_left, start_right, neighbour_heights,
                lower_before, lower_after, max_lambda, lam, cluster_max_lambda, in_any):
    """hdbscan's membership vectors of a block of points from their squared distances to
    each cluster's nearest exemplar, d2[i, column[p]] for the cluster at depth-first
    position p, which the memberships overwrite in label order (d2[i, label[p]]); also
    in_any[i].
    export.SoftMemberships.block says what is computed.

    Point i's related clusters (containing its tree node or inside it) are positions
    related_lo[i]..related_hi[i]-1; walking away from them, the merge height h with each
    further cluster is a running minimum over neighbour_heights, started at start_left[i]
    (leftwards) and start_right[i] (rightwards). It changes only where the walk passes a
    shallower split (at most the tree's depth times): the walk jumps from one change to
    the next (lower_neighbours), computes the tree factor exp(exp(-max_lambda / h)) once
    for each stretch, and weighs the stretch's clusters in one plain loop."""
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
        # Related clusters: the merge height is the point's own lambda.
        total = _weigh(w, inverse, lo, hi, np.exp(np.exp(-(ml / lam_i))))
        first_related = k
        for p in range(lo, hi):
            first_related = min(first_related, label[p])
        # Leftwards from lo - 1 the merge height starts at start_left and drops to
        # neighbour_heights[q] at each q with a lower value than all between it and lo - 1:
        # stretches of equal height found by jumping along lower_before. The first
        # stretch holds the highest height (the top: its first cluster in label order).
        top_h, top = -np.inf, 0
        if lo > 0:
            h, q = start_left[i], lo - 2
            while q >= 0 and neighbour_heights[q] >= h:
                q = lower_before[q]
            top_h, top = h, k
            for p in range(q + 1, lo):
                top = min(top, label[p])
            end = lo
            while True:
                total += _weigh(w, inverse, q + 1, end, np.exp(np.exp(-(ml / h))))
                if q < 0:
                    break
                h, end, q = neighbour_heights[q], q + 1, lower_before[q]
        # Rightwards from hi likewise: the height drops after each q with a lower value
        # than all between hi and it.
        if hi < k:
            h, q = start_right[i], hi
            while q < k - 1 and neighbour_heights[q] >= h:
                q = lower_after[q]
            first = k
            for p in range(hi, min(q + 1, k)):
                first = min(first, label[p])
            if h > top_h or (h == top_h and first < top):
                top_h, top = h, first
            start = hi
            while True:
                total += _weigh(w, inverse, start, min(q + 1, k), np.exp(np.exp(-(ml / h))))
                if q >= k - 1:
                    break
                h, start, q = neighbour_heights[q], q + 1, lower_after[q]
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
