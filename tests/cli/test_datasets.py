"""`gradwise datasets` and `gradwise datasets get`: the registry of example data sets, the
data home the example configs read through `${GRADWISE_DATA:-DIR}`, and fetching with
sha256 checks, from a local mirror (tests never reach a network)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradwise.cli import app
from gradwise.config import load_config
from gradwise.data import registry
from gradwise.data.registry import DATASETS, DataSet, RemoteFile, identify
from gradwise.settings import DATA_ENV
from tests.conftest import tiny_config
from tests.shared import need_shared

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
runner = CliRunner()

FAKE_FILES = {"a.csv": b"x,y\n1,2\n3,4\n", "a.names": b"two columns\n"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test here may reach the network: the mirror is a folder that holds nothing unless
    a test fills it; the data home is an empty folder of the test's own."""
    monkeypatch.setenv(registry.MIRROR_ENV, str(tmp_path / "no-mirror"))
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "home"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[DataSet, Path]:
    """A data set `fake` of two small files, registered with their own sha256, and a mirror
    folder that holds them (the layout of a data home: NAME/FILE)."""
    mirror = tmp_path / "mirror"
    (mirror / "fake").mkdir(parents=True)
    files = []
    for name, content in FAKE_FILES.items():
        (mirror / "fake" / name).write_bytes(content)
        sha = hashlib.sha256(content).hexdigest()
        files.append(RemoteFile(name, f"https://example.invalid/{name}", sha, len(content)))
    data_set = DataSet("fake", "a fake set", "github:nobody/nothing@0", "CC0", tuple(files))
    monkeypatch.setitem(DATASETS, "fake", data_set)
    return data_set, mirror


def invoke(args: list[str]):
    result = runner.invoke(app, args)
    assert "Traceback" not in result.output
    return result


# ------------------------------------------------------------------ the registry


def test_every_file_is_pinned_to_a_commit_and_a_sha256():
    for d in DATASETS.values():
        assert re.fullmatch(r"github:[\w.-]+/[\w.-]+@[0-9a-f]{40}", d.origin), d.origin
        assert d.licence and d.title
        assert len({f.name for f in d.files}) == len(d.files)
        for f in d.files:
            commit = d.origin.rsplit("@", 1)[1]
            assert f.url.startswith("https://raw.githubusercontent.com/") and commit in f.url
            assert f.url.endswith("/" + f.name)
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.n_bytes > 0
    total = sum(d.n_bytes for d in DATASETS.values())
    assert 15e6 < total < 17e6  # "about 16 MB", as shared/data's README says


def test_the_registry_matches_the_shared_data_files_byte_for_byte():
    folder = need_shared()
    for d in DATASETS.values():
        for f in d.files:
            path = folder / d.name / f.name
            assert path.stat().st_size == f.n_bytes, path
            assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256, path


def test_every_example_names_its_data_through_the_data_home_or_builtin():
    configs = sorted(EXAMPLES.glob("*.yaml"))
    assert configs
    for path in configs:
        source = yaml.safe_load(path.read_text())["data"]["source"]
        kind, _, location = source.partition(":")
        if kind == "builtin" or location.startswith("data/"):  # made by examples/make_*.py
            continue
        prefix = "${GRADWISE_DATA:-../../shared/data}/"
        assert location.startswith(prefix), f"{path.name}: {source}"
        assert identify(Path("data-home") / location.removeprefix(prefix)) is not None, source


# ------------------------------------------------------------------ the data home


def _config_reading(tmp_path: Path, location: str) -> Path:
    path = tmp_path / "cfg" / "c.yaml"
    path.parent.mkdir(exist_ok=True)
    cfg = tiny_config()
    cfg["data"] = {"source": f"csv:{location}", "target": "y"}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_data_home_is_the_variable_then_a_folder_beside_the_config_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = _config_reading(tmp_path, "${GRADWISE_DATA:-../beside}/fake/a.csv")

    def source() -> str:
        return load_config(config).data.source

    monkeypatch.setenv(DATA_ENV, str(tmp_path / "home"))
    assert source() == f"csv:{tmp_path / 'home' / 'fake' / 'a.csv'}"
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert source() == f"csv:{tmp_path / 'user' / 'gradwise_data' / 'fake' / 'a.csv'}"
    (tmp_path / "beside").mkdir()  # a checkout with the shared data beside it
    assert source() == f"csv:{tmp_path / 'beside' / 'fake' / 'a.csv'}"


def test_training_an_example_whose_data_is_missing_names_the_command_that_gets_it(
    tmp_path: Path,
):
    config = _config_reading(tmp_path, "${GRADWISE_DATA:-../nothing}/german_credit/german.csv")
    result = invoke(["train", str(config), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2, result.output
    assert "`gradwise datasets get german_credit` fetches it" in result.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ datasets get


def test_get_fetches_from_a_mirror_into_the_data_home_checking_sha256(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _, mirror = fake
    monkeypatch.setenv(registry.MIRROR_ENV, mirror.as_uri())  # file:///...
    result = invoke(["datasets", "get", "fake"])
    assert result.exit_code == 0, result.output
    for name, content in FAKE_FILES.items():
        assert (tmp_path / "home" / "fake" / name).read_bytes() == content
    assert result.output.count("fetched") == 2

    again = invoke(["datasets", "get", "fake"])  # what is there and right is kept
    assert again.exit_code == 0 and again.output.count("kept") == 2


def test_get_to_another_folder_says_how_the_examples_find_it(fake, tmp_path: Path):
    _, mirror = fake
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.MIRROR_ENV, str(mirror))  # a plain folder works too
        result = invoke(["datasets", "get", "fake", "--to", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "fake" / "a.csv").is_file()
    assert f"export {DATA_ENV}={tmp_path / 'elsewhere'}" in result.output


def test_a_file_with_another_sha256_is_refused_and_nothing_is_kept(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _, mirror = fake
    (mirror / "fake" / "a.names").write_bytes(b"tampered\n")
    monkeypatch.setenv(registry.MIRROR_ENV, str(mirror))
    result = invoke(["datasets", "get", "fake"])
    assert result.exit_code == 2
    assert "is not the pinned a.names" in result.output
    assert sorted(p.name for p in (tmp_path / "home" / "fake").iterdir()) == ["a.csv"]


def test_a_wrong_file_already_in_place_is_not_overwritten(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _, mirror = fake
    monkeypatch.setenv(registry.MIRROR_ENV, str(mirror))
    place = tmp_path / "home" / "fake" / "a.csv"
    place.parent.mkdir(parents=True)
    place.write_bytes(b"mine\n")
    result = invoke(["datasets", "get", "fake"])
    assert result.exit_code == 2 and "move it away" in result.output
    assert place.read_bytes() == b"mine\n"


def test_an_unreachable_source_and_an_unknown_name_are_one_clear_message(fake):
    result = invoke(["datasets", "get", "fake"])  # the mirror folder does not exist
    assert result.exit_code == 2 and "Cannot fetch" in result.output
    result = invoke(["datasets", "get", "german_credt"])
    assert result.exit_code == 2 and "did you mean german_credit?" in result.output
    result = invoke(["datasets", "get"])
    assert result.exit_code == 2 and "--all" in result.output


# ------------------------------------------------------------------ datasets (the list)


def test_the_list_says_what_each_example_reads_whether_it_is_here_and_how_to_get_it(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "uses-fake.yaml").write_text(
        "data: {source: 'csv:${GRADWISE_DATA:-../nothing}/fake/a.csv', target: y}\n"
    )
    (examples / "digits.yaml").write_text("data: {source: 'builtin:digits'}\n")

    def listed() -> dict:
        result = invoke(["datasets", "--examples", str(examples), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    before = {e["example"]: e for e in listed()["examples"]}
    assert before["digits"]["present"] and before["digits"]["get"] is None
    assert not before["uses-fake"]["present"]
    assert before["uses-fake"]["get"] == "gradwise datasets get fake"

    _, mirror = fake
    monkeypatch.setenv(registry.MIRROR_ENV, str(mirror))
    assert invoke(["datasets", "get", "fake", "-q"]).exit_code == 0
    after = listed()
    assert {e["example"]: e for e in after["examples"]}["uses-fake"]["present"]
    assert {d["name"]: d for d in after["datasets"]}["fake"]["present"]

    table = invoke(["datasets", "--examples", str(examples)])
    assert "uses-fake" in table.output and "german_credit" in table.output
