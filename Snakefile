from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pool.smk"
include: "workflow/rules/reduce.smk"
include: "workflow/rules/layout.smk"
include: "workflow/rules/neighbours.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/map.smk"
include: "workflow/rules/assign.smk"


rule all:
    input:
        TARGETS,
    localrule: True


onsuccess:
    finish_quickly()


onerror:
    finish_quickly()
