rule export:
    input:
        clusters=CLUSTERS,
        ids=POOLED_IDS,
    output:
        hard=HARD_JSON,
        soft=SOFT_JSON,
    # Writes two small JSONs: runs where snakemake runs, never as a cluster job.
    localrule: True
    threads: 1
    resources:
        mem_mb=lambda wc, input: 512 + 4 * int(input.size_mb),
        runtime=10,
    log:
        log_path("export", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/export.py"
