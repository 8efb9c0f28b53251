"""Label-free accuracy and drift alerts on a served stream, beside NannyML's CBPE.

    python benchmarks/monitor_cbpe.py [--nannyml PATH/TO/nannyml-venv/bin/python]

A digits MLP (temperature fitted on validation) serves its validation and test images in
random order, then the same images with a shift applied; every label is fed back. For each
window of 150 instances the table shows the measured accuracy, gradwise's estimate (the
mean calibrated top probability) and NannyML's CBPE estimate (isotonic recalibration on the
validation split's served probabilities, chunks of 150), and where gradwise alerted.
Shifts: sensor noise (Gaussian, 3 of 16 grey levels), contrast (pixels x 0.6), and a
one-pixel translation; and the noise again served by the same model without its
temperature (raw softmax), where CBPE recalibrates with isotonic regression and gradwise
does not.

NannyML pulls many packages (xgboost, gcsfs, ...), so it lives in its own virtual
environment and is called through a subprocess; without it the CBPE column is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastapi.testclient import TestClient

import gradwise
import gradwise.serving
from gradwise.auditing.calibration import fit_temperature

WINDOW = 150
CBPE = """
import json, sys
import pandas as pd
import nannyml as nml
ref, ana = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
proba = {c.removeprefix("p_"): c for c in ref.columns if c.startswith("p_")}
est = nml.CBPE(metrics=["accuracy"], y_pred_proba=proba, y_pred="y_pred", y_true="y_true",
               problem_type="classification_multiclass", chunk_size=int(sys.argv[3]))
est.fit(ref)
res = est.estimate(ana).filter(period="analysis").to_df()
print(json.dumps(res[("accuracy", "value")].tolist()))
"""


def shifts(rng: np.random.Generator) -> dict:
    return {
        "noise": lambda x: np.clip(x + rng.normal(0, 3, x.shape), 0, 16),
        "contrast": lambda x: x * 0.6,
        "translate": lambda x: np.roll(x, 1, axis=-1),
    }


def train(folder: Path) -> gradwise.Run:
    cfg = {
        "name": "monitor-bench",
        "seed": 0,
        "data": {"source": "builtin:digits"},
        "model": {"arch": "mlp", "hidden": [128], "dropout": 0.0},
        "train": {"epochs": 30, "batch_size": 64},
    }
    run = gradwise.train(cfg, out=folder / "run", overwrite=True)
    val = run.split("val")
    run.set_temperature(fit_temperature(run.logits(val.x).double(), val.y))
    return run


def serve(run: gradwise.Run, store: Path, x: np.ndarray, y: np.ndarray) -> None:
    with TestClient(gradwise.serving.app(run, store=str(store), flush_interval_s=0.05)) as c:
        for a in range(0, len(x), 10):
            r = c.post(
                "/v1/predict", json={"instances": [{"pixels": s.tolist()} for s in x[a : a + 10]]}
            )
            c.post(
                "/v1/feedback",
                json={"request_id": r.json()["request_id"], "labels": y[a : a + 10].tolist()},
            )


def frame(run: gradwise.Run, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    probs = run.predict_proba(x)
    out = pd.DataFrame({f"p_{k}": probs[:, k] for k in range(probs.shape[1])})
    out["y_pred"] = probs.argmax(axis=1).astype(str)
    out["y_true"] = y.astype(str)
    return out


def cbpe(python: str | None, ref: pd.DataFrame, ana: pd.DataFrame, tmp: Path) -> list[float] | None:
    if python is None or not Path(python).exists():
        return None
    ref.to_parquet(tmp / "ref.parquet")
    ana.to_parquet(tmp / "ana.parquet")
    (tmp / "cbpe.py").write_text(CBPE)
    proc = subprocess.run(
        [
            python,
            str(tmp / "cbpe.py"),
            str(tmp / "ref.parquet"),
            str(tmp / "ana.parquet"),
            str(WINDOW),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        print("nannyml failed:", proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--nannyml",
        default=os.environ.get("NANNYML_PYTHON", "nannyml-venv/bin/python"),
        help="the python of a virtual environment with nannyml installed (NANNYML_PYTHON)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = train(tmp)
        val, test = run.split("val"), run.split("test")
        x = np.concatenate([np.asarray(val.raw), np.asarray(test.raw)])
        y = np.concatenate([val.y.numpy(), test.y.numpy()])
        rng = np.random.default_rng(0)
        import shutil

        shutil.copytree(run.path, tmp / "raw-run")
        raw_run = gradwise.load(tmp / "raw-run")
        raw_run.set_temperature(None)
        cases = [(name, shift, run) for name, shift in shifts(rng).items()]
        cases.append(("noise, no temperature", shifts(rng)["noise"], raw_run))
        summary = {}
        for name, shift, run in cases:
            ref = frame(run, np.asarray(val.raw), val.y.numpy())
            order = rng.permutation(len(x))
            clean, labels = x[order], y[order]
            stream = np.concatenate([clean, shift(clean)])
            truth = np.concatenate([labels, labels])
            store = tmp / f"{name.replace(' ', '_').replace(',', '')}.sqlite"
            serve(run, store, stream, truth)
            report = gradwise.monitor(run, store=str(store), window=WINDOW)
            windows = [w for w in report.windows if w.complete]
            theirs = cbpe(args.nannyml, ref, frame(run, stream, truth), tmp)
            change = len(clean) // WINDOW
            print(f"\nshift: {name} (first drifted instance {len(clean)}, in window {change})")
            print(f"{'window':>6} {'measured':>9} {'gradwise':>9} {'CBPE':>7}  alerts")
            rows = []
            for w in windows:
                c = theirs[w.index] if theirs and w.index < len(theirs) else float("nan")
                rows.append((w.index, w.accuracy, w.estimated_accuracy, c, w.end <= len(clean)))
                kinds = ",".join(a.kind for a in w.alerts) or "-"
                est = w.estimated_accuracy
                print(f"{w.index:>6} {w.accuracy:>9.3f} {est:>9.3f} {c:>7.3f}  {kinds}")
            arr = np.array([r[1:4] for r in rows], dtype=float)
            is_clean = np.array([r[4] for r in rows])
            first_alert = min((a.window for a in report.alerts if a.kind == "drift"), default=None)
            false_alarms = sum(1 for w in windows if w.end <= len(clean) and w.alerts)
            result = {
                "first_drift_alert": first_alert,
                "change_window": change,
                "false_alarms_clean_windows": false_alarms,
                "mae_gradwise_clean": float(np.mean(np.abs(arr[is_clean, 1] - arr[is_clean, 0]))),
                "mae_gradwise_drifted": float(
                    np.mean(np.abs(arr[~is_clean, 1] - arr[~is_clean, 0]))
                ),
                "mae_cbpe_clean": float(np.nanmean(np.abs(arr[is_clean, 2] - arr[is_clean, 0]))),
                "mae_cbpe_drifted": float(
                    np.nanmean(np.abs(arr[~is_clean, 2] - arr[~is_clean, 0]))
                ),
                "measured_clean": float(arr[is_clean, 0].mean()),
                "measured_drifted": float(arr[~is_clean, 0].mean()),
                "gradwise_clean": float(arr[is_clean, 1].mean()),
                "gradwise_drifted": float(arr[~is_clean, 1].mean()),
            }
            summary[name] = result
            print(json.dumps(result))
        print("\nsummary (accuracy points of mean absolute error per window):")
        for name, r in summary.items():
            print(
                f"{name:>22}: alert at window {r['first_drift_alert']} "
                f"(change in {r['change_window']}), "
                f"{r['false_alarms_clean_windows']} false alarms; MAE clean: gradwise "
                f"{100 * r['mae_gradwise_clean']:.1f}, CBPE {100 * r['mae_cbpe_clean']:.1f}; "
                f"drifted: gradwise {100 * r['mae_gradwise_drifted']:.1f}, CBPE "
                f"{100 * r['mae_cbpe_drifted']:.1f}"
            )


if __name__ == "__main__":
    main()
