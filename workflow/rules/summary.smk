rule summary:
    input:
        metrics=every_result("metrics.json"),
    output:
        table=report(SUMMARY_TABLE, caption="../report/summary.rst", category="Summary"),
        figure=report(SUMMARY_FIGURE, caption="../report/summary.rst", category="Summary"),
    log:
        os.path.join(OUT, "logs", "summary.log"),
    localrule: True
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    params:
        results=RESULTS,
        dataset=config["dataset"],
    script:
        "../../scripts/summary.py"


# A checkpoint: assigning new clips to best/ (assign.smk) reads which result it chose.
checkpoint select_best:
    input:
        metrics=every_result("metrics.json"),
        hard=every_result("clusters_hard.json"),
        soft=every_result("clusters_soft.json"),
        methods=every_result("methods.md"),
    output:
        selection=report(f"{BEST}/selection.json", caption="../report/selection.rst", category="Summary"),
        hard=f"{BEST}/clusters_hard.json",
        soft=f"{BEST}/clusters_soft.json",
        metrics=f"{BEST}/metrics.json",
        # Per-file stability across the sweep (also in best/clusters_hard.json), as a histogram.
        stability=report(f"{BEST}/stability.png", caption="../report/selection.rst", category="Summary"),
        # The chosen result's methods paragraph, with how the sweep chose it.
        methods=report(
            f"{BEST}/methods.md",
            caption="../report/methods.rst",
            category="Methods",
            labels={"clustering": "best (selected)", "file": "methods.md"},
        ),
    log:
        os.path.join(OUT, "logs", "select_best.log"),
    localrule: True
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    params:
        results=RESULTS,
    script:
        "../../scripts/select_best.py"
