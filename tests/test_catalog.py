"""The Snakemake workflow catalog's files: version, citation, usage and config/README.md."""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO


def test_version_is_one_number_that_the_citation_names():
    version = (REPO / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and str(citation["version"]) == version
    assert citation["title"] and citation["authors"]


def test_catalog_usage_matches_the_workflow():
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert "embedding_dir=" in usage["mandatory-flags"]["flags"]
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True
    # conda: true is a promise that every rule names its environment.
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        text = rules.read_text()
        assert len(re.findall(r"^(?:rule|checkpoint) ", text, re.M)) == text.count('conda:\n        "../../environment.yml"'), rules.name


def config_readme_defaults():
    """{key: default} from the table in config/README.md."""
    rows = re.findall(r"^\| `(\w+)` \| [^|]* \| `([^`]*)` \|", (REPO / "config/README.md").read_text(), re.M)
    return {key: yaml.safe_load(default) for key, default in rows}


def test_config_readme_documents_every_key_with_the_default_of_config_yaml():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    documented = config_readme_defaults()
    assert sorted(documented) == sorted(schema) == sorted(config)
    assert documented == config == {key: prop["default"] for key, prop in schema.items()}


def test_snakefmt_check_is_clean():
    """The catalog runs `snakefmt --check` (with the line length of pyproject.toml) on
    every workflow it lists; `snakemake --lint` is tests/test_workflow.py's."""
    snakefmt = Path(sys.executable).with_name("snakefmt")
    run = subprocess.run([str(snakefmt), "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
