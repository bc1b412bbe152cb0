"""What each `auto` setting means for the files at hand (reduce, reduce_dim, pooling,
trim_padding, neighbour_search, export_shards), and the settings a file count cannot support.
"""

from configuration import ConfigError


# reduce: auto. UMAP separates the groups of the quality benchmark (bench/README.md,
# "Quality") far better than PCA, but costs minutes at 100,000 files and hours at a
# million, and on a few files its neighbour graph connects nearly everything: it is
# chosen from UMAP_AUTO_FILES[0] to UMAP_AUTO_FILES[1] files, PCA outside.
UMAP_AUTO_FILES = (200, 100_000)


# reduce_dim: auto, per reducer.
AUTO_DIM = {"umap": 10, "pca": 50}


def auto_reducer(n_files):
    """What reduce: auto means for n_files files."""
    low, high = UMAP_AUTO_FILES
    return "umap" if low <= n_files <= high else "pca"


def resolve_auto(combos, n_files, whisper_shaped=False):
    """The combinations with the auto settings made concrete for n_files files (the paths
    name what was used): reduce and reduce_dim by the file count; pooling and
    trim_padding by whether the files look like Whisper's padded outputs (whisper_shaped)
    and whether audio_dir is given."""
    out = []
    for s in combos:
        reduce = auto_reducer(n_files) if s["reduce"] == "auto" else s["reduce"]
        dim = AUTO_DIM.get(reduce, AUTO_DIM["pca"]) if s["reduce_dim"] == "auto" else s["reduce_dim"]
        s = dict(s, reduce=reduce, reduce_dim=dim)
        if s["pooling"] == "auto":
            s["pooling"] = AUTO_POOLING[whisper_shaped]
        if s["trim_padding"] == "auto":
            # Only Whisper's outputs are padded, and their padding is found in the frames,
            # wav or not: a wav's duration also counts the silence around the speech, which
            # pooled worse on the Whisper sets (bench/README.md, "Whisper").
            s["trim_padding"] = False
            s["detect_padding"] = whisper_shaped
        s.setdefault("detect_padding", False)
        out.append(s)
    return out


# pooling: auto. On the quality bench's Whisper sets (bench/README.md, "Whisper"), max
# pooling groups clips by what is said far better than mean pooling, with or without the
# padding trimmed; on the speaker-encoder and digit sets mean pooling does better.
AUTO_POOLING = {True: "max", False: "mean"}


def whisper_shaped(shard_files, header_problem, frames=1500):
    """Whether the files look like Whisper's padded outputs: the first file of every shard
    has `frames` frames (headers only; the same answer in every process, which reads the
    same manifests). Files of other lengths in such a set keep all their frames. A file
    whose header cannot be read counts as not Whisper's (the full check names it)."""
    firsts = [header_problem(rows[0].path) for rows in shard_files.values() if rows]
    return bool(firsts) and all(isinstance(h, tuple) and h[0] == frames for h in firsts)


# neighbour_search: auto searches exactly up to this many files (scripts/neighbours.py).
EXACT_SEARCH_MAX = 200_000


def approximate_search(setting, n_files):
    """Whether the neighbour graph is searched approximately (NN-descent)."""
    return setting == "approximate" or (setting == "auto" and n_files > EXACT_SEARCH_MAX)


def check_sizes(n_files, combos):
    """Refuse, before any job runs, settings that cannot work for n_files."""
    where = f"only {n_files} .npy files in '{combos[0]['embedding_dir']}'"
    for s in resolve_auto(combos, n_files):
        if s["algorithm"] == "hdbscan":
            if n_files < s["min_cluster_size"]:
                raise ConfigError(f"{where}, fewer than min_cluster_size={s['min_cluster_size']}")
            # Each file's core distance is to its min_samples-th neighbour: more files are needed.
            if s["min_samples"] is None and n_files <= s["min_cluster_size"]:
                raise ConfigError(
                    f"{where}, need more than min_cluster_size={s['min_cluster_size']} "
                    "(min_samples, which defaults to it, counts neighbours besides the file itself)"
                )
            if s["min_samples"] is not None and n_files <= s["min_samples"]:
                raise ConfigError(f"{where}, need more than min_samples={s['min_samples']}")
        if s["algorithm"] == "spectral":
            auto = s["n_clusters"] == "auto"
            k = 2 if auto else s["n_clusters"]
            if n_files <= k:
                raise ConfigError(f"{where}, need more than n_clusters={k}" + (" (the least auto picks)" if auto else ""))
        # A PCA reduce_dim above the file count or the pooled width is not refused: the
        # reduce stage keeps what PCA can give and says so (scripts/reduce.py).
        if s["reduce"] == "umap" and s["reduce_dim"] >= n_files - 1:
            raise ConfigError(f"{where}: UMAP needs reduce_dim below {n_files - 1}, not {s['reduce_dim']}")


# export_shards: the soft memberships as row-range jobs (workflow/rules/export.smk). Their
# cost is files x clusters, and the clusters grow with the files: at a million files and
# 20,000 clusters one job takes most of an hour. Their rows are independent, so
# export_block jobs compute row ranges and the export job joins them. auto gives each job
# at most this many files (1 job up to 100,000 files, 10 for a million, 100 for ten million).
EXPORT_FILES_PER_JOB = 100_000


def export_blocks(setting, n_files):
    """Names of the export_block jobs' row ranges, like '2-of-10'; [] for one job (the
    export job then computes the soft memberships itself)."""
    n = -(-n_files // EXPORT_FILES_PER_JOB) if setting == "auto" else setting
    return [f"{i}-of-{n}" for i in range(n)] if n > 1 else []
