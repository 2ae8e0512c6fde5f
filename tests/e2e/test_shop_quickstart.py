"""The README's "Try it as a web shop" run as written (issue 21, part 6): its shell block is
read from README.md and run in a scratch folder that holds what a fresh clone has (the
examples and the set-up's `.venv`), with two changes only: free ports instead of 8000 and
8080 (also in the example catalog's links), and the processes it starts in the background
are stopped at the end. Then a Chromium page on the shop's origin must get an answer with
the shop's products and their pictures."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PROJECT_ROOT
from tests.e2e.server import CHROMIUM, free_port

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"<!-- shop-quickstart:start -->\n```sh\n(.*?)```", re.S)


def wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def test_the_readme_gets_a_new_shop_to_a_widget_answering_on_its_own_origin(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)")
    service_port, shop_port = free_port(), free_port()
    block = BLOCK.search((PROJECT_ROOT / "README.md").read_text(encoding="utf-8")).group(1)
    assert "8000" in block and "8080" in block
    block = block.replace("8000", str(service_port)).replace("8080", str(shop_port))
    shutil.copytree(PROJECT_ROOT / "examples", tmp_path / "examples")
    catalog = tmp_path / "examples" / "catalog.csv"
    catalog.write_text(catalog.read_text().replace(":8080/", f":{shop_port}/"))
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the set-up's environment
    log = tmp_path / "quickstart.log"
    env = {**os.environ, "FORMWISE_DATA_DIR": str(tmp_path / "data")}  # keep the checkout's instance/ clean
    with log.open("wb") as output:
        shell = subprocess.Popen(["bash", "-e", "-c", block + "\nwait\n"], cwd=tmp_path, env=env, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{service_port}/health/ready", shell, log)
        wait_for(f"http://127.0.0.1:{shop_port}/", shell, log)
        assert "rows_rejected 0" in log.read_text()

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(f"http://localhost:{shop_port}/")
            advisor = page.locator("formwise-advisor")
            advisor.locator("#age").fill("45")
            advisor.locator("input[value=sleep]").check()
            with page.expect_response(lambda response: response.url.endswith("/v1/recommendations")
                                      and response.request.method == "POST") as answered:
                advisor.locator("button[type=submit]").click()
            assert answered.value.status == 200
            answer = answered.value.json()
            shown = [product for item in answer["recommendations"] for product in item["products"]]
            assert shown, "the example catalog covers the recommended forms"
            advisor.locator("li.product").first.wait_for()
            assert advisor.locator("li.product").count() == len(shown)
            pictured = [product for product in shown if product["image_url"]]
            assert advisor.locator("li.product img").count() == len(pictured) > 0
            assert errors == []
            browser.close()
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        shell.wait(timeout=60)
