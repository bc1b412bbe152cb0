# The interactive map of each result: scripts/map.py, colours from scripts/plot.py.


rule map:
    input:
        # The result's new clips (assign_dir), a layer of their own, and what places them.
        unpack(map_assigned),
        clusters=CLUSTERS,
        layout=LAYOUT,
        ids=POOLED_IDS,
        labels=lambda wildcards: config["labels"] or [],
        # The result's cluster names (cluster_names).
        names=cluster_names_file,
        # map.py takes its palette from plot.py, reads the names with names.py and finds
        # HDBSCAN's exemplars (played first) with export.py: a change there redraws the maps.
        code=shared_code("plot", "names", "export"),
    output:
        map=report(
            MAP,
            caption="../report/map.rst",
            category="Interactive maps",
            subcategory="{pooling} / {reducer}",
            labels={"clustering": "{clusterer}", "layout": "{layout}"},
        ),
    log:
        log_path("map", "pooling", "reducer", "clusterer", "layout"),
    conda:
        "../../environment.yml"
    threads: 1
    # Measured by bench/map_scale.py: the job's peak is about 100 MB plus 14 times the
    # layout, ids and labels files (1 GB at 1M files, ids of 11 characters, two label
    # columns). clusters.npz is left out: the map reads three N-long arrays of it, not
    # the soft memberships that make most of its size. With assigned clips, the matrix
    # their placement reads (float64 copies) counts as the other inputs do.
    resources:
        mem_mb=lambda wc, input: 1024 + 16 * int(map_input_mb(input)),
        runtime=lambda wc, input: 10 + int(map_input_mb(input) / 20),
    params:
        settings=figure_settings,
        # A param, so adding or removing clips redraws the maps.
        # Only the map with the assigned layer gets the new clips' audio: new files
        # in assign_dir redraw that map, not every map.
        audio=map_audio,
        assign_name=config["assign_name"],
        # The result's folder, which the page's Export writes into cluster_names.csv.
        result=result_name,
    script:
        "../../scripts/map.py"


# The map of the result a sweep's selection chose (best/), on each layout of the run: the
# chosen result's map, plus each file's stability across the sweep (best/clusters_hard.json)
# as a colouring, in the hover box and as a list of the least stable files. A path without
# the result's settings, as for best/'s other files: the selection decides which result.
use rule map as map_best with:
    input:
        unpack(best_map_inputs),
    output:
        map=report(
            f"{BEST}/map-{{layout}}.html",
            caption="../report/map_best.rst",
            category="Summary",
            labels={"file": "best/map-{layout}.html"},
        ),
    log:
        log_path("map_best", "layout"),
    params:
        settings=lambda wildcards: figure_settings(vars(best_wildcards(wildcards))),
        audio=lambda wildcards: map_audio(best_wildcards(wildcards)),
        selected_from=len(RESULTS),
        result=lambda wildcards: result_name(best_wildcards(wildcards)),
