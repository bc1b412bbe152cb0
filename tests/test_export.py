"""The export stage: soft memberships against hdbscan's own, the top-k format, streaming."""

import json

import export
import numpy as np
import pytest
from export import SoftMemberships, selected_clusters, soft_entries, soft_format, top_clusters, write_json_array


def clusters_of_many_sizes(n, centres, width, seed):
    """Blobs of unequal spread and size plus 5% uniform noise: a deep condensed tree."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-20, 20, size=(centres, width))
    truth = rng.choice(centres, n, p=(w := 1 / np.arange(1, centres + 1)) / w.sum())
    x = means[truth] + rng.normal(0, 1, size=(n, width)) * rng.uniform(0.3, 2.5, centres)[truth][:, None]
    noise = rng.random(n) < 0.05
    x[noise] = rng.uniform(-25, 25, size=(noise.sum(), width))
    return x


@pytest.mark.parametrize("n, centres, width, product_rows", [(1500, 6, 10, 256), (3000, 120, 6, 256), (3000, 120, 6, 70)])
def test_soft_memberships_equal_hdbscans(n, centres, width, product_rows, monkeypatch):
    """On the tree hdbscan built itself, the same numbers as its
    all_points_membership_vectors, to 1e-6, with exemplars that are exact duplicates
    (distance 0, which hdbscan treats apart) included; noise points (about 5%) too. The
    last case cuts the distances into products of 70 points against runs of a few
    clusters each."""
    import hdbscan

    monkeypatch.setattr(export, "PRODUCT_ROWS", product_rows)
    monkeypatch.setattr(export, "PRODUCT_ELEMENTS", product_rows * (64 if product_rows < 256 else 512))

    x = clusters_of_many_sizes(n, centres, width, seed=centres)
    x[1] = x[0]  # an exact duplicate pair
    library = hdbscan.HDBSCAN(min_cluster_size=5, approx_min_span_tree=False, prediction_data=True).fit(x)
    n_clusters = library.labels_.max() + 1
    assert n_clusters >= min(centres, 6) and (centres < 100 or n_clusters >= 50)
    tree = library.condensed_tree_._raw_tree
    ours = SoftMemberships(x, tree, selected_clusters(tree, library.labels_))
    blocks = list(ours.blocks())
    soft = np.vstack([m for _, m, _ in blocks])
    np.testing.assert_allclose(soft, hdbscan.all_points_membership_vectors(library), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.concatenate([p for _, _, p in blocks]), soft.sum(axis=1), atol=1e-12)
    np.testing.assert_array_equal(np.concatenate([r for r, _, _ in blocks]), np.arange(len(x)))
    assert (library.labels_ < 0).sum() > n // 50  # noise points
    if product_rows < 256:
        assert len(ours.runs) > 5 and len({c for _, c, _, _ in ours.runs}) > 1


def test_one_cluster_and_points_on_exemplars_equal_hdbscans():
    """A single selected cluster (hdbscan's allow_single_cluster), and points placed
    exactly on exemplars (their distance part is all in the clusters they sit on):
    hdbscan's numbers to 1e-6, as are the exemplar distances the assign stage uses."""
    import hdbscan

    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(0, 1, size=(400, 3)), rng.uniform(-8, 8, size=(40, 3))]
    for single, clusters in ((True, 1), (False, 3)):
        library = hdbscan.HDBSCAN(min_cluster_size=5, prediction_data=True, allow_single_cluster=single).fit(x)
        assert library.labels_.max() + 1 == clusters and (library.labels_ < 0).sum() > 20
        tree = library.condensed_tree_._raw_tree
        ours = SoftMemberships(x, tree, selected_clusters(tree, library.labels_))
        on_exemplars = [np.flatnonzero((x == e).all(axis=1))[0] for e in ours.exemplars[:5]]
        assert np.array_equal(ours.exemplar_distances(on_exemplars).min(axis=1), np.zeros(5))
        soft = np.vstack([m for _, m, _ in ours.blocks()])
        reference = hdbscan.all_points_membership_vectors(library).reshape(soft.shape)
        np.testing.assert_allclose(soft, reference, atol=1e-6, rtol=0)
        exemplars = library.exemplars_
        d = np.stack([np.sqrt(((x[:, None, :] - e[None]) ** 2).sum(axis=2)).min(axis=1) for e in exemplars], axis=1)
        np.testing.assert_allclose(ours.exemplar_distances(np.arange(len(x))), d, atol=1e-9, rtol=0)


def test_blocks_bound_memory(monkeypatch):
    """Blocks hold about BLOCK_ELEMENTS memberships whatever the file count, and their
    products about PRODUCT_ELEMENTS (files x exemplars, whole clusters)."""
    import hdbscan

    x = clusters_of_many_sizes(1200, 40, 5, seed=1)
    library = hdbscan.HDBSCAN(min_cluster_size=5).fit(x)
    tree = library.condensed_tree_._raw_tree
    monkeypatch.setattr(export, "BLOCK_ELEMENTS", 5000)
    monkeypatch.setattr(export, "PRODUCT_ELEMENTS", 3000)
    monkeypatch.setattr(export, "PRODUCT_ROWS", 50)
    ours = SoftMemberships(x, tree, selected_clusters(tree, library.labels_))
    products = []
    monkeypatch.setattr(export.memberships_code(), "nearest_d2", lambda xe, *args: products.append(xe.shape))
    monkeypatch.setattr(export.memberships_code(), "memberships", lambda *args: None)
    sizes = [len(rows) for rows, _, _ in ours.blocks()]
    assert len(sizes) > 5 and max(sizes) * ours.n_clusters <= 5000
    widest = max(c for _, c, _, _ in ours.runs)
    assert len(products) > 2 * len(sizes) and max(r * (e - widest) for r, e in products) <= export.PRODUCT_ELEMENTS


def test_node_heights_on_a_hand_made_tree():
    """Root 10 splits at lambda 1 into 11 and 12; 12 splits at lambda 2 into 13 and 14.
    A point in 13 merges with 14 at 2, with 11 at 1, and sits inside 13 itself (NaN:
    hdbscan's merge_height takes the point's own lambda there)."""
    rows = [(10, 11, 1.0, 5), (10, 12, 1.0, 5), (12, 13, 2.0, 3), (12, 14, 2.0, 2)]
    rows += [(11, p, 1.5, 1) for p in range(5)] + [(13, p, 3.0, 1) for p in (5, 6, 7)] + [(14, p, 4.0, 1) for p in (8, 9)]
    tree = np.array(rows, dtype=[("parent", np.intp), ("child", np.intp), ("lambda_val", float), ("child_size", np.intp)])
    soft = SoftMemberships(np.arange(10.0)[:, None], tree, [11, 13, 14])
    nan = np.nan
    heights = soft.node_heights(soft.point_node[[5, 0, 8]])
    np.testing.assert_array_equal(heights, [[1.0, nan, 2.0], [nan, 1.0, 1.0], [1.0, 2.0, nan]])
    np.testing.assert_array_equal(soft._node_heights[soft.point_node[[5, 0, 8]]], heights)
    assert soft.tree.lowest_common_ancestor(np.array([3]), np.array([4])).tolist() == [2]


def test_soft_format_choice():
    assert soft_format("auto", export.DENSE_MAX_CLUSTERS) == ("dense", None)
    assert soft_format("auto", export.DENSE_MAX_CLUSTERS + 1) == ("top", export.TOP_K)
    assert soft_format("all", 5000) == ("dense", None)
    assert soft_format(3, 2) == ("top", 3)


def test_top_clusters_largest_first_ties_to_the_lower_id():
    m = np.array([[0.1, 0.5, 0.2, 0.5], [0.0, 0.0, 0.3, 0.0]])
    ids, values = top_clusters(m, 3)
    assert ids.tolist() == [[1, 3, 2], [2, 0, 1]]
    np.testing.assert_array_equal(values, [[0.5, 0.5, 0.2], [0.3, 0.0, 0.0]])
    assert top_clusters(m, 10)[0].shape == (2, 4)


def test_top_clusters_of_rounded_memberships_as_numpy_sorts_them():
    """The compiled selection against np.round and a full sort (value descending, then
    id): many values round to the same number, ties at the k-th place included."""
    rng = np.random.default_rng(5)
    m = rng.random((300, 40)) ** 8 / 20
    m[:, ::7] = 0.5
    m[::3] = np.round(m[::3], 3)
    for k in (1, 3, 10):
        ids, values = top_clusters(m, k, export.DECIMALS)
        rounded = np.round(m, export.DECIMALS)
        order = np.lexsort((np.broadcast_to(np.arange(40), m.shape), -rounded), axis=1)[:, :k]
        np.testing.assert_array_equal(ids, order)
        np.testing.assert_array_equal(values, np.take_along_axis(rounded, order, axis=1))


def test_entries_in_both_formats_stream_to_valid_json(tmp_path):
    ids, paths = ["a", "b", "c"], ["d/a.npy", "d/b.npy", "d/c.npy"]
    m = np.array([[0.7, 0.2, 0.05], [0.1, 0.1, 0.1], [0.0, 0.4, 0.5]])
    blocks = lambda: iter([(np.array([0, 1]), m[:2], m[:2].sum(1)), (np.array([2]), m[2:], m[2:].sum(1))])  # noqa: E731
    write_json_array(soft_entries(ids, paths, blocks(), "dense", None), tmp_path / "dense.json")
    dense = json.loads((tmp_path / "dense.json").read_text())
    assert dense[2] == {"id": "c", "path": "d/c.npy", "probabilities": [0.0, 0.4, 0.5]}
    write_json_array(soft_entries(ids, paths, blocks(), "top", 2), tmp_path / "top.json")
    top = json.loads((tmp_path / "top.json").read_text())
    assert top[0] == {"id": "a", "path": "d/a.npy", "top_clusters": [0, 1], "top_probabilities": [0.7, 0.2], "in_any_cluster": 0.95}
    assert [e["top_clusters"] for e in top] == [[0, 1], [0, 1], [2, 1]]
    assert len((tmp_path / "top.json").read_text().splitlines()) == 5  # one entry a line
    write_json_array(iter([]), tmp_path / "empty.json")
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def test_row_ranges_give_the_whole_jobs_numbers_and_bytes(monkeypatch, tmp_path):
    """Row ranges (export_shards) cut across blocks: each range computes the blocks
    that overlap it and keeps its rows, so the parts hold the whole job's numbers to the
    last bit, and their joined lines are the whole job's JSON byte for byte (an empty
    range, more ranges than rows in a block, included)."""
    import hdbscan
    from export import join_json_lines, rows_of_part, write_json_lines

    x = clusters_of_many_sizes(1000, 30, 5, seed=2)
    library = hdbscan.HDBSCAN(min_cluster_size=5).fit(x)
    tree = library.condensed_tree_._raw_tree
    monkeypatch.setattr(export, "BLOCK_ELEMENTS", 5000)
    monkeypatch.setattr(export, "PRODUCT_ELEMENTS", 2000)  # several products a block...
    monkeypatch.setattr(export, "PRODUCT_ROWS", 40)  # ...and of its rows
    soft = SoftMemberships(x, tree, selected_clusters(tree, library.labels_))
    assert 50 < soft.block_size() < 300  # ranges of 1000 // 7 rows start inside blocks
    whole = list(soft.blocks())
    ids, paths = [f"f{i:04d}" for i in range(len(x))], [f"d/f{i:04d}.npy" for i in range(len(x))]
    write_json_array(soft_entries(ids, paths, iter(whole), "top", 3), tmp_path / "whole.json")
    for n_parts in (7, 1001):
        assert rows_of_part((n_parts - 1, n_parts), len(x))[1] == len(x)
        parts = [list(soft.blocks(part=(i, n_parts))) for i in range(n_parts)]
        rows = np.concatenate([r for part in parts for r, _, _ in part])
        np.testing.assert_array_equal(rows, np.arange(len(x)))
        m = np.vstack([m for part in parts for _, m, _ in part])
        assert np.array_equal(m, np.vstack([m for _, m, _ in whole]))
        files = []
        for i, part in enumerate(parts):
            files.append(tmp_path / f"{i}-of-{n_parts}.jsonl")
            write_json_lines(soft_entries(ids, paths, iter(part), "top", 3), files[-1])
        join_json_lines(files, tmp_path / "joined.json")
        assert (tmp_path / "joined.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert rows_of_part((0, 1001), len(x)) == (0, 0)
    join_json_lines([tmp_path / "0-of-1001.jsonl"], tmp_path / "none.json")
    assert json.loads((tmp_path / "none.json").read_text()) == []
