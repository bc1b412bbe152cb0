rule cluster:
    input:
        matrix=reduced_matrix,
    output:
        clusters=CLUSTERS,
    params:
        clusterer=lambda wildcards: settings.parse_clusterer(wildcards.clusterer),
    log:
        log_path("cluster", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cluster.py"
