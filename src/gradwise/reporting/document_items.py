"""What the regulated documents ask, item by item, and where each answer comes from.

An item with a filler is answered from the run's files (`document_fillers.py`); an item
without one only a person can answer, and its `needs` says what is missing and why it
matters. Items are shared by the templates that ask the same question (one context id
answers it everywhere); the templates in `document_templates.py` list them in each
document's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradwise.reporting import document_fillers as fill
from gradwise.reporting.document_fillers import Drawer, Filler


@dataclass(frozen=True)
class Item:
    """One question of a document.

    Attributes:
        id: the key a context file answers it under (shared by the templates that ask it).
        title: the question, worded as the template words it.
        needs: what a person must supply when the run cannot answer, and why it matters.
        fill: reads the answer from the run; None: only a person knows.
        runs: the check or verb whose files would answer it ("calibration", "monitor").
        origin: the files (and keys) the answer is read from, for the docs' tables.
        draw: the plot the same file holds, embedded beside the answer.
    """

    id: str
    title: str
    needs: str
    fill: Filler | None = None
    runs: str | None = None
    origin: str = ""
    draw: Drawer | None = None


def person(item_id: str, title: str, needs: str) -> Item:
    """An item only a person can answer (from the context file)."""
    return Item(item_id, title, needs)


# ---------------------------------------------------------------- answered by a person

PURPOSE = person(
    "intended_purpose",
    "Intended purpose",
    "the task the model may be used for; every other answer is judged against it",
)
PROVIDER = person(
    "provider",
    "Provider and version of the system",
    "the provider's name and how this version relates to earlier ones are the provider's record",
)
USERS = person(
    "users",
    "Intended users and deployers",
    "who acts on the output decides what they must be told and trained on",
)
OUT_OF_SCOPE = person(
    "out_of_scope",
    "Uses out of scope",
    "uses the evidence does not cover must be ruled out by the people who know them",
)
INTERACTIONS = person(
    "interactions",
    "Interaction with other hardware, software or AI systems",
    "what the model is wired into is decided where it is deployed, not in the run",
)
DEPLOYMENT_FORMS = person(
    "deployment_forms",
    "Forms in which the system is placed on the market or put into service",
    "whether it ships as a package, a download or an API is the provider's decision",
)
ILLUSTRATIONS = person(
    "product_illustrations",
    "Photographs or illustrations of the product it is part of",
    "only where the system is a component of a product; the provider says if it is",
)
USER_INTERFACE = person(
    "user_interface",
    "The user interface provided to the deployer",
    "the screens and tools deployers use are built outside the run",
)
INSTRUCTIONS = person(
    "instructions_for_use",
    "Instructions for use for the deployer",
    "Article 13 instructions are written for the deployer by the provider",
)
RATIONALE = person(
    "design_rationale",
    "Rationale and assumptions, including about the persons it is used on",
    "why this design fits the people it decides about is a judgement the builders record",
)
DATA_COLLECTION = person(
    "data_collection",
    "How the data was obtained, selected, labelled and cleaned",
    "the run holds the data's fingerprint, not how it was gathered or labelled",
)
OVERSIGHT = person(
    "human_oversight",
    "Human oversight arrangements",
    "who reviews abstentions and alerts, with what authority, is an organisational decision",
)
PREDETERMINED = person(
    "predetermined_changes",
    "Pre-determined changes to the system and its performance",
    "planned retraining or updates and how compliance is kept are the provider's plan",
)
SIGNOFF = person(
    "test_signoff",
    "Test reports dated and signed by the responsible persons",
    "the audit files are the test logs; only the responsible persons can sign them",
)
CYBERSECURITY = person(
    "cybersecurity",
    "Cybersecurity measures put in place",
    "access control, model and data protection live in the deployment, not in the run",
)
LIMITATIONS = person(
    "limitations",
    "Known limitations",
    "limits known to the builders and domain experts (populations, conditions) that no "
    "measurement here reveals",
)
RISKS = person(
    "foreseeable_risks",
    "Foreseeable unintended outcomes and sources of risk",
    "risks to health, safety, fundamental rights and of discrimination follow from the "
    "intended purpose, which a person sets",
)
ETHICS = person(
    "ethical_considerations",
    "Ethical considerations",
    "harms to the people the model decides about are judged by people, not measured here",
)
FACTORS = person(
    "relevant_factors",
    "Relevant factors (groups, instruments, environments)",
    "which groups and conditions matter is domain knowledge",
)
RISK_MANAGEMENT = person(
    "risk_management",
    "Risk management system (Article 9)",
    "the risks to health, safety and rights are identified by the provider",
)
LIFECYCLE = person(
    "lifecycle_changes",
    "Relevant changes made through the lifecycle",
    "retraining and version history are the provider's record",
)
STANDARDS = person(
    "standards",
    "Harmonised standards or other specifications applied",
    "which standards were followed is the provider's choice",
)
CONFORMITY = person(
    "declaration_of_conformity",
    "A copy of the EU declaration of conformity (Article 47)",
    "only the provider can declare conformity",
)
POST_MARKET = person(
    "post_market_plan",
    "The post-market monitoring plan (Article 72)",
    "who watches the alerts and what they do is an organisational plan",
)
CHALLENGE = person(
    "effective_challenge",
    "Independent review and effective challenge",
    "SR 11-7 asks for critical review by qualified people independent of the builders",
)

# ---------------------------------------------------------------- answered by the run

DETAILS = Item(
    "model_details",
    "Model details",
    "",
    fill.model_details,
    origin="metrics.json (`n_params`), config.yaml (`model.arch`)",
)
VERSIONS = Item(
    "versions",
    "Versions of the software",
    "metrics.json has no environment: retrain with this gradwise version",
    fill.versions,
    origin="metrics.json (`environment`)",
)
HARDWARE = Item(
    "hardware",
    "Computational resources used to train",
    "metrics.json has no environment: retrain with this gradwise version",
    fill.hardware,
    origin="metrics.json (`environment`, `wall_s`)",
)
DESIGN = Item(
    "design_choices",
    "Design choices: architecture and training",
    "",
    fill.design,
    origin="config.yaml (`model`, `train`)",
)
STEPS = Item(
    "development_steps",
    "Methods and steps of development, pre-trained models used",
    "",
    fill.development_steps,
    origin="config.yaml (`model.init_from`) and the files each step wrote",
)
COMPONENTS = Item(
    "components",
    "System architecture: how the components feed into each other",
    "",
    fill.components,
    origin="model.json (`input`, `schema`, `calibration`)",
)
INPUTS = Item(
    "input_spec",
    "Specifications on input data",
    "",
    fill.input_spec,
    origin="model.json (`schema`)",
)
PROVENANCE = Item(
    "data_provenance",
    "Training data: provenance and fingerprint",
    "the data's source and hash make the training reproducible; splits.json is missing "
    "(retrain with this gradwise version)",
    fill.data_provenance,
    origin="splits.json (`source`, `sha256`, `n_rows`)",
)
SPLITS = Item(
    "data_splits",
    "Training, validation and test splits",
    "without the split record, no one can check that test rows stayed unseen",
    fill.splits,
    origin="splits.json (rows per split)",
)
HISTORY = Item(
    "training_history",
    "Training history",
    "metrics.jsonl is missing: the training curve shows whether it converged",
    fill.training_history,
    origin="metrics.json (`best_epoch`); plot from metrics.jsonl",
    draw=fill.draw_training,
)
METRICS = Item(
    "test_metrics",
    "Performance on held-out data",
    "metrics.json has no test scores; evaluate with gradwise evaluate RUN",
    fill.test_metrics,
    origin="metrics.json (`test`)",
)
METRIC_CHOICE = Item(
    "metric_choice",
    "Appropriateness of the performance metrics",
    "metrics.json has no test scores to justify",
    fill.metric_choice,
    origin="metrics.json (`test`)",
)
EXPLAIN = Item(
    "explanations",
    "Explanations of the model's decisions",
    "attributions show what drives the output",
    fill.explain,
    "explain",
    "explain/explain.json (`method`, `importance`); plot: feature importance",
    fill.draw_importance,
)
OPTIMIZE = Item(
    "optimisations",
    "Optimised variants and their trade-off",
    "a quantised or distilled variant must be evaluated before it replaces the model",
    fill.optimize,
    "optimize",
    "artifacts/tradeoff.json (`rows`, `verdict`), artifacts/*/; plot: the trade-off",
    fill.draw_tradeoff,
)
BENCH = Item(
    "cost",
    "Hardware it runs on: cost to run",
    "latency and memory decide where it can run",
    fill.bench,
    "bench",
    "artifacts/bench.json (`costs`); plot: latency and throughput by batch size",
    fill.draw_bench,
)
MONITOR = Item(
    "monitoring",
    "Ongoing monitoring in production",
    "drift and accuracy in production are watched only once predictions are stored",
    fill.monitor,
    "monitor",
    "monitor/report.json (`served`), monitor/windows.json; plot: the timeline",
    fill.draw_monitor,
)
LOGGING = Item(
    "logging",
    "Logging of the system's operation",
    "records of every prediction let decisions be traced afterwards",
    fill.logging,
    "monitor",
    "monitor/report.json (`store`, `served`)",
)
SELECTIVE = Item(
    "abstention",
    "Human oversight: when the model abstains",
    "a certified abstention rule says which cases go to a person",
    fill.selective_oversight,
    "selective",
    "audit/selective.json (`certificates`); plot: risk against coverage",
    fill.draw_check("selective"),
)


def _audit_item(
    name: str, title: str, needs: str, key: tuple[str, ...] = (), plot: str = ""
) -> Item:
    quoted = f"`metrics.{'.'.join('<graded>' if k == '*' else k for k in key)}`" if key else ""
    origin = f"audit/{name}.json (verdict, summary, {quoted or '`headline`'})"
    return Item(
        f"audit_{name}",
        title,
        needs,
        fill.check(name, key),
        name,
        origin + (f"; plot: {plot}" if plot else ""),
        fill.draw_check(name),
    )


GENERALISATION = _audit_item(
    "generalisation",
    "Generalisation and learning curve",
    "shows whether more data would help",
    plot="the learning curve",
)
BASELINE = _audit_item(
    "baseline",
    "Benchmarking against simple baselines",
    "a network that loses to a linear model should not ship",
    ("network",),
    plot="the network against each baseline",
)
CALIBRATION = _audit_item(
    "calibration",
    "Calibration: is the confidence honest",
    "decisions taken on the probability need it to be honest",
    ("*", "ece"),
    plot="reliability diagram",
)
UNCERTAINTY = _audit_item(
    "uncertainty",
    "Prediction sets with a coverage guarantee",
    "says how uncertain each answer is",
    plot="coverage and set sizes",
)
ROBUSTNESS = _audit_item(
    "robustness",
    "Robustness to perturbed inputs (accuracy, adversarial attacks)",
    "small input changes that flip the output are an attack surface",
    plot="accuracy against perturbation size",
)
SHIFT = _audit_item(
    "shift",
    "Detecting a shift in the input data, and the power to detect it",
    "a shift no detector can see goes unnoticed in production",
    plot="detection power",
)
DATA_QUALITY = _audit_item(
    "data_quality",
    "Data quality: label errors and duplicates",
    "label errors cap the accuracy and bias the evaluation",
    plot="suspected label errors",
)
SLICES = _audit_item(
    "slices",
    "Accuracy across slices of the data",
    "a good average can hide a bad group",
    plot="metric by slice",
)
FAIRNESS = _audit_item(
    "fairness",
    "Bias: outcomes across protected groups",
    "disparate outcomes across groups are the bias the law asks about",
    plot="outcomes by group",
)
