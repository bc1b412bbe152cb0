rule padding:
    input:
        sample=PADDING_SAMPLE,
        # It reads with pool.py's load_frames and its summary counts speech with pool.py's
        # speech_frames: a change there remakes it.
        pool_code=workflow.source_path("../../scripts/pool.py"),
    output:
        template=PADDING_TEMPLATE,
        summary=f"{OUT}/pooled/padding-template.json",
    log:
        log_path("padding"),
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        # The sample (128 files) held whole, as stored.
        mem_mb=lambda wc, input: 1024 + 2 * int(sum(row[2] for row in read_manifest(input.sample)) / 2**20),
        runtime=30,
    params:
        # The sample's manifest as this start wrote it: see the pool rule's manifests.
        sample=lambda wildcards: manifest_digest(PADDING_SAMPLE),
    script:
        "../../scripts/padding.py"


rule pool:
    input:
        files=MANIFEST,
        wavs=shard_audio,
        template=padding_template,
    output:
        matrix=f"{SHARD}.npy",
        ids=f"{SHARD}.ids.tsv",
        info=f"{SHARD}.json",
    log:
        log_path("pool", "pooling", "shard"),
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        # Up to 16 files read ahead, each up to twice its size once in float32; rows
        # go straight to disk. Runtime: ~50 MB/s of reading, worst case.
        mem_mb=lambda wc: 1024 + 32 * int(shard_mb(wc) / len(SHARDS[wc.shard]) + 1),
        runtime=lambda wc: 10 + int(shard_mb(wc) / 3000),
    params:
        pooling=lambda wildcards: paths.parse_pooling(wildcards.pooling),
        # The digests of the manifests as this start wrote them. A shard pooled from a
        # manifest rewritten while it ran (a start meanwhile) is newer than it, and
        # Snakemake checksums the manifest only when the job ends: the changed params
        # are what pools it again (scripts/manifests.py, check_shards).
        # (From the wildcards: Snakemake leaves params derived from the input out of its check.)
        manifests=lambda wildcards: manifest_digests(MANIFEST.format(shard=wildcards.shard), shard_audio(wildcards)),
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
        frames=POOLED_FRAMES,
    log:
        log_path("merge_pool", "pooling"),
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        # Writes blocks of 256 MB, read from the shards with pread.
        mem_mb=1536,
        runtime=lambda wc, input: 10 + int(input.size_mb / 3000),
    script:
        "../../scripts/merge_pool.py"


# Stages that measure cosine wait on this check of their pooling's shards (cosine_checked).
rule cosine_check:
    input:
        info=every_shard(".json"),
    output:
        checked=COSINE_CHECKED,
    log:
        log_path("cosine_check", "pooling"),
    localrule: True
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    script:
        "../../scripts/cosine_check.py"
