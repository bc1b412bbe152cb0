# The soft memberships: distances to exemplars in the clustered space, the heavy part.
# export_shards > 1: each export_block job computes those of one row range (their cost is
# files x clusters); the export job joins the ranges into the soft JSON, byte for byte
# what it writes when it computes them itself.


rule export_block:
    input:
        clusters=CLUSTERS,
        ids=POOLED_IDS,
        # HDBSCAN's soft memberships are distances to exemplars in the clustered space.
        matrix=reduced_matrix,
        # export.py's compiled membership loops: a change there recomputes them.
        code=shared_code("_memberships"),
    output:
        part=temp(SOFT_BLOCK),
    log:
        log_path("export_block", "pooling", "reducer", "clusterer", "block"),
    conda:
        "../../environment.yml"
    # One thread: the rows split into jobs instead, and the JSON is written by one thread.
    threads: 1
    resources:
        mem_mb=lambda wc, input: export_mem_mb(input),
        runtime=lambda wc, input: export_runtime(input, len(EXPORT_BLOCKS)),
    params:
        metric=lambda wildcards: paths.parse_clusterer(wildcards.clusterer)["metric"],
        soft_top_k=config["soft_top_k"],
    script:
        "../../scripts/export.py"


rule export:
    input:
        clusters=CLUSTERS,
        ids=POOLED_IDS,
        matrix=reduced_matrix,
        blocks=soft_blocks,
        code=shared_code("_memberships"),
    output:
        soft=SOFT_JSON,
    log:
        log_path("export", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    # One thread: most of the job is writing the JSONs, which one thread does; at two, the
    # job held both cores of a 2-core machine, so a rerun ran it alone, after the others.
    threads: 1
    resources:
        # Joining row ranges, it reads them a chunk at a time.
        mem_mb=lambda wc, input: export_mem_mb(input, soft=not input.blocks),
        runtime=lambda wc, input: 10 + int(_mb(input.ids) / 10) if input.blocks else export_runtime(input, 1),
    params:
        metric=lambda wildcards: paths.parse_clusterer(wildcards.clusterer)["metric"],
        # A param, not part of the path: changing it rewrites only the soft JSON.
        soft_top_k=config["soft_top_k"],
    script:
        "../../scripts/export.py"


# The hard assignments, a job of its own: it carries the result's cluster names
# (cluster_names), so a new name rewrites this file, not the soft memberships.
rule hard_json:
    input:
        clusters=CLUSTERS,
        ids=POOLED_IDS,
        names=cluster_names_file,
        # names.py reads and checks the names: a change there rewrites the JSON.
        code=shared_code("names"),
    output:
        hard=HARD_JSON,
    log:
        log_path("hard_json", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 2 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    params:
        result=result_name,
    script:
        "../../scripts/export.py"
