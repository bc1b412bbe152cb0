"""cluster_names files (scripts/names.py): what the map exports, read back and checked."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import names  # noqa: E402
from _stage import InputError  # noqa: E402

RESULT = "mean/pca-50/hdbscan-mcs5-ms5-euclidean"
IDS = ["a", "b", "c"]


def write(tmp_path, text, name="cluster_names.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def exported(tmp_path, rows, result=RESULT, ids=IDS, name="cluster_names.csv"):
    return write(tmp_path, names.identity_line(result, names.ids_digest(ids)) + "\ncluster,name\n" + rows, name)


def test_names_read_back_as_exported(tmp_path):
    path = exported(tmp_path, '0,dog barks\n2,"door ""slams"", loudly"\n1,\n')
    assert names.read(path) == (RESULT, names.ids_digest(IDS), {0: "dog barks", 2: 'door "slams", loudly'})
    assert names.load(path, RESULT, IDS, 3) == {0: "dog barks", 2: 'door "slams", loudly'}
    assert names.load([], RESULT, IDS, 3) is None


@pytest.mark.parametrize("text, message", [
    ("cluster,name\n0,x\n", "does not start with the line '# embclust result: "),
    (names.identity_line(RESULT, "0" * 64) + "\nid,name\n0,x\n", "needs the columns cluster,name"),
    (names.identity_line(RESULT, "0" * 64) + "\ncluster,name\nzero,x\n", "line 3: expected a cluster id"),
    (names.identity_line(RESULT, "0" * 64) + "\ncluster,name\n0,x\n0,y\n", "line 4: cluster 0 is named twice"),
])
def test_a_malformed_file_is_one_line_naming_it(tmp_path, text, message):
    with pytest.raises(InputError) as e:
        names.read(write(tmp_path, text))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_names_for_another_result_or_other_files_or_missing_clusters_are_refused(tmp_path):
    path = exported(tmp_path, "0,x\n5,y\n")
    with pytest.raises(InputError, match="names cluster\\(s\\) 5, but .* has clusters 0 to 2"):
        names.load(path, RESULT, IDS, 3)
    with pytest.raises(InputError, match="exported from a result of other input files"):
        names.load(path, RESULT, IDS + ["d"], 9)
    with pytest.raises(InputError, match="is for the result .*, not mean/pca-50/spectral-k3-euclidean-s0"):
        names.load(path, "mean/pca-50/spectral-k3-euclidean-s0", IDS, 9)


def test_each_file_goes_to_the_result_it_names(tmp_path):
    spectral = "mean/pca-50/spectral-k3-euclidean-s0"
    first = exported(tmp_path, "0,x\n")
    second = exported(tmp_path, "0,y\n", result=spectral, name="second.csv")
    assert names.by_result([first, second], {RESULT, spectral}) == {RESULT: first, spectral: second}
    with pytest.raises(InputError, match="which this run does not make"):
        names.by_result([second], {RESULT})
    with pytest.raises(InputError, match="both name the clusters of"):
        names.by_result([first, exported(tmp_path, "1,z\n", name="again.csv")], {RESULT})


def test_the_config_key_takes_a_path_or_a_list_of_paths():
    import configuration

    schema = configuration.load_schema(str(Path(__file__).resolve().parent.parent / "workflow/schemas/config.schema.yaml"))
    files = lambda value: configuration.cluster_names_files(configuration.validate({"cluster_names": value}, schema))  # noqa: E731
    assert files("names.csv") == ["names.csv"]
    assert files("[a.csv,b.csv]") == ["a.csv", "b.csv"]  # --config cluster_names='[a.csv,b.csv]'
    assert configuration.cluster_names_files(configuration.validate({}, schema)) == []
    for wrong in (5, []):
        with pytest.raises(configuration.ConfigError, match="config key 'cluster_names' has value .* a list of CSV paths"):
            files(wrong)
