rule reduce:
    input:
        matrix=POOLED,
    output:
        matrix=REDUCED,
        summary=REDUCE_SUMMARY,
    params:
        reducer=lambda wildcards: settings.parse_reducer(wildcards.reducer),
    threads: 2
    resources:
        # PCA/UMAP hold float64 copies of the matrix and UMAP's neighbour graph.
        mem_mb=lambda wc, input: 2048 + 8 * int(input.size_mb),
        runtime=lambda wc, input: 20 + int(input.size_mb / 20),
    log:
        log_path("reduce", "pooling", "reducer"),
    wildcard_constraints:
        reducer=r"pca-\d+|umap-.*",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/reduce.py"
