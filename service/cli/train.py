"""``formwise train`` and ``formwise evaluate``: fit the ranker on the judged cases (and,
with ``--with-feedback``, on the outcomes stored by ``POST /v1/feedback``), write the artifact
the service loads at start, and show how the learned weights compare with the hand-set ones
on the same cross-validation folds. The learning itself lives in ``formwise.models.learning.training``."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _load(judgments_file):
    from formwise.models.knowledge.base import KnowledgeBaseError
    from formwise.models.knowledge.loading import default_knowledge_base
    from formwise.models.learning.training import judgments_path, load_judgments

    knowledge_base = default_knowledge_base()
    path = Path(judgments_file) if judgments_file else judgments_path(knowledge_base.supplement)
    try:
        return knowledge_base, load_judgments(knowledge_base, path), path
    except KnowledgeBaseError as error:
        raise click.ClickException(str(error)) from None


def _stored_outcomes() -> list[dict]:
    """The outcomes in the service's database (the one ``formwise serve`` uses): form and
    ratings only, there is nothing else in them. Only those on an answer this service issued
    and on a form that answer recommended count (rows stored before feedback was checked
    may hold forged ids); the others are left out and counted on the terminal."""
    from formwise.service.app import create_app
    from formwise.service.store.database import engine_of
    from formwise.service.store.queries import list_outcomes

    try:
        app = create_app()
    except Exception as error:
        raise click.ClickException(f"cannot open the service database: {type(error).__name__}: {error}") from None
    try:
        with app.app_context():
            stored = list_outcomes()
        answer_ids = app.extensions["formwise_answer_ids"]
        kept = []
        for item in stored:
            issued = answer_ids.read(item["recommendation_id"])
            if issued is not None and item["form"] in issued.forms:
                kept.append({key: item[key] for key in ("recommendation_id", "form", "tolerated", "helpful")})
        if len(kept) < len(stored):
            click.echo(f"left out {len(stored) - len(kept)} of {len(stored)} stored outcomes: not on a form of an "
                       "answer this service issued")
        return kept
    finally:
        engine_of(app).dispose()


def _comparison_lines(metrics: dict) -> list[str]:
    learned, hand_set = metrics["learned"], metrics["hand_set"]
    return [
        f"{'':<20}{'learned':>10}{'hand-set':>10}",
        f"{'NDCG@3':<20}{learned['ndcg_at_3']:>10.4f}{hand_set['ndcg_at_3']:>10.4f}",
        f"{'pairwise accuracy':<20}{learned['pairwise_accuracy']:>10.4f}{hand_set['pairwise_accuracy']:>10.4f}",
    ]


@click.command()
@click.option("--with-feedback", is_flag=True,
              help="Also learn from the outcomes in the service database (population-level preferences only).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the artifact (default: models/learning/artifacts/ranker.npz, the one served).")
@click.option("--judgments", "judgments_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A judgments CSV instead of the packaged one.")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True,
              help="Cross-validation folds for the metrics stored with the artifact.")
@click.option("--allow-worse", is_flag=True,
              help="Write the artifact even when it ranks the held-out judgments worse than the hand-set weights.")
def train(with_feedback, output, judgments_file, folds, allow_worse):
    """Fit the ranker and write the artifact the service loads at start."""
    from formwise.models.learning.artifact import ACTIVE_ARTIFACT, save_artifact
    from formwise.models.learning.training import train as fit

    knowledge_base, judgments, path = _load(judgments_file)
    outcomes = _stored_outcomes() if with_feedback else None
    try:
        result = fit(knowledge_base, judgments, outcomes=outcomes, folds=folds, judgments_file=path)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    metadata = result.metadata
    click.echo(f"trained {metadata['model_version']} in {metadata['fit_seconds']:.2f} s on {metadata['judged_cases']} "
               f"judged cases ({metadata['judged_pairs']} pairs) and {metadata['outcomes']} outcomes "
               f"({metadata['outcome_pairs']} pairs)")
    click.echo(f"cross-validated on the same {folds} folds of {metadata['ranked_cases']} ranked cases:")
    for line in _comparison_lines(metadata["metrics"]):
        click.echo("  " + line)
    metrics = metadata["metrics"]
    if metrics["learned"]["ndcg_at_3"] < metrics["hand_set"]["ndcg_at_3"] and not allow_worse:
        raise click.ClickException("the learned weights rank the held-out judgments worse than the hand-set ones; "
                                   "nothing was written (--allow-worse writes it anyway)")
    written = save_artifact(result, output or ACTIVE_ARTIFACT)
    click.echo(f"wrote {written}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--judgments", "judgments_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A judgments CSV instead of the packaged one.")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fold split.")
def evaluate(as_json, judgments_file, folds, seed):
    """Cross-validated NDCG@3 and pairwise accuracy, learned vs hand-set, on the same folds."""
    from formwise.models.engine.scoring import Engine
    from formwise.models.learning.training import JudgedCases, cross_validate

    knowledge_base, judgments, _ = _load(judgments_file)
    engine = Engine(knowledge_base)
    try:
        metrics = cross_validate(JudgedCases.build(judgments, engine), engine, folds=folds, seed=seed)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(f"{metrics['cases']} ranked judged cases, {folds} folds (seed {seed}), means over folds:")
    for line in _comparison_lines(metrics):
        click.echo("  " + line)


def register(main: click.Group) -> None:
    main.add_command(train)
    main.add_command(evaluate)
