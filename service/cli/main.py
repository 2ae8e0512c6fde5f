"""The ``formwise`` command: recommend for one profile, list forms, serve the API, and
(in formwise.service.cli.score) score files."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click
import marshmallow as ma

from formwise.models.knowledge import vocabulary as vocab


def _recommender():
    from formwise.models.recommender import Recommender

    return Recommender()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """formwise: rank magnesium supplement forms for one person. Not medical advice:
    every answer says to consult a clinician."""


@main.command()
@click.option("--age", type=int, required=True, help="Age in whole years (0-120).")
@click.option("--sex", type=click.Choice(vocab.SEXES), default="unspecified", show_default=True)
@click.option("--pregnant", is_flag=True)
@click.option("--breastfeeding", is_flag=True)
@click.option("--egfr", type=float, default=None, help="eGFR in mL/min/1.73 m² (omit when unknown).")
@click.option("--dialysis", is_flag=True)
@click.option("--serum-magnesium", type=float, default=None,
              help="Serum magnesium in mmol/L (mg/dL divided by 2.43; omit when unknown).")
@click.option("--condition", "conditions", multiple=True, type=click.Choice(vocab.CONDITIONS),
              help="Repeat for several.")
@click.option("--goal", "goals", multiple=True, type=click.Choice(vocab.GOALS), help="Repeat for several.")
@click.option("--medication", "medications", multiple=True, help="Generic or brand name, or rxcui:NNNN. Repeat.")
@click.option("--avoid", "avoid_forms", multiple=True, help="A form id to exclude. Repeat.")
@click.option("--max-units", type=int, default=None, help="Most tablets or capsules a day (1-12).")
@click.option("--limit", type=int, default=3, show_default=True, help="How many forms to rank (1-20).")
@click.option("--locale", default="en", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
def recommend(age, sex, pregnant, breastfeeding, egfr, dialysis, serum_magnesium, conditions, goals, medications,
              avoid_forms, max_units, limit, locale, as_json):
    """Rank the forms for one profile."""
    from formwise.service.api.schemas import OptionsSchema, ProfileSchema

    raw_profile = {
        "age": age, "sex": sex, "pregnant": pregnant, "breastfeeding": breastfeeding, "egfr": egfr,
        "dialysis": dialysis, "serum_magnesium": serum_magnesium, "conditions": list(conditions), "goals": list(goals),
        "medications": list(medications),
        "preferences": {"avoid_forms": list(avoid_forms), "max_units_per_day": max_units},
    }
    try:
        profile = ProfileSchema().load(raw_profile)
        options = OptionsSchema().load({"limit": limit, "locale": locale})
    except ma.ValidationError as error:
        from formwise.service.api.errors import flatten_messages

        for item in flatten_messages(error.messages):
            click.echo(f"error: {item['field']}: {item['message']}", err=True)
        sys.exit(2)
    answer = _recommender().recommend([profile], limit=options["limit"], locale=vocab.resolve_locale(locale))[0]
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    click.echo(render_answer(answer))


def render_answer(answer: dict) -> str:
    """A readable table of one answer, caveats first when they are serious."""
    lines = []
    width = shutil.get_terminal_size((100, 20)).columns
    serious = [c for c in answer["caveats"] if c["severity"] != "info"]
    for caveat in serious:
        lines.append(f"[{caveat['severity'].upper()}] {caveat['text']}")
    if serious:
        lines.append("")
    if answer["recommendations"]:
        lines.append(f"{'rank':<5}{'form':<14}{'score':>7}  {'status':<9}{'elemental mg/day':>17}  reasons")
        for rec in answer["recommendations"]:
            dose = rec["dose"]["elemental_mg_per_day"]
            reasons = "; ".join(f"{r['effect']} {r['text']}" for r in rec["reasons"][:2])
            line = (f"{rec['rank']:<5}{rec['form']:<14}{rec['score']:>7.3f}  {rec['status']:<9}"
                    f"{dose['min']:>8}-{dose['max']:<8}  {reasons}")
            lines.append(line[: max(width, 80)])
            for caveat in rec["caveats"]:
                lines.append(f"{'':<5}  {caveat['code']}: {caveat['text']}"[: max(width, 80)])
    else:
        lines.append("No form is recommended for this profile.")
    if answer["excluded"]:
        lines.append("")
        lines.append("Excluded: " + ", ".join(
            f"{item['form']} ({', '.join(r['code'] for r in item['reasons'])})" for item in answer["excluded"]))
    for interaction in answer["interactions"]:
        lines.append(f"Interaction: {interaction['medication']} ({interaction['drug_class']}, "
                     f"{interaction['management']}): {interaction['text']}")
    if answer["unrecognized_medications"]:
        lines.append("Not recognised (not checked): " + ", ".join(answer["unrecognized_medications"]))
    for suggestion in answer.get("medication_suggestions", ()):
        lines.append(f"  {suggestion['sent']}: did you mean {' or '.join(suggestion['did_you_mean'])}?")
    info = [c for c in answer["caveats"] if c["severity"] == "info"]
    if info:
        lines.append("")
        lines.extend(f"Note: {c['text']}" for c in info)
    lines.append("")
    lines.append(answer["disclaimer"])
    return "\n".join(lines)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the /v1/forms JSON.")
def forms(as_json):
    """List the forms in the knowledge base with their main attributes."""
    from formwise.service.api.forms import form_record

    recommender = _recommender()
    kb = recommender.knowledge_base
    if as_json:
        click.echo(json.dumps({"knowledge_base_version": kb.version,
                               "forms": [form_record(f, kb) for f in kb.forms]}, indent=2, ensure_ascii=False))
        return
    click.echo(f"knowledge base {kb.version}")
    header = f"{'id':<13}{'name':<24}{'% Mg':>6}{'absorption':>12}{'laxative':>10}{'GI tolerance':>14}{'cost':>6}"
    click.echo(header)
    for form in kb.forms:
        a = form.attributes
        click.echo(f"{form.id:<13}{form.name:<24}{a['elemental_fraction'].value * 100:>6.1f}"
                   f"{a['absorption'].value:>12.2f}{a['laxative_strength'].value:>10.2f}"
                   f"{a['gi_tolerance'].value:>14.2f}{a['relative_cost'].value:>6.2f}")


@main.command()
@click.option("--bind", default=None, help="HOST:PORT (default 127.0.0.1:8000 or FORMWISE_BIND).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: the CPU count).")
def serve(bind, workers):
    """Serve the API with gunicorn and the project's settings."""
    import formwise.service.ops.gunicorn_config as settings

    gunicorn = shutil.which("gunicorn", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                              os.environ.get("PATH", "")]))
    if gunicorn is None:
        raise click.ClickException("gunicorn is not installed")
    command = [gunicorn, "-c", settings.__file__]
    if bind:
        command += ["--bind", bind]
    if workers:
        command += ["--workers", str(workers)]
    command.append("formwise.service.wsgi:app")
    os.execv(gunicorn, command)


@main.command()
def warm():
    """Compile the scoring loop into numba's cache now (for a container image or a fresh
    install), so that the next `formwise serve` or command starts without compiling."""
    import time

    from formwise.models.engine import kernel

    started = time.perf_counter()
    _recommender()
    stats = kernel.score_profiles.stats
    compiled = bool(sum(stats.cache_misses.values()))
    click.echo(f"scoring loop {'compiled and cached' if compiled else 'already cached'} in "
               f"{time.perf_counter() - started:.1f} s ({stats.cache_path})")


def _register_optional_commands():
    """Commands that live in their own modules, registered when importable."""
    import importlib

    for module_name in ("formwise.service.cli.score", "formwise.service.cli.shops", "formwise.service.cli.database",
                        "formwise.service.cli.train"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(main)


_register_optional_commands()
