rule pool:
    input:
        embeddings=[path for _, path in EMBEDDINGS],
        wavs=trim_audio,
    output:
        matrix=POOLED,
        ids=POOLED_IDS,
    params:
        pooling=lambda wildcards: settings.parse_pooling(wildcards.pooling),
    log:
        log_path("pool", "pooling"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/pool.py"
