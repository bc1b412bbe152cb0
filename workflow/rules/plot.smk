# Publication figures (PNG and SVG), all drawn by scripts/plot.py; each is in the report.


rule plot:
    input:
        clusters=CLUSTERS,
        layout=LAYOUT,
    output:
        png=report(
            PLOT,
            caption="../report/plot.rst",
            category="Cluster layouts",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "layout": "{layout}", "format": "PNG"},
        ),
        svg=report(
            PLOT_SVG,
            caption="../report/plot.rst",
            category="Cluster layouts",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "layout": "{layout}", "format": "SVG"},
        ),
    params:
        settings=figure_settings,
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    log:
        log_path("plot", "pooling", "reducer", "clusterer", "layout"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot.py"


rule sizes:
    input:
        clusters=CLUSTERS,
    output:
        png=report(
            SIZES_PNG,
            caption="../report/sizes.rst",
            category="Cluster sizes",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "format": "PNG"},
        ),
        svg=report(
            SIZES_SVG,
            caption="../report/sizes.rst",
            category="Cluster sizes",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "format": "SVG"},
        ),
    params:
        settings=figure_settings,
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    log:
        log_path("sizes", "pooling", "reducer", "clusterer"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot.py"


rule tree:
    input:
        clusters=CLUSTERS,
    output:
        png=report(
            TREE_PNG,
            caption="../report/tree.rst",
            category="Condensed trees",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "format": "PNG"},
        ),
        svg=report(
            TREE_SVG,
            caption="../report/tree.rst",
            category="Condensed trees",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "format": "SVG"},
        ),
    params:
        settings=figure_settings,
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    log:
        log_path("tree", "pooling", "reducer", "clusterer"),
    wildcard_constraints:
        clusterer=r"hdbscan-.*",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot.py"


rule variance:
    input:
        summary=REDUCE_SUMMARY,
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
    params:
        settings=figure_settings,
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    log:
        log_path("variance", "pooling", "reducer"),
    wildcard_constraints:
        reducer=r"pca-\d+",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot.py"
