"""The three documents, section by section: a model card, the EU AI Act's Annex IV (under its
own numbered points and lettered sub-points) and an SR 11-7 model validation record.

Each section holds points; a point is what the document's text asks (Annex IV's "2(g) the
validation and testing procedures used ...") and the items that answer it. The model card and
SR 11-7 have no lettered points: each of their sections is one unnamed point. `items_table`
writes a template's items as the docs' Markdown table, so the docs never drift from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradwise.reporting.document_items import (
    BASELINE,
    BENCH,
    CALIBRATION,
    CHALLENGE,
    COMPONENTS,
    CONFORMITY,
    CYBERSECURITY,
    DATA_COLLECTION,
    DATA_QUALITY,
    DEPLOYMENT_FORMS,
    DESIGN,
    DETAILS,
    ETHICS,
    EXPLAIN,
    FACTORS,
    FAIRNESS,
    GENERALISATION,
    HARDWARE,
    HISTORY,
    ILLUSTRATIONS,
    INPUTS,
    INSTRUCTIONS,
    INTERACTIONS,
    LIFECYCLE,
    LIMITATIONS,
    LOGGING,
    METRIC_CHOICE,
    METRICS,
    MONITOR,
    OPTIMIZE,
    OUT_OF_SCOPE,
    OVERSIGHT,
    POST_MARKET,
    PREDETERMINED,
    PROVENANCE,
    PROVIDER,
    PURPOSE,
    RATIONALE,
    RISK_MANAGEMENT,
    RISKS,
    ROBUSTNESS,
    SELECTIVE,
    SHIFT,
    SIGNOFF,
    SLICES,
    SPLITS,
    STANDARDS,
    STEPS,
    UNCERTAINTY,
    USER_INTERFACE,
    USERS,
    VERSIONS,
    Item,
)


@dataclass(frozen=True)
class Point:
    """What one point of the document asks, and the items that answer it.

    Attributes:
        ref: the point's number as the document numbers it ("1(a)", "4"); "" for none.
        asks: the document's wording, shortened; "" for none.
        items: the items that answer it, in the page's order.
    """

    ref: str
    asks: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Template:
    """A document: its title and its sections, each a title and its points."""

    title: str
    sections: tuple[tuple[str, tuple[Point, ...]], ...]

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(i for _, points in self.sections for p in points for i in p.items)


def _plain(title: str, *items: Item) -> tuple[str, tuple[Point, ...]]:
    """A section without numbered points."""
    return title, (Point("", "", items),)


MODEL_CARD = Template(
    "Model card (Mitchell et al. 2019)",
    (
        _plain("Model details", DETAILS, VERSIONS, DESIGN),
        _plain("Intended use", PURPOSE, USERS, OUT_OF_SCOPE),
        _plain("Factors", FACTORS, SLICES),
        _plain("Metrics", METRIC_CHOICE, CALIBRATION, UNCERTAINTY),
        _plain("Evaluation data", SPLITS, INPUTS),
        _plain("Training data", PROVENANCE, HISTORY),
        _plain(
            "Quantitative analyses",
            METRICS,
            BASELINE,
            GENERALISATION,
            ROBUSTNESS,
            SHIFT,
            DATA_QUALITY,
            FAIRNESS,
        ),
        _plain("Ethical considerations", ETHICS),
        _plain("Caveats and recommendations", LIMITATIONS, SELECTIVE, EXPLAIN),
    ),
)

ANNEX_IV = Template(
    "EU AI Act, Annex IV: technical documentation",
    (
        (
            "1. A general description of the AI system",
            (
                Point(
                    "1(a)",
                    "its intended purpose, the name of the provider and the version of the "
                    "system reflecting its relation to previous versions",
                    (PURPOSE, PROVIDER, DETAILS),
                ),
                Point(
                    "1(b)",
                    "how the AI system interacts with hardware or software, including other "
                    "AI systems, that are not part of the AI system itself",
                    (INTERACTIONS,),
                ),
                Point(
                    "1(c)",
                    "the versions of relevant software or firmware, and any requirements "
                    "related to version updates",
                    (VERSIONS,),
                ),
                Point(
                    "1(d)",
                    "all the forms in which the AI system is placed on the market or put into "
                    "service (software packages, downloads, APIs)",
                    (DEPLOYMENT_FORMS,),
                ),
                Point("1(e)", "the hardware on which the AI system is intended to run", (BENCH,)),
                Point(
                    "1(f)",
                    "where the AI system is a component of products, photographs or "
                    "illustrations of those products",
                    (ILLUSTRATIONS,),
                ),
                Point(
                    "1(g)",
                    "a basic description of the user-interface provided to the deployer",
                    (USER_INTERFACE,),
                ),
                Point("1(h)", "instructions for use for the deployer", (INSTRUCTIONS,)),
            ),
        ),
        (
            "2. A detailed description of the elements of the AI system and of the process "
            "for its development",
            (
                Point(
                    "2(a)",
                    "the methods and steps performed for the development, including recourse "
                    "to pre-trained systems or tools provided by third parties",
                    (STEPS, HISTORY),
                ),
                Point(
                    "2(b)",
                    "the design specifications: the general logic and algorithms, the key "
                    "design choices with their rationale and assumptions, including about the "
                    "persons it is used on, what it optimises for, and the trade-offs made",
                    (DESIGN, RATIONALE, OPTIMIZE),
                ),
                Point(
                    "2(c)",
                    "the system architecture, how software components build on or feed into "
                    "each other; the computational resources used to develop, train, test "
                    "and validate it",
                    (COMPONENTS, HARDWARE),
                ),
                Point(
                    "2(d)",
                    "the data requirements: the training data sets, their provenance, scope "
                    "and main characteristics; how the data was obtained and selected; "
                    "labelling procedures and data cleaning",
                    (PROVENANCE, SPLITS, DATA_QUALITY, DATA_COLLECTION),
                ),
                Point(
                    "2(e)",
                    "the assessment of the human oversight measures needed (Article 14), "
                    "including the technical measures that help deployers interpret the "
                    "outputs (Article 13(3)(d))",
                    (OVERSIGHT, SELECTIVE, EXPLAIN),
                ),
                Point(
                    "2(f)",
                    "where applicable, the pre-determined changes to the system and its "
                    "performance, and how continuous compliance is kept",
                    (PREDETERMINED,),
                ),
                Point(
                    "2(g)",
                    "the validation and testing procedures, the validation and testing data, "
                    "the metrics of accuracy, robustness and potentially discriminatory "
                    "impacts, and test logs and reports dated and signed",
                    (
                        METRICS,
                        BASELINE,
                        GENERALISATION,
                        CALIBRATION,
                        UNCERTAINTY,
                        FAIRNESS,
                        SIGNOFF,
                    ),
                ),
                Point(
                    "2(h)", "the cybersecurity measures put in place", (ROBUSTNESS, CYBERSECURITY)
                ),
            ),
        ),
        (
            "3. Monitoring, functioning and control of the AI system",
            (
                Point(
                    "3",
                    "its capabilities and limitations in performance, including the accuracy "
                    "for specific persons or groups and overall; foreseeable unintended "
                    "outcomes and sources of risk; specifications on input data",
                    (SLICES, LIMITATIONS, RISKS, INPUTS, SHIFT, LOGGING),
                ),
            ),
        ),
        (
            "4. Appropriateness of the performance metrics",
            (Point("4", "the appropriateness of the performance metrics", (METRIC_CHOICE,)),),
        ),
        (
            "5. Risk management system",
            (Point("5", "the risk management system (Article 9)", (RISK_MANAGEMENT,)),),
        ),
        (
            "6. Changes through the lifecycle",
            (
                Point(
                    "6", "relevant changes made by the provider through its lifecycle", (LIFECYCLE,)
                ),
            ),
        ),
        (
            "7. Standards applied",
            (
                Point(
                    "7",
                    "the harmonised standards applied, or the solutions adopted to meet the "
                    "requirements and the other standards and specifications applied",
                    (STANDARDS,),
                ),
            ),
        ),
        (
            "8. EU declaration of conformity",
            (Point("8", "a copy of the EU declaration of conformity", (CONFORMITY,)),),
        ),
        (
            "9. Post-market monitoring",
            (
                Point(
                    "9",
                    "the system to evaluate the AI system's performance after release "
                    "(Article 72), including the post-market monitoring plan",
                    (MONITOR, POST_MARKET),
                ),
            ),
        ),
    ),
)

SR11_7 = Template(
    "SR 11-7: model validation record",
    (
        _plain("Model purpose and use", PURPOSE, USERS, DETAILS),
        _plain("Conceptual soundness", DESIGN, HISTORY, GENERALISATION, EXPLAIN),
        _plain("Data", PROVENANCE, SPLITS, DATA_QUALITY),
        _plain("Outcomes analysis", METRICS, BASELINE, CALIBRATION, UNCERTAINTY, SLICES, FAIRNESS),
        _plain("Sensitivity analysis", ROBUSTNESS, OPTIMIZE),
        _plain("Ongoing monitoring", MONITOR, SHIFT, LOGGING),
        _plain("Limitations and compensating controls", LIMITATIONS, SELECTIVE, OVERSIGHT),
        _plain("Effective challenge", CHALLENGE),
    ),
)

TEMPLATES: dict[str, Template] = {"model-card": MODEL_CARD, "annex-iv": ANNEX_IV, "sr11-7": SR11_7}


def item_ids() -> tuple[str, ...]:
    """Every id a context file may answer, over all templates, sorted."""
    return tuple(sorted({i.id for t in TEMPLATES.values() for i in t.items}))


def items_table(name: str) -> str:
    """The template's items as a Markdown table: where it stands, the item with its context
    id, and what it is filled from (or what a person must supply)."""
    lines = ["| point | item (context id) | filled from |", "|---|---|---|"]
    for title, points in TEMPLATES[name].sections:
        for point in points:
            where = point.ref or title
            for i in point.items:
                source = i.origin if i.fill is not None else f"**needs a person**: {i.needs}"
                lines.append(f"| {where} | {i.title} (`{i.id}`) | {source} |")
    return "\n".join(lines) + "\n"
