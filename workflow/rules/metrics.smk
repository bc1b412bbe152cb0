rule metrics:
    input:
        matrix=reduced_matrix,
        clusters=CLUSTERS,
        ids=POOLED_IDS,
        labels=lambda wildcards: config["labels"] or [],
    output:
        metrics=report(
            METRICS,
            caption="../report/metrics.rst",
            category="Metrics",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "file": "metrics.json"},
        ),
    log:
        log_path("metrics", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        # Silhouette and DBCV see at most 5,000 points (pairwise distances ~200 MB).
        mem_mb=lambda wc, input: 2048 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 10),
    params:
        clusterer=lambda wildcards: paths.parse_clusterer(wildcards.clusterer),
    script:
        "../../scripts/metrics.py"


rule provenance:
    input:
        pooled=POOLED,
        ids=POOLED_IDS,
        frames=POOLED_FRAMES,
        clusters=CLUSTERS,
        reduce=reduce_summary,
        code=shared_code("paths"),
    output:
        provenance=PROVENANCE,
        # A paragraph for a paper: every step with its settings, versions, seed and references.
        methods=report(
            f"{RESULT}/methods.md",
            caption="../report/methods.rst",
            category="Methods",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "file": "methods.md"},
        ),
    log:
        log_path("provenance", "pooling", "reducer", "clusterer"),
    localrule: True
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    params:
        settings=result_settings,
        version=WORKFLOW_VERSION,
        layouts=result_layouts,
    script:
        "../../scripts/provenance.py"
