"""Every hard rule of the contract, v1 and v1.1, on 10,000 random profiles sent over real
HTTP to the service under gunicorn (the batch endpoint, 1,000 profiles a call)."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from tests.contract_rules import check_contract
from tests.e2e.server import running_service
from tests.models.profiles import KNOWN_MEDICINES

pytestmark = pytest.mark.slow

PROFILES = 10_000
PER_CALL = 1_000
FORM_IDS = default_knowledge_base().form_ids


def random_profiles(n: int, seed: int) -> list[dict]:
    """Profiles over every field's range, with the v1.1 fields (serum magnesium, magnesium
    products, "avoid" medicines, German and misspelt names) and the rule edges well covered."""
    rng = np.random.default_rng(seed)
    edges_egfr = [None, None, 29.999, 30.0, 45.0, 59.99, 60.0, 90.0]
    edges_serum = [None, None, None, 0.5, 0.69, 0.70, 0.9, 1.05, 1.06, 2.0]
    profiles = []
    for _ in range(n):
        age = int(rng.choice([0, 1, 3, 4, 8, 9, 11, 12, 30, 64, 65, 80, 120])) if rng.random() < 0.5 \
            else int(rng.integers(0, 121))
        egfr = edges_egfr[rng.integers(len(edges_egfr))] if rng.random() < 0.5 else float(rng.uniform(0, 250))
        serum = edges_serum[rng.integers(len(edges_serum))] if rng.random() < 0.7 else float(rng.uniform(0, 10))
        profiles.append({
            "age": age,
            "sex": str(rng.choice(vocab.SEXES)),
            "pregnant": bool(rng.random() < 0.1),
            "breastfeeding": bool(rng.random() < 0.05),
            "egfr": None if egfr is None else round(egfr, 3),
            "dialysis": bool(rng.random() < 0.03),
            "serum_magnesium": None if serum is None else round(serum, 3),
            "conditions": [str(w) for w in rng.choice(vocab.CONDITIONS, rng.integers(0, 4), replace=False)],
            "goals": [str(w) for w in rng.choice(vocab.GOALS, rng.integers(0, 3), replace=False)],
            "medications": [str(m) for m in rng.choice((*KNOWN_MEDICINES, "zzq-unknown"), rng.integers(0, 4),
                                                         replace=False)],
            "preferences": {"avoid_forms": [str(f) for f in rng.choice(FORM_IDS, rng.integers(0, 3), replace=False)],
                            "max_units_per_day": None if rng.random() < 0.8 else int(rng.integers(1, 13))},
        })
    return profiles


def test_every_rule_holds_on_ten_thousand_random_profiles_over_http(tmp_path):
    profiles = random_profiles(PROFILES, seed=20261207)
    checked = 0
    with running_service(tmp_path) as base, requests.Session() as session:
        for start in range(0, PROFILES, PER_CALL):
            chunk = profiles[start: start + PER_CALL]
            options = {"limit": 20, "explain": start // PER_CALL % 2 == 0}
            body = {"items": [{"id": f"p{start + i}", "profile": p} for i, p in enumerate(chunk)], "options": options}
            response = session.post(base + "/v1/recommendations/batch", json=body, timeout=120)
            assert response.status_code == 200, response.text[:500]
            for profile, result in zip(chunk, response.json()["results"], strict=True):
                assert result["error"] is None, result["error"]
                check_contract(profile, result["output"], FORM_IDS)
                checked += 1
    assert checked == PROFILES
