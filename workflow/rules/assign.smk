# New clips (assign_dir) placed into an existing result without re-clustering it: pooled
# as the result's files were, in shards with their own manifests (so adding files re-pools
# only their shards), then one assign job per result. Nothing above the result reruns.


use rule pool as pool_assign with:
    input:
        files=ASSIGN_MANIFEST,
        wavs=assign_shard_audio,
        # New clips' padding is found with the clustered files' template.
        template=padding_template,
    output:
        matrix=f"{ASSIGN_SHARD}.npy",
        ids=f"{ASSIGN_SHARD}.ids.tsv",
        info=f"{ASSIGN_SHARD}.json",
    log:
        log_path("pool_assign", "name", "pooling", "shard"),
    resources:
        mem_mb=lambda wc: 1024 + 32 * int(assign_shard_mb(wc) / len(ASSIGN_SHARDS[wc.shard]) + 1),
        runtime=lambda wc: 10 + int(assign_shard_mb(wc) / 3000),
    params:
        pooling=lambda wildcards: paths.parse_pooling(wildcards.pooling),
        manifests=lambda wildcards: manifest_digests(
            ASSIGN_MANIFEST.format(name=wildcards.name, shard=wildcards.shard), assign_shard_audio(wildcards)
        ),


rule assign:
    input:
        unpack(assign_inputs),
    output:
        hard=f"{ASSIGNED}/clusters_hard.json",
        soft=f"{ASSIGNED}/clusters_soft.json",
        provenance=f"{ASSIGNED}/provenance.json",
        # The new clips in the clustered space with their assignment, for the map's layer.
        points=f"{ASSIGNED}/points.npz",
    log:
        log_path("assign", "target", "name"),
    wildcard_constraints:
        target=f"best|(?:{paths.WILDCARD_PATTERNS['pooling']})/(?:{paths.WILDCARD_PATTERNS['reducer']})/(?:{paths.WILDCARD_PATTERNS['clusterer']})",
        name=r"[A-Za-z0-9._-]+",
    conda:
        "../../environment.yml"
    # The exact neighbour search is BLAS products: two threads.
    threads: 2
    resources:
        # float64 copies of the clustered matrix (the pooled one for UMAP) and the new clips.
        mem_mb=lambda wc, input: 2048 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 10),
    params:
        result=assigned_result,
        via=lambda wildcards: "best" if wildcards.target == "best" else "assign_to",
        clusterer=lambda wildcards: assigned_settings(wildcards)["clusterer"],
        settings=assigned_settings,
        assign_dir=config["assign_dir"],
        soft_top_k=config["soft_top_k"],
    script:
        "../../scripts/assign.py"
