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
