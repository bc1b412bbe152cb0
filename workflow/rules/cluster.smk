rule cluster:
    input:
        matrix=reduced_matrix,
    output:
        clusters=CLUSTERS,
    params:
        clusterer=lambda wildcards: settings.parse_clusterer(wildcards.clusterer),
    threads: 2
    resources:
        # HDBSCAN's trees and soft memberships, spectral's affinity graph.
        mem_mb=lambda wc, input: 2048 + 10 * int(input.size_mb),
        runtime=lambda wc, input: 30 + int(input.size_mb / 10),
    log:
        log_path("cluster", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cluster.py"
