rule pool:
    input:
        embeddings=[path for _, path in EMBEDDINGS],
    output:
        matrix=POOLED,
        ids=POOLED_IDS,
    params:
        pooling=lambda wildcards: settings.parse_pooling(wildcards.pooling),
    threads: 1
    resources:
        # Reads one file at a time: a small floor, plus the pooled matrix for flatten
        # (float16 input becomes float32). Runtime: ~50 MB/s of reading, worst case.
        mem_mb=lambda wc, input: 1024 + (2 * int(input.size_mb) if wc.pooling.startswith("flatten") else 0),
        runtime=lambda wc, input: 10 + int(input.size_mb / 3000),
    log:
        log_path("pool", "pooling"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/pool.py"
