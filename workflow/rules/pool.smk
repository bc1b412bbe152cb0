rule pool:
    input:
        embeddings=shard_embeddings,
        wavs=shard_audio,
    output:
        matrix=f"{SHARD}.npy",
        ids=f"{SHARD}.ids.tsv",
        info=f"{SHARD}.json",
    params:
        pooling=lambda wildcards: settings.parse_pooling(wildcards.pooling),
    log:
        log_path("pool", "pooling", "shard"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/pool.py"


rule merge_pool:
    input:
        matrices=every_shard(".npy"),
        ids=every_shard(".ids.tsv"),
        info=every_shard(".json"),
    output:
        matrix=POOLED,
        ids=POOLED_IDS,
    log:
        log_path("merge_pool", "pooling"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/merge_pool.py"
