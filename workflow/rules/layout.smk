rule layout:
    input:
        matrix=reduced_matrix,
        graph=layout_graph,
        cosine=cosine_checked(lambda wc: paths.parse_layout(wc.layout).get("metric")),
    output:
        layout=LAYOUT,
    log:
        log_path("layout", "pooling", "reducer", "layout"),
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        # Seeded UMAP runs single-threaded; memory as for reduce.
        mem_mb=lambda wc, input: 2048 + 8 * int(input.size_mb),
        runtime=lambda wc, input: 20 + int(input.size_mb / 20),
    params:
        layout=lambda wildcards: paths.parse_layout(wildcards.layout),
    script:
        "../../scripts/layout.py"
