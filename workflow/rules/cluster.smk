rule cluster:
    input:
        matrix=reduced_matrix,
        graph=neighbour_graph,
        pooled=auto_k_matrix,
        cosine=cosine_checked(lambda wc: paths.parse_clusterer(wc.clusterer)["metric"]),
    output:
        clusters=CLUSTERS,
    log:
        log_path("cluster", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    # One thread, so that at --cores 2 it runs beside the (single-threaded) UMAP layout.
    threads: 1
    resources:
        # HDBSCAN's neighbour graph, brute-force blocks and soft memberships; spectral's affinity graph.
        mem_mb=lambda wc, input: 2048 + 10 * int(input.size_mb),
        runtime=lambda wc, input: 30 + int(input.size_mb / 10),
    params:
        clusterer=lambda wildcards: paths.parse_clusterer(wildcards.clusterer),
    script:
        "../../scripts/cluster.py"
