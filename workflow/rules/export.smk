rule export:
    input:
        clusters=CLUSTERS,
        ids=POOLED_IDS,
    output:
        hard=HARD_JSON,
        soft=SOFT_JSON,
    log:
        log_path("export", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/export.py"
