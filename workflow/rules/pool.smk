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
    threads: 1
    resources:
        # Reads one file at a time: a small floor, plus the pooled matrix for flatten
        # (float16 input becomes float32). Runtime: ~50 MB/s of reading, worst case.
        mem_mb=lambda wc, input: 1024 + (2 * int(input.size_mb) if wc.pooling.startswith("flatten") else 0),
        runtime=lambda wc, input: 10 + int(input.size_mb / 3000),
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
    threads: 1
    resources:
        # Streams shard by shard into a memory-mapped output.
        mem_mb=lambda wc, input: 1024 + int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 3000),
    log:
        log_path("merge_pool", "pooling"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/merge_pool.py"
