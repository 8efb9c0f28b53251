"""The report's sections on the model itself: what was trained on what data, the training
curves, the test metrics and the explanations (the audit's are in sections_audit.py, cost,
tuning and monitoring in sections_ops.py). Without its JSON, a section names its command."""

from __future__ import annotations

from typing import Any

from gradwise.data.split import leak_warning
from gradwise.pipeline import TRAIN_METRICS_CAP
from gradwise.reporting.blocks import Block, Facts, Plot, Section, Settings, Table, Text, flat, num
from gradwise.reporting.blocks import Verdict as VerdictBlock
from gradwise.reporting.evidence import Evidence
from gradwise.reporting.figures import data_uri
from gradwise.reporting.plots import (
    plot_activations,
    plot_attention,
    plot_attributions,
    plot_importance,
    plot_training,
)

# ---------------------------------------------------------------- data and config


def data_section(ev: Evidence) -> Section:
    """What was trained on what data: source, rows per split, schema, the config's key
    choices and the environment."""
    m, schema = ev.metrics, ev.schema
    splits = ev.splits or {}
    source = schema.get("source") or splits.get("source") or ev.config.get("data", {}).get("source")
    rows = [
        ("source", str(source)),
        ("sha256 of the data", str(schema.get("sha256") or splits.get("sha256") or "n/a")),
        ("samples in the splits", num(splits.get("n_rows"))),
        ("train / val / test", " / ".join(num(m.get(f"n_{s}")) for s in ("train", "val", "test"))),
        ("split rule", describe_split(splits.get("rule") or {})),
    ]
    rows += describe_schema(schema)
    blocks: list[Block] = []
    leak = leak_warning(splits.get("rule") or {})
    if leak:
        blocks.append(VerdictBlock("fail", "the split leaks", leak[0].upper() + leak[1:], 0.0))
    blocks.append(Facts(tuple(rows)))
    blocks.append(Facts(key_choices(ev.config)))
    env = m.get("environment") or {}
    trained = [
        ("parameters", num(m.get("n_params"))),
        (
            "epochs run",
            f"{m.get('epochs')} (best {m.get('best_epoch')}"
            f"{', stopped early' if m.get('stopped_early') else ''}"
            f"{', best weights restored' if m.get('restored_best') else ''})",
        ),
        ("training time", f"{num(m.get('wall_s'))} s"),
    ]
    trained += [(k, str(v)) for k, v in env.items()]
    blocks.append(Facts(tuple(trained)))
    if ev.given:
        blocks.append(Settings((("config.given.yaml", ev.given),), "the config as given"))
    return Section(
        "data", "What was trained on what data", tuple(blocks), verdict="fail" if leak else None
    )


def describe_split(rule: dict[str, Any]) -> str:
    """splits.json's rule in words: how the splits were drawn."""
    method = rule.get("method")
    if method == "group":
        groups = rule.get("groups") or {}
        return (
            f"by group ({rule.get('by')}): {rule.get('n_groups')} groups, "
            f"{groups.get('train')} / {groups.get('val')} / {groups.get('test')} in train / val / "
            "test; no group in two splits"
        )
    if method == "time":
        return (
            f"in time order ({rule.get('time')}), test last, gap of {rule.get('gap')} samples "
            "before validation and before test"
            + (f"; {rule['detail']}" if rule.get("detail") else "")
        )
    if method == "random":
        copies = rule.get("copies_kept_together")
        return (
            "shuffled"
            + (", stratified by class" if rule.get("stratified") else "")
            + (f"; {copies} exact copies kept in the split of their original" if copies else "")
        )
    return "as given by the caller" if method == "given" else "not recorded (an older run)"


def describe_schema(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """The schema as label: value lines: kind, task, inputs, features, classes."""
    out = [
        ("inputs", f"{schema.get('kind')} {tuple(schema.get('input_shape') or ())}"),
        ("task", str(schema.get("task"))),
    ]
    tab = schema.get("tabular") or (schema.get("series") or {}).get("features")
    if tab:
        numeric, categorical = tab.get("numeric") or [], tab.get("categorical") or []
        out.append((f"numeric features ({len(numeric)})", ", ".join(numeric) or "none"))
        if categorical:
            out.append(
                (
                    f"categorical features ({len(categorical)}, {tab.get('encoding')})",
                    ", ".join(categorical),
                )
            )
    series = schema.get("series")
    if series:
        out.append(
            (
                "windows",
                f"{series.get('window')} steps in, {series.get('horizon')} out "
                f"(target {series.get('target')})",
            )
        )
    target = schema.get("target") or {}
    classes = target.get("classes")
    if classes:
        shown = ", ".join(map(str, classes[:20])) + (" …" if len(classes) > 20 else "")
        out.append((f"classes ({len(classes)})", shown))
    if target.get("name"):
        out.append(("target column", str(target["name"])))
    tokenizer = schema.get("tokenizer")
    if tokenizer:
        out.append(
            (
                "tokenizer",
                f"{tokenizer.get('kind', '')} vocabulary of "
                f"{num(schema.get('n_outputs') if schema.get('task') == 'lm' else None)}".strip(),
            )
        )
    return out


def architecture(config: dict[str, Any]) -> str:
    """`mlp (hidden [256, 256], dropout 0.2, ...)` from the resolved model section."""
    model = dict(config.get("model") or {})
    arch = model.pop("arch", "?")
    model.pop("init_from", None)
    parts = [f"{k} {v}" for k, v in model.items() if v not in (None, [], {}, "")]
    return f"{arch} ({', '.join(parts)})" if parts else str(arch)


def key_choices(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    train = config.get("train") or {}
    data = config.get("data") or {}
    opt, sched = train.get("optimizer") or {}, train.get("schedule") or {}
    loss, stop = train.get("loss") or {}, train.get("early_stopping") or {}
    rows = [
        ("seed", config.get("seed")),
        ("split", ", ".join(f"{k} {v}" for k, v in (data.get("split") or {}).items())),
        (
            "augmentation",
            ", ".join(a.get("name", str(a)) for a in data.get("augment") or []) or "none",
        ),
        ("model", architecture(config)),
        ("epochs (at most) x batch size", f"{train.get('epochs')} x {train.get('batch_size')}"),
        (
            "optimizer",
            f"{opt.get('name')}, lr {num(opt.get('lr'))}, weight decay "
            f"{num(opt.get('weight_decay'))}",
        ),
        ("schedule", f"{sched.get('name')}, warm-up {sched.get('warmup_steps')} steps"),
        (
            "loss",
            f"{loss.get('name')}"
            + (
                f", class weights {loss.get('class_weights')}"
                if loss.get("class_weights") not in (None, "none")
                else ""
            )
            + (
                f", label smoothing {loss['label_smoothing']}"
                if loss.get("label_smoothing")
                else ""
            ),
        ),
        (
            "early stopping",
            f"{stop.get('metric')} ({stop.get('mode')}), patience "
            f"{stop.get('patience')}, restore best {stop.get('restore_best')}",
        ),
        ("precision, gradient clip", f"{train.get('precision')}, {train.get('grad_clip')}"),
        ("adversarial training", "on" if train.get("adversarial") else "off"),
    ]
    return tuple((k, num(v) if not isinstance(v, str) else v) for k, v in rows)


# ---------------------------------------------------------------- training and metrics


def training_section(ev: Evidence) -> Section:
    fig = plot_training(ev.history, ev.metrics.get("best_epoch"))
    if fig is None:
        return Section(
            "training",
            "Training curves",
            missing=f"no per-epoch history ({ev.path}/metrics.jsonl is empty)",
        )
    stop = (ev.config.get("train") or {}).get("early_stopping") or {}
    caption = (
        f"Per epoch, from metrics.jsonl; dotted: the best epoch by {stop.get('metric')} "
        f"({ev.metrics.get('best_epoch')}), whose weights the run keeps."
    )
    return Section(
        "training", "Training curves", (Plot(data_uri(fig), "training curves", caption),)
    )


def metrics_section(ev: Evidence) -> Section:
    """The final metrics per split, test last (the held-out number that counts)."""
    m = ev.metrics
    splits = [s for s in ("train", "val", "test") if isinstance(m.get(s), dict)]
    names = list(dict.fromkeys(k for s in splits for k in m[s]))
    rows = tuple((name, *(num(m[s].get(name)) for s in splits)) for name in names)
    n_train = m.get("n_train")
    headers = [
        f"train (a sample of {TRAIN_METRICS_CAP:,} of {n_train:,} rows)"
        if s == "train" and isinstance(n_train, int) and n_train > TRAIN_METRICS_CAP
        else s
        for s in splits
    ]
    blocks: list[Block] = [
        Table(("metric", *headers), rows, "test: the held-out split, never seen in training")
    ]
    return Section("metrics", "Test metrics", tuple(blocks))


# ---------------------------------------------------------------- explanations


def explain_section(ev: Evidence) -> Section:
    e = ev.explain
    if e is None:
        return Section(
            "explain",
            "Explanations: why it decides what it decides",
            missing=f"no explanations yet: gradwise explain {ev.path}",
        )
    blocks: list[Block] = []
    if e.get("method"):
        blocks.append(
            Text(
                f"{e['method']} attributions of {len(e.get('rows', []))} "
                f"{e.get('split')} rows against {e.get('baseline')}."
            )
        )
    fig = plot_attributions(list(e.get("rows") or []), e.get("method"))
    if fig is not None:
        blocks.append(
            Plot(
                data_uri(fig),
                "attributions per row",
                "Each row's largest attributions: red pushes towards the explained "
                "output, blue away from it.",
            )
        )
    table_rows = tuple(
        (
            str(r["row"]),
            str(r["prediction"]),
            str(r.get("explained", "")),
            "; ".join(f"{name} {value:+.3g}" for name, value in r.get("top", [])[:4]),
        )
        for r in e.get("rows") or []
    )
    if table_rows:
        blocks.append(
            Table(
                ("row", "prediction", "explains", "largest attributions"),
                table_rows,
                "one explanation per decision",
            )
        )
    if e.get("importance"):
        imp = e["importance"]
        blocks.append(
            Plot(
                data_uri(plot_importance(imp)),
                "global feature importance",
                f"Over {imp['n_rows']} test rows (attributions) and "
                f"{imp['n_permutation_rows']} (shuffles, {imp['n_repeats']} repeats); "
                f"the two rankings {'agree' if imp['top_agree'] else 'disagree'} "
                "on the top feature.",
            )
        )
    for fig, alt in (
        (plot_attention(list(e.get("attention") or [])), "attention entropy"),
        (plot_activations(list(e.get("activations") or [])), "activations"),
    ):
        if fig is not None:
            blocks.append(Plot(data_uri(fig), alt))
    for note in e.get("notes") or []:
        blocks.append(Text(str(note), note=True))
    blocks.append(Settings(flat(e.get("settings") or {}), "settings of the explanations"))
    return Section("explain", "Explanations: why it decides what it decides", tuple(blocks))
