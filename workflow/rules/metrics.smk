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
    params:
        clusterer=lambda wildcards: settings.parse_clusterer(wildcards.clusterer),
    threads: 1
    resources:
        # Silhouette and DBCV see at most 5,000 points (pairwise distances ~200 MB).
        mem_mb=lambda wc, input: 2048 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 10),
    log:
        log_path("metrics", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/metrics.py"


# The workflow's version (VERSION; CITATION.cff names the same), recorded in each provenance.json.
with open(os.path.join(workflow.basedir, "VERSION")) as _version:
    WORKFLOW_VERSION = _version.read().strip()


def reduce_summary(wildcards):
    """reduce.json of a result's reduction (the dimensions kept); reduce=none has none."""
    if wildcards.reducer == "none":
        return []
    return REDUCE_SUMMARY.format(pooling=wildcards.pooling, reducer=wildcards.reducer)


rule provenance:
    input:
        pooled=POOLED,
        ids=POOLED_IDS,
        clusters=CLUSTERS,
        reduce=reduce_summary,
    output:
        provenance=PROVENANCE,
    params:
        settings=result_settings,
        version=WORKFLOW_VERSION,
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    log:
        log_path("provenance", "pooling", "reducer", "clusterer"),
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../../scripts/provenance.py"
