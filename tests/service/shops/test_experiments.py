"""A/B against a control (issue 21, part 3), on SQLite and PostgreSQL: a per-visit split of the
widget's traffic at the shop's share, a control that shows the shop's default product for the
goal and never a form the answer does not recommend, and a report of both arms with the
confidence interval of their difference."""

from __future__ import annotations

import json
import uuid

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from formwise.service.cli.main import main
from formwise.service.shops import keys as shops
from formwise.service.shops.experiments import arm_for
from formwise.service.store import experiments

ORIGIN = "https://trial.example"
PROFILE = {"age": 45, "goals": ["sleep"]}


def product(sku, form):
    return {"sku": sku, "name": f"{form} {sku}", "form": form, "elemental_mg_per_unit": 100, "units_per_pack": 60,
            "price": 10, "currency": "EUR", "url": f"{ORIGIN}/{sku}"}


@pytest.fixture()
def shop(db_app):
    with db_app.app_context():
        created = shops.create_shop(f"trial-{uuid.uuid4().hex[:8]}", [ORIGIN])
    forms = ("glycinate", "citrate", "malate", "oxide", "chloride", "lactate", "taurate", "carbonate")
    catalog = {"products": [product(f"P-{form}", form) for form in forms]}
    response = db_app.test_client().put("/v1/catalog", json=catalog, headers={"X-API-Key": created["secret_key"]})
    assert response.status_code == 200
    return created


def ask(client, shop, visit, profile=PROFILE, limit=3, key="publishable"):
    headers = {"X-API-Key": shop[f"{key}_key"]}
    if key == "publishable":
        headers |= {"Origin": ORIGIN, "X-Formwise-Session": visit}
    response = client.post("/v1/recommendations", json={"profile": profile, "options": {"limit": limit}},
                           headers=headers)
    assert response.status_code == 200, response.data
    return response.get_json()


def visit_in(arm, experiment_id, share):
    return next(f"visit-{n:06d}" for n in range(10_000) if arm_for(experiment_id, share, f"visit-{n:06d}") == arm)


def test_the_split_is_per_visit_and_follows_the_share():
    experiment_id = str(uuid.uuid4())
    visits = [f"visit-{n:06d}" for n in range(4000)]
    arms = [arm_for(experiment_id, 0.3, visit) for visit in visits]
    assert arms == [arm_for(experiment_id, 0.3, visit) for visit in visits]  # the same visit, the same arm
    assert 0.27 < arms.count("control") / len(arms) < 0.33
    assert {arm_for(str(uuid.uuid4()), 0.3, visits[0]) for _ in range(60)} == {"control", "ranking"}  # per experiment


def test_a_control_visit_sees_the_default_product_and_the_same_safety_content(db_app, shop):
    client = db_app.test_client()
    ranking = ask(client, shop, "no-experiment-yet")
    assert "experiment" not in ranking
    default_form = ranking["recommendations"][1]["form"]  # a form the engine recommends, not its first
    with db_app.app_context():
        experiment_id = experiments.start_experiment(shop["name"], 0.5, {"general": "P-oxide",
                                                                         "sleep": f"P-{default_form}"})
    control = ask(client, shop, visit_in("control", experiment_id, 0.5))
    assert control["experiment"] == {"id": experiment_id, "arm": "control", "product": f"P-{default_form}",
                                     "safety_override": False}
    assert [(item["rank"], item["form"]) for item in control["recommendations"]] == [(1, default_form)]
    assert [p["sku"] for p in control["recommendations"][0]["products"]] == [f"P-{default_form}"]
    for field in ("caveats", "excluded", "interactions", "max_severity", "disclaimer"):
        assert control[field] == ranking[field]
    treated = ask(client, shop, visit_in("ranking", experiment_id, 0.5))
    assert treated["experiment"]["arm"] == "ranking"
    ranked_forms = [item["form"] for item in ranking["recommendations"]]
    assert [item["form"] for item in treated["recommendations"]] == ranked_forms
    server = ask(client, shop, "", key="secret")  # the shop's own calls take no part
    assert "experiment" not in server


def test_the_control_never_shows_a_form_the_answer_does_not_recommend(db_app, shop):
    client = db_app.test_client()
    ranking = ask(client, shop, "before", limit=1)
    top = ranking["recommendations"][0]["form"]
    other = next(form for form in ("oxide", "carbonate", "citrate", "glycinate") if form != top)
    with db_app.app_context():
        experiment_id = experiments.start_experiment(shop["name"], 0.9, {"general": f"P-{other}"})
    control = ask(client, shop, visit_in("control", experiment_id, 0.9), limit=1)
    assert control["experiment"]["safety_override"] is True and control["experiment"]["product"] is None
    assert [item["form"] for item in control["recommendations"]] == [top]
    assert all(p["sku"] != f"P-{other}" for item in control["recommendations"] for p in item["products"])


def test_the_report_compares_both_arms_with_a_confidence_interval(db_app, shop, runner, database_url):
    client = db_app.test_client()
    first = ask(client, shop, "before")["recommendations"][0]["form"]
    with db_app.app_context():
        experiment_id = experiments.start_experiment(shop["name"], 0.5, {"general": f"P-{first}"})
    bought = {"ranking": 0, "control": 0}
    answered = {"ranking": 0, "control": 0}
    for n in range(40):
        visit = f"visit-{n:06d}"
        answer = ask(client, shop, visit)
        arm = answer["experiment"]["arm"]
        answered[arm] += 1
        if n % (3 if arm == "ranking" else 5) == 0:
            sku = answer["recommendations"][0]["products"][0]["sku"]
            response = client.post("/v1/events", json={
                "type": "purchase", "recommendation_id": answer["recommendation_id"], "sku": sku,
                "order_id": f"o-{n}"}, headers={"X-API-Key": shop["secret_key"]})
            assert response.status_code == 201
            bought[arm] += 1
    assert min(answered.values()) > 5
    report = client.get("/v1/reports/conversions", headers={"X-API-Key": shop["secret_key"]}).get_json()
    trial = report["experiment"]
    assert trial["experiment_id"] == experiment_id and trial["running"] is True
    for arm in ("ranking", "control"):
        assert (trial["arms"][arm]["answers"], trial["arms"][arm]["converted"]) == (answered[arm], bought[arm])
    low, high = confint_proportions_2indep(bought["ranking"], answered["ranking"], bought["control"],
                                           answered["control"], method="newcomb", compare="diff")
    difference = bought["ranking"] / answered["ranking"] - bought["control"] / answered["control"]
    assert trial["difference"]["ranking_minus_control"] == pytest.approx(difference, abs=1e-4)
    assert trial["difference"]["ci95"] == pytest.approx([low, high], abs=1e-4)
    ci_low, ci_high = trial["difference"]["ci95"]
    assert ci_low <= trial["difference"]["ranking_minus_control"] <= ci_high

    stopped = runner.invoke(main, ["shops", "experiment", shop["name"], "--stop", "--json"],
                            env={"DATABASE_URL": database_url})
    assert stopped.exit_code == 0 and json.loads(stopped.output)["running"] is False
    assert "experiment" not in ask(client, shop, "after-the-stop")
    text = runner.invoke(main, ["shops", "report", shop["name"]], env={"DATABASE_URL": database_url}).output
    assert f"experiment {experiment_id} (stopped" in text and "95% CI" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--control-share", "0.95", "--default", "general=P-oxide"], "0.95"),
    (["--control-share", "0.2", "--default", "sleep=P-oxide"], "general"),
    (["--control-share", "0.2", "--default", "general=NOPE"], "NOPE"),
    (["--control-share", "0.2", "--default", "naps=P-oxide"], "naps"),
    (["--stop", "--control-share", "0.2"], "--stop"),
])
def test_the_experiment_command_names_what_is_wrong(shop, runner, database_url, args, message):
    result = runner.invoke(main, ["shops", "experiment", shop["name"], *args], env={"DATABASE_URL": database_url})
    assert result.exit_code != 0 and message in result.output


def test_the_experiment_command_starts_and_shows_it(shop, runner, database_url):
    started = runner.invoke(main, ["shops", "experiment", shop["name"], "--control-share", "0.2", "--default",
                                   "general=P-citrate", "--default", "sleep=P-glycinate"],
                            env={"DATABASE_URL": database_url})
    assert started.exit_code == 0, started.output
    assert "running, control share 20%" in started.output and "control product for sleep: P-glycinate" in started.output
