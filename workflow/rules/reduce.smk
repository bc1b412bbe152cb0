rule reduce:
    input:
        matrix=POOLED,
    output:
        matrix=REDUCED,
        summary=REDUCE_SUMMARY,
    params:
        reducer=lambda wildcards: settings.parse_reducer(wildcards.reducer),
    log:
        log_path("reduce", "pooling", "reducer"),
    wildcard_constraints:
        reducer=r"pca-\d+|umap-.*",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/reduce.py"
