"""A/B against a control (issue 21, part 3): a shop can show a share of its widget visits its
own default product for the person's goal instead of the ranking, and compare the arms.

The split is per visit: the widget's visit token (``X-Formwise-Session``, the same token its
events carry; without one, the answer) and the experiment's id are hashed to a number in
[0, 1), and the visit is in the control when that number is below the shop's control share.
Only widget traffic (the publishable key) takes part; the shop's own server calls do not.

A control answer keeps everything the engine says about safety (caveats, exclusions,
interactions, timing); only its ranking is replaced by the engine's entry for the default
product's form. When that form is not among the forms the engine recommends for this person
(it is excluded, or ranks below the answer's limit), the control answer shows the ranking and
is counted as a safety override: the safety rules come before any experiment."""

from __future__ import annotations

import hashlib
import re

from flask import request

from formwise.service.shops.catalog import shop_index
from formwise.service.shops.keys import current_shop

SESSION_HEADER = "X-Formwise-Session"
SESSION_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def arm_for(experiment_id: str, control_share: float, visit: str) -> str:
    """'control' or 'ranking', the same for every answer of a visit in one experiment."""
    digest = hashlib.blake2b(f"{experiment_id}|{visit}".encode(), digest_size=8).digest()
    return "control" if int.from_bytes(digest, "big") / 2**64 < control_share else "ranking"


def apply_experiment(answers: list[dict], locale: str, preferences: list[dict]) -> None:
    """Answer hook (before the catalog's): each widget answer of a shop running an experiment
    gets ``experiment`` ({id, arm, product, safety_override}); a control answer keeps only the
    engine's entry for the default product's form, and the catalog lists only that product."""
    shop = current_shop()
    if shop is None or shop.key_kind != "publishable":
        return
    index = shop_index(shop.id)
    experiment = index.experiment
    if experiment is None:
        return
    sent = request.headers.get(SESSION_HEADER)
    visit = sent if sent is not None and SESSION_PATTERN.match(sent) else None
    for answer, wishes in zip(answers, preferences, strict=True):
        arm = arm_for(experiment.experiment_id, experiment.control_share, visit or answer["recommendation_id"])
        marker = {"id": experiment.experiment_id, "arm": arm, "product": None, "safety_override": None}
        if arm == "control":
            sku = experiment.control_sku(wishes.get("goals"))
            product = index.by_sku.get(sku)
            chosen = None if product is None else next(
                (item for item in answer["recommendations"] if item["form"] == product["form"]), None)
            marker["safety_override"] = chosen is None
            if chosen is not None:
                answer["recommendations"] = [{**chosen, "rank": 1}]
                marker["product"] = sku
        answer["experiment"] = marker


def init_app(app, api) -> None:
    app.extensions["formwise_answer_hooks"].append(apply_experiment)
