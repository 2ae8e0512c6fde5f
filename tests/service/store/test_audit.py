"""The audit log (issue 19, part 8): key, origin and catalog changes and CDS calls are
recorded with who did them, and `formwise audit` reads them back; no profile data, and the
patient id only as a keyed hash."""

from __future__ import annotations

import json
import uuid

from formwise.service.cli.main import main
from formwise.service.shops import keys as shops
from tests.service.clinical.test_hooks import SERVICE, condition, hook_body, medication_statement, prefetch

ORIGIN = "https://audit.example"


def test_changes_and_cds_calls_are_audited_and_read_back(db_app, database_url, runner):
    name = f"audit-{uuid.uuid4().hex[:8]}"
    with db_app.app_context():
        created = shops.create_shop(name, [ORIGIN])
    env = {"DATABASE_URL": database_url}
    assert runner.invoke(main, ["shops", "add-origin", name, "https://second.audit.example"], env=env).exit_code == 0
    client = db_app.test_client()
    product = {"sku": "GLY", "name": "Glycinate", "form": "glycinate", "elemental_mg_per_unit": 100,
               "units_per_pack": 60, "price": 10, "currency": "EUR", "url": f"{ORIGIN}/gly"}
    assert client.put("/v1/catalog", json={"products": [product]},
                      headers={"X-API-Key": created["secret_key"]}).status_code == 200
    with db_app.app_context():
        shops.revoke_key(created["publishable_key"], replace=True)
    private = prefetch(conditions=[condition("37796009")], statements=[medication_statement("zzq-private-medicine")])
    for _ in range(2):
        body = hook_body(private)
        body["context"]["patientId"] = "patient-4711"
        assert client.post(SERVICE, json=body).status_code == 200

    result = runner.invoke(main, ["audit", "--json"], env=env)
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    mine = [entry for entry in entries if entry["subject"] in (name, str(created["shop_id"]))]
    assert [entry["action"] for entry in mine] == ["key.revoked", "catalog.replaced", "origin.added", "shop.created"]
    revoked, replaced, added, _ = mine
    assert revoked["actor"] == "cli" and revoked["details"]["kind"] == "publishable"
    assert replaced["actor"].startswith("key sk_") and replaced["details"]["products_stored"] == 1
    assert added["details"]["origin"] == "https://second.audit.example"
    calls = [entry for entry in entries if entry["action"] == "cds.call"][:2]
    assert calls[0]["details"]["patient"] == calls[1]["details"]["patient"] != "patient-4711"
    assert calls[0]["actor"].startswith("open") and calls[0]["details"]["hook"] == "patient-view"
    text = json.dumps(entries)
    for secret in ("patient-4711", "zzq-private-medicine", "37796009", created["secret_key"]):
        assert secret not in text
    readable = runner.invoke(main, ["audit", "--action", "cds.call"], env=env)
    assert readable.exit_code == 0 and "cds.call" in readable.output and "shop.created" not in readable.output


def test_an_unknown_audit_action_is_refused_naming_the_known_ones(database_url, runner):
    result = runner.invoke(main, ["audit", "--action", "key.issued"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1 and "cds.call" in result.output
