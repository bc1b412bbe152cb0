import reduce as reduce_stage


rule reduce:
    input:
        matrix=POOLED,
        cosine=cosine_checked(lambda wc: paths.parse_reducer(wc.reducer).get("metric")),
    output:
        matrix=REDUCED,
        summary=REDUCE_SUMMARY,
        # The fitted reduction as plain arrays, for the assign stage.
        fitted=REDUCER,
    log:
        log_path("reduce", "pooling", "reducer"),
    wildcard_constraints:
        reducer=r"pca-\d+|umap-.*",
    conda:
        "../../environment.yml"
    threads: 2
    resources:
        # From the matrix's shape: wide PCA needs memory for N x N, not for the matrix.
        mem_mb=lambda wc, input: reduce_stage.mem_mb(input.matrix, input.size_mb, wc.reducer),
        runtime=lambda wc, input: reduce_stage.runtime(input.size_mb, wc.reducer),
    params:
        reducer=lambda wildcards: paths.parse_reducer(wildcards.reducer),
    script:
        "../../scripts/reduce.py"
