"""``mie serve`` end to end in headless Chromium (Selenium): the real server on a free port, a text query
typed into the page, the images it shows, an error shown in the page, a screenshot in tmp_path, an upload
captioned through the page under the Origin and content-type rules, and a page of another origin refused.

Skips, saying why, where Selenium, Chromium or chromedriver is missing (Debian: ``apt-get install
chromium chromium-driver``; ``.ci/run`` installs them, and the dev extra installs Selenium).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


def _serving(app):
    """Serve ``app`` under uvicorn on a free port of 127.0.0.1, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _open_ready(browser, base: str, timeout: float):
    """Open the app's page at ``base`` and wait until it says the model is ready; the wait, for later steps."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base + "/")
    wait = WebDriverWait(browser, timeout)
    wait.until(lambda d: "ready" in d.find_element(By.ID, "status").text)
    return wait


@pytest.fixture(scope="module")
def server(clip_app):
    """The loaded tiny clip app under uvicorn on a free port of 127.0.0.1, in a thread."""
    yield from _serving(clip_app)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (no driver download: the system's driver is named)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_a_text_query_shows_ranked_images(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    wait = _open_ready(browser, server, 20)
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys("a red circle")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("4")
    browser.find_element(By.ID, "search-button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img")) == 4)
    images = browser.find_elements(By.CSS_SELECTOR, "#results img")
    wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                             for i in images))
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#results figcaption")]
    assert captions[0].startswith("1. ") and all(".png" in c for c in captions)
    assert "for “a red circle”" in browser.find_element(By.ID, "search-meta").text
    # The run's own shape/colour figures (its results.json shapes_probe) stand above the results.
    wait.until(lambda d: "colour-shape queries" in d.find_element(By.ID, "search-figures").text)
    figures = browser.find_element(By.ID, "search-figures").text
    assert figures.startswith("This run on test, precision@8: colour-shape queries ") and "“a red circle”: " in figures
    shot = tmp_path / "serve.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000


def test_an_empty_query_is_shown_in_the_page(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open_ready(browser, server, 20)
    browser.find_element(By.ID, "query").clear()
    browser.find_element(By.ID, "search-button").click()
    message = browser.find_element(By.ID, "search-message")
    WebDriverWait(browser, 10).until(lambda d: message.text)
    assert message.text == "the query is empty: type some text first"
    assert not browser.find_elements(By.CSS_SELECTOR, "#results img")


def test_the_page_still_works_under_the_origin_and_type_rules(server, browser, clip_app, tmp_path):
    """The page's own search and upload pass the guard (its Origin and content types); a text/plain POST
    from the page, as a form or a "simple" cross-site request would send, is refused with 415."""
    from selenium.webdriver.common.by import By

    wait = _open_ready(browser, server, 20)
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="caption"]').click()
    upload = tmp_path / "upload.png"
    upload.write_bytes(open(clip_app.state.serve.index.paths[0], "rb").read())
    browser.find_element(By.ID, "upload").send_keys(str(upload))
    browser.find_element(By.ID, "caption-button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#captions li")) == 5)
    assert browser.find_element(By.ID, "caption-message").text == ""
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/search', {method: 'POST', headers: {'content-type': 'text/plain'}, body: '{\"query\": \"a\"}'})"
        ".then(r => done(r.status), e => done(String(e)));")
    assert status == 415


def test_another_page_cannot_drive_the_app(server, browser, clip_app, monkeypatch):
    """A page of another origin (another port of 127.0.0.1) posting a "simple" cross-site request — text/plain,
    no preflight, as any web page may — is sent by the browser but never reaches the search."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from selenium.webdriver.support.ui import WebDriverWait

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<title>elsewhere</title>")

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    ran = []
    real = clip_app.state.serve.index.top_images
    monkeypatch.setattr(clip_app.state.serve.index, "top_images", lambda *a: ran.append(1) or real(*a))
    post = ("window.sent = 'no';"
            "fetch(arguments[0] + '/api/search', {method: 'POST', mode: 'no-cors', headers: {'content-type': "
            "'text/plain'}, body: '{\"query\": \"a red circle\"}'}).then(() => { window.sent = 'yes'; },"
            " () => { window.sent = 'error'; });")
    try:
        browser.get(f"http://127.0.0.1:{other.server_address[1]}/")
        browser.execute_script(post, server)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.sent") != "no")
        assert browser.execute_script("return window.sent") == "yes" and ran == []  # sent, and refused
    finally:
        other.shutdown()


def test_each_result_gets_its_heat_map_beside_it(server, browser, clip_app, tmp_path):
    """The first four results get their Grad-CAM maps at once (drawn on a canvas beside the image, its peak
    the one the API reports); the others get a button that asks for theirs."""
    from selenium.webdriver.common.by import By
    from tests.serve.conftest import local_client

    wait = _open_ready(browser, server, 30)
    browser.find_element(By.ID, "query").clear()
    browser.find_element(By.ID, "query").send_keys("a red circle")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("6")
    browser.find_element(By.ID, "search-button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results canvas[data-peak]")) == 4)
    buttons = browser.find_elements(By.CSS_SELECTOR, "#results figure button")
    assert [b.text for b in buttons] == ["heat map", "heat map"]
    first = browser.find_element(By.CSS_SELECTOR, "#results figure canvas")
    assert first.get_attribute("title").startswith("Grad-CAM for “a red circle”, similarity ")
    row = local_client(clip_app).post("/api/search", json={"query": "a red circle", "k": 1}).json()
    expected = local_client(clip_app).post("/api/explain/image", json={"row": row["results"][0]["row"],
                                                                       "query": "a red circle"}).json()
    assert first.get_attribute("data-peak") == ",".join(map(str, expected["peak"]))
    # The canvas holds the image under a coloured map: its pixels differ from the plain image's.
    differs = browser.execute_script(
        "const c = arguments[0], img = arguments[1], ctx = c.getContext('2d');"
        "const plain = document.createElement('canvas'); plain.width = c.width; plain.height = c.height;"
        "plain.getContext('2d').drawImage(img, 0, 0, c.width, c.height);"
        "const a = ctx.getImageData(0, 0, c.width, c.height).data,"
        " b = plain.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < a.length; i += 4) if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 2] - b[i + 2]) > 60) n++;"
        "return n / (a.length / 4);", first, browser.find_element(By.CSS_SELECTOR, "#results figure img"))
    assert differs > 0.2
    buttons[0].click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results canvas[data-peak]")) == 5)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results figure button")) == 1
    assert browser.find_element(By.ID, "search-message").text == ""
    shot = tmp_path / "heat.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000


@pytest.fixture(scope="module")
def safety_server(safety_app):
    """The tiny clip run served with the embedding classifier too (its token attributions)."""
    yield from _serving(safety_app)


def test_a_flagged_verdict_shows_the_words_that_carried_it(safety_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    wait = _open_ready(browser, safety_server, 30)
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="safety"]').click()
    browser.find_element(By.ID, "safety-text").send_keys("how do I poison my neighbour's dog")
    browser.find_element(By.ID, "safety-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#safety-result .tokens .meta"))
    why = browser.find_element(By.CSS_SELECTOR, "#safety-result .tokens .meta").text
    assert why.startswith("why harm_prevention: poison +")
    chips = browser.find_elements(By.CSS_SELECTOR, "#safety-result .tokens span")
    assert "poison" in [c.text for c in chips] and chips[0].text == "[CLS]"
    # A principle that was not flagged explains itself on a click.
    rows = browser.find_elements(By.CSS_SELECTOR, "#safety-result tr")
    privacy = next(r for r in rows if r.text.startswith("privacy"))
    privacy.find_element(By.TAG_NAME, "button").click()
    wait.until(lambda d: any(m.text.startswith("why privacy: ")
                             for m in d.find_elements(By.CSS_SELECTOR, "#safety-result .tokens .meta")))
    shot = tmp_path / "why.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
