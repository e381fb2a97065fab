"""Acceptance (issue 28): `mie serve runs/demo` shows red circles first for "a red circle".

Serves a finished demo run (default ``runs/demo``, from ``make run``) on a free port of 127.0.0.1, types
each query into the page in headless Chromium (Selenium, as tests/serve/test_browser.py does), waits for the
eight images, saves a screenshot (``--shot``, default ``docs/serve_demo.png``) of the first query, and counts,
from the run's own manifest, how many of the eight images hold an object of the query's colour and shape.
Prints one row per query; exits 1 when "a red circle" has fewer than 6 of 8. Not part of `make test`::

    .venv/bin/python acceptance/serve_red_circle.py runs/demo
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

QUERIES = ("a red circle", "a blue square", "a green triangle", "a yellow star")


def _serve(app) -> tuple[str, object]:
    """``app`` under uvicorn in a thread on a free port; returns its base URL and the server."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise SystemExit("error: uvicorn did not start")
    return f"http://127.0.0.1:{port}", server


def _objects_by_id(run: Path) -> dict[str, list[dict]]:
    """Image id -> its objects, from the manifest of the run's data folder."""
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    manifest = Path(config["data"]["path"]) / "captions.jsonl"
    rows = (json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip())
    return {r["id"]: r["attributes"]["objects"] for r in rows}


def main() -> int:
    """Run the queries through the page; 0 when "a red circle" shows at least 6 red circles in 8."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="runs/demo")
    parser.add_argument("--shot", default="docs/serve_demo.png")
    args = parser.parse_args()
    run = Path(args.run)
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if chromium is None or shutil.which("chromedriver") is None:
        print("error: chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
        return 1
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mie.serve import create_app

    app = create_app(str(run), safety_methods="rules")
    if not app.state.serve.wait(timeout=300):
        print(f"error: the run did not load: {app.state.serve.error}")
        return 1
    base, server = _serve(app)
    objects = _objects_by_id(run)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    hits_of: dict[str, int] = {}
    try:
        driver.get(base + "/")
        WebDriverWait(driver, 120).until(lambda d: "ready" in d.find_element(By.ID, "status").text)
        for n, query in enumerate(QUERIES):
            box = driver.find_element(By.ID, "query")
            box.clear()
            box.send_keys(query)
            driver.find_element(By.ID, "search-button").click()
            WebDriverWait(driver, 60).until(lambda d, q=query: f"for “{q}”" in d.find_element(By.ID, "search-meta").text
                                            and len(d.find_elements(By.CSS_SELECTOR, "#results img")) >= 8)
            # The page shows each image's file name (its alt text): test_00012.png is image test_00012.
            ids = [Path(img.get_attribute("alt") or "").stem
                   for img in driver.find_elements(By.CSS_SELECTOR, "#results img")][:8]
            color, shape = query.split()[1:]
            hits = sum(any(o["color"] == color and o["shape"] == shape for o in objects.get(i, [])) for i in ids)
            hits_of[query] = hits
            print(f"{query!r}: {hits} of 8 images hold a {color} {shape}")
            if n == 0:
                Path(args.shot).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(args.shot)
                print(f"screenshot: {args.shot}")
    finally:
        driver.quit()
        server.should_exit = True
    return 0 if hits_of.get("a red circle", 0) >= 6 else 1


if __name__ == "__main__":
    sys.exit(main())
