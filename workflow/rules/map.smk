# The interactive map of each result: scripts/map.py, colours from scripts/plot.py.

# Ids that have <audio_dir>/<id>.wav, read once when the workflow starts; a param, so
# adding clips redraws the maps.
def audio_ids(audio_dir):
    if not audio_dir:
        return []
    wavs = {name[: -len(".wav")] for name in os.listdir(audio_dir) if name.endswith(".wav")}
    return [i for i, _ in EMBEDDINGS if i in wavs]


AUDIO_IDS = audio_ids(config["audio_dir"])


def map_labels(wildcards):
    return [config["labels"]] if config["labels"] else []


rule map:
    input:
        clusters=CLUSTERS,
        layout=LAYOUT,
        ids=POOLED_IDS,
        labels=map_labels,
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
        audio={"dir": config["audio_dir"], "clips": AUDIO_IDS},
    log:
        log_path("map", "pooling", "reducer", "clusterer", "layout"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/map.py"
