# Publication figures (PNG and SVG), all drawn by scripts/plot.py; each is in the report.


# One job draws all of a result's figures: matplotlib is imported once, not once per figure. The map is its own job
# (workflow/rules/map.smk), so new labels or clips redraw only the maps.
rule figures:
    input:
        clusters=CLUSTERS,
        layouts=expand(LAYOUT, layout=LAYOUTS, allow_missing=True),
        # plot.py takes the selected clusters from export.py: a change there redraws the trees.
        code=shared_code("export", "paths", "names"),
        # The result's cluster names (cluster_names) label the clusters; names.py reads them.
        names=cluster_names_file,
        # The ids, to check that the names are this result's (only when it has names).
        ids=lambda wildcards: POOLED_IDS.format(**wildcards) if cluster_names_file(wildcards) else [],
    output:
        *figure_outputs(tree=True)[0],
        **figure_outputs(tree=True)[1],
    log:
        log_path("figures", "pooling", "reducer", "clusterer"),
    wildcard_constraints:
        clusterer=r"hdbscan-.*",
    # The longest job after `cluster` on a rerun: started first, the others fill the other cores beside it.
    priority: 1
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + len(LAYOUTS) * int(input.size_mb / 50),
    params:
        settings=figure_settings,
        layouts=LAYOUTS,
        result=result_name,
    script:
        "../../scripts/plot.py"


# Spectral clustering has no condensed tree.
use rule figures as figures_spectral with:
    output:
        *figure_outputs(tree=False)[0],
        **figure_outputs(tree=False)[1],
    log:
        log_path("figures_spectral", "pooling", "reducer", "clusterer"),
    wildcard_constraints:
        clusterer=r"spectral-.*",


rule variance:
    input:
        summary=REDUCE_SUMMARY,
        code=shared_code("paths"),
    output:
        png=report(
            VARIANCE_PNG,
            caption="../report/variance.rst",
            category="PCA variance",
            labels={"pooling": "{pooling}", "reduction": "{reducer}", "format": "PNG"},
        ),
        svg=report(
            VARIANCE_SVG,
            caption="../report/variance.rst",
            category="PCA variance",
            labels={"pooling": "{pooling}", "reduction": "{reducer}", "format": "SVG"},
        ),
    log:
        log_path("variance", "pooling", "reducer"),
    wildcard_constraints:
        reducer=r"pca-\d+",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    params:
        settings=figure_settings,
    script:
        "../../scripts/plot.py"


# n_clusters=auto's evidence: the eigenvalues k was read from (scripts/cluster.py).
rule eigengap:
    input:
        clusters=CLUSTERS,
        code=shared_code("paths"),
    output:
        png=report(
            f"{RESULT}/eigengap.png",
            caption="../report/eigengap.rst",
            category="n_clusters=auto",
            labels={"result": "{pooling}/{reducer}/{clusterer}", "format": "PNG"},
        ),
        svg=f"{RESULT}/eigengap.svg",
    log:
        log_path("eigengap", "pooling", "reducer", "clusterer"),
    wildcard_constraints:
        clusterer=r"spectral-kauto-.*",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        settings=figure_settings,
    script:
        "../../scripts/plot.py"
