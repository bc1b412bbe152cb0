"""The front page and the docs pages: every relative link resolves (files and #anchors,
by GitHub's heading slugs), every `--config` of a command passes the config's validation,
the quick start's snakemake command plans the demo result the README names, and its test
command is the one CI runs."""

import re
import shlex

import pytest
from conftest import REPO, Workflow

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text):
    """The text outside fenced code blocks and inline code, where links are links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def github_slug(heading):
    """The anchor GitHub gives a heading: lower case, inline code marks and punctuation
    dropped (letters, digits, `_` and `-` kept), each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text.replace("`", "")).replace(" ", "-")


def anchors(path):
    """Every anchor of a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen = {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.M):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        yield slug if n == 0 else f"{slug}-{n}"


def test_github_slug_follows_githubs_rules():
    assert github_slug("Many files: subfolders, manifests and `pool_shards`") == (
        "many-files-subfolders-manifests-and-pool_shards"
    )
    assert github_slug("When PCA cannot give `reduce_dim`") == "when-pca-cannot-give-reduce_dim"
    assert github_slug("Across draws (seeds 0-4)") == "across-draws-seeds-0-4"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (path.suffix != ".md" or anchor not in set(anchors(path))):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages <= set(re.findall(r"\]\(docs/([\w.-]+\.md)", readme))


def fenced_commands(text):
    """Every snakemake command of a page's fenced bash blocks, continuation lines joined, as argv."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if re.match(r"\s*(\S*/)?snakemake ", part):
                    commands.append(shlex.split(part, comments=True))
    return commands


def test_every_config_of_a_command_is_valid():
    """The `--config KEY=VALUE ...` of every command in the pages passes the workflow's own
    validation (keys in the schema, values allowed), as `snakemake --config` would."""
    import configuration

    schema = configuration.load_schema(REPO / "workflow/schemas/config.schema.yaml")
    refused, checked = [], 0
    for page in PAGES:
        for argv in fenced_commands(page.read_text()):
            if "--config" not in argv:
                continue
            pairs = []
            for arg in argv[argv.index("--config") + 1 :]:
                if arg.startswith("-"):
                    break
                if arg != "...":  # "the same settings as before"
                    pairs.append(arg.split("=", 1))
            checked += 1
            try:
                configuration.validate(dict(pairs), schema)
            except configuration.ConfigError as e:
                refused.append(f"{page.name}: {' '.join(argv)}: {e}")
    assert checked >= 10 and not refused


def test_quick_start_command_plans_the_demo_result_the_readme_names(tmp_path):
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start")[1].split("\n## ")[0]
    commands = fenced_commands(quick_start)
    assert commands == [[".venv/bin/snakemake", "--cores", "2"]]
    result = re.search(r"The demo result lands in `([^`]+)`", quick_start).group(1)
    workflow = Workflow(tmp_path / "wf")
    (workflow.root / "demo").symlink_to(REPO / "demo")
    # The demo itself runs in test_workflow.py's test_demo_run_clusters_the_digits;
    # here the quick start's command, as written, must plan the result the README names.
    proc = workflow.run(*commands[0][3:], "--dry-run", cores=int(commands[0][2]))
    planned = proc.stdout + proc.stderr
    for name in ("clusters_hard.json", "clusters_soft.json", "map-umap-euclidean-s0.html", "plot-umap-euclidean-s0.png"):
        assert f"{result.rstrip('/')}/{name}" in planned, name


def test_quick_start_test_command_is_what_ci_runs():
    quick_start = (REPO / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    blocks = re.findall(r"^```bash\n(.*?)\n```", quick_start, re.M | re.S)
    test_command = [b for b in blocks if "pytest" in b]
    assert len(test_command) == 1
    assert test_command[0] in (REPO / ".ci/run").read_text().splitlines()
