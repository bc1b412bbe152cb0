import yaml
from conftest import REPO


def test_environment_yml_pins_what_requirements_txt_pins():
    with open(REPO / "requirements.txt") as f:
        pins = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert pins and all("==" in p for p in pins)
    with open(REPO / "environment.yml") as f:
        env = yaml.safe_load(f)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == pins
