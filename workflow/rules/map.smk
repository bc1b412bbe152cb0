# The interactive map of each result: scripts/map.py, colours from scripts/plot.py.


rule map:
    input:
        clusters=CLUSTERS,
        layout=LAYOUT,
        ids=POOLED_IDS,
        labels=lambda wildcards: config["labels"] or [],
        # map.py takes its palette from plot.py: a change there redraws the maps.
        palette=os.path.join(workflow.basedir, "scripts", "plot.py"),
    output:
        map=report(
            MAP,
            caption="../report/map.rst",
            category="Interactive maps",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "layout": "{layout}"},
        ),
    params:
        settings=figure_settings,
        # A param, so adding or removing clips redraws the maps.
        audio={"dir": config["audio_dir"], "clips": AUDIO_IDS},
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1024 + 4 * int(input.size_mb),
        runtime=lambda wc, input: 10 + int(input.size_mb / 50),
    log:
        log_path("map", "pooling", "reducer", "clusterer", "layout"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/map.py"
