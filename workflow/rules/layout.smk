rule layout:
    input:
        matrix=reduced_matrix,
    output:
        layout=LAYOUT,
    params:
        layout=lambda wildcards: settings.parse_layout(wildcards.layout),
    log:
        log_path("layout", "pooling", "reducer", "layout"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/layout.py"
