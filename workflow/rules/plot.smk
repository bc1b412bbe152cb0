rule plot:
    input:
        clusters=CLUSTERS,
        layout=LAYOUT,
    output:
        plot=report(
            PLOT,
            caption="../report/plot.rst",
            category="Cluster plots",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "layout": "{layout}"},
        ),
    params:
        title=plot_title,
    log:
        log_path("plot", "pooling", "reducer", "clusterer", "layout"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot.py"
