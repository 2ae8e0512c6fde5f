"""What a shop's catalog adds to a batch answer: a 1,000-item batch with ``limit: 20`` made
with a shop's key over a large catalog, against the same batch without a key (the floor:
the same answers without products), in one process on a fresh SQLite database.

    .venv/bin/python bench/bench_catalog.py [--products 10000] [--items 1000] [--rounds 3]

Prints the median seconds of each and their ratio (keyed / unkeyed). Issue 19 measured 30.5 s
(a killed worker) for 10,000 products before the products step was indexed by form."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def catalog(count: int, forms: list[str], seed: int = 7) -> list[dict]:
    """``count`` products spread over ``forms``, with varied strengths, packs and prices."""
    rng = random.Random(seed)
    return [{"sku": f"SKU-{i:06d}", "name": f"Magnesium product {i}", "form": forms[i % len(forms)],
             "elemental_mg_per_unit": rng.choice([50, 75, 100, 120, 150, 200, 250]),
             "units_per_pack": rng.choice([30, 60, 90, 120, 180]),
             "price": round(rng.uniform(3, 60), 2), "currency": "EUR", "url": f"https://shop.example/p/{i}"}
            for i in range(count)]


def profiles(count: int, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    goals = ["sleep", "constipation_relief", "migraine_prevention", "cramps", "general"]
    return [{"id": f"p{i}", "profile": {"age": rng.randint(18, 85), "goals": [rng.choice(goals)]}}
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        # every call comes from one address and costs 1,000 profiles: the limits are lifted
        os.environ.setdefault("FORMWISE_SECRET_RATE_LIMIT", "100000000/minute")
        os.environ.setdefault("FORMWISE_OPEN_RATE_LIMIT", "100000000/minute")
        from formwise.service.app import create_app
        from formwise.service.shops import keys as shops
        from formwise.service.shops.catalog import store_catalog

        app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{folder}/bench.db"})
        with app.app_context():
            keys = shops.create_shop("bench-catalog", ["https://shop.example"])
            forms = list(app.extensions["formwise"].knowledge_base.form_ids)
            store_catalog(keys["shop_id"], catalog(args.products, forms), actor="bench")
        client = app.test_client()
        body = {"items": profiles(args.items), "options": {"limit": args.limit}}
        keyed, unkeyed = [], []
        for _ in range(args.rounds):
            for times, headers in ((unkeyed, {}), (keyed, {"X-API-Key": keys["secret_key"]})):
                started = time.perf_counter()
                response = client.post("/v1/recommendations/batch", json=body, headers=headers)
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"batch answered {response.status_code}: {response.get_data(as_text=True)[:300]}")
        with_products = sum(len(item.get("products", ())) for result in response.get_json()["results"]
                            for item in (result["output"] or {}).get("recommendations", ()))
    keyed_s, unkeyed_s = statistics.median(keyed), statistics.median(unkeyed)
    print(f"{args.items} items, limit {args.limit}, {args.products} products ({with_products} offers listed), "
          f"{args.rounds} rounds, medians:")
    print(f"  unkeyed (floor) {unkeyed_s:.3f} s   with the shop's catalog {keyed_s:.3f} s   "
          f"ratio {keyed_s / unkeyed_s:.2f}")


if __name__ == "__main__":
    main()
