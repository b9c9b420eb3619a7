"""End to end: `streamlit run app.py` in headless Chromium; every page renders, generates, and is photographed.

Screenshots go to docs/screenshots/ when LWGEN_SCREENSHOTS=1 (else to a temporary folder).
LWGEN_E2E_CHECKPOINTS=checkpoints photographs the real checkpoints instead of the tiny test ones.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_app_pages import make_app_checkpoints, make_tiny_study

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
# (screenshot name, URL path, button to press or None, selector that must appear). Explore comes first: the
# first visit of a server lands on a sub-page URL, which Streamlit would serve without app.py's navigation.
PAGES = [
    ("explore", "explore", None, ".js-plotly-plot .scatterlayer"),
    ("generate", "", "Generate", "[data-testid='stImage'] img"),
    ("compare", "compare", "Run both", "[data-testid='stImage'] img"),
    ("lab", "lab", "Walk", "[data-testid='stImage'] img"),
    ("models", "models", None, "[data-testid='stImage'] img"),
    ("tuning", "tuning", None, ".js-plotly-plot"),
]
MENU = ["Generate", "Compare", "Explore", "Embedding lab", "Models", "Tuning", "Train"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Chromium at /usr/bin/chromium (apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoints, shapes_dir, tmp_path_factory):
    """A `streamlit run app.py` process on a free port; yields its URL."""
    checkpoints = os.environ.get("LWGEN_E2E_CHECKPOINTS")
    env = dict(os.environ, LWGEN_CACHE=str(tmp_path_factory.mktemp("e2e-cache")), OMP_NUM_THREADS="1",
               LWGEN_SHIPPED="0", LWGEN_RUNS=str(tmp_path_factory.mktemp("e2e-runs")))  # only the checkpoints below
    if checkpoints:
        env["LWGEN_CHECKPOINTS"] = str(Path(checkpoints).resolve())
    else:
        folder = make_app_checkpoints(tiny_checkpoints, tmp_path_factory.mktemp("e2e-ck"), broken=False)
        env["LWGEN_CHECKPOINTS"] = str(folder)
        env["LWGEN_DATA"] = str(shapes_dir)
    if not env.get("LWGEN_TUNE_STORAGE"):
        env["LWGEN_TUNE_STORAGE"] = make_tiny_study(tmp_path_factory.mktemp("e2e-tune") / "tune.db")
    port = free_port()
    log = tmp_path_factory.mktemp("e2e-log") / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start:\n{log.read_text()}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def shot_folder(tmp_path: Path) -> Path:
    if os.environ.get("LWGEN_SCREENSHOTS") == "1":
        folder = ROOT / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path


def settle(page) -> None:
    """Wait until the script run finished and the browser drew its output."""
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    page.wait_for_timeout(800)


def plot_area(page, index: int = 0) -> dict:
    """The bounding box of a plotly chart's drawing area, scrolled into view."""
    area = page.locator(".js-plotly-plot .nsewdrag").nth(index)
    area.scroll_into_view_if_needed()
    return area.bounding_box()


def box_select(page) -> None:
    """Drag a box over the middle of the Explore map: the selected images appear below it."""
    b = plot_area(page)
    x, y = b["x"] + 0.2 * b["width"], b["y"] + 0.2 * b["height"]
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 0.6 * b["width"], y + 0.6 * b["height"], steps=8)
    page.mouse.up()
    page.wait_for_selector("[data-testid='stImage'] img", timeout=60_000)


def click_map(page) -> None:
    """Click the Embedding lab's map: images generated at that point appear."""
    b = plot_area(page)
    page.mouse.click(b["x"] + 0.3 * b["width"], b["y"] + 0.6 * b["height"])
    page.get_by_text("Generated at PC1").wait_for(timeout=60_000)


INTERACT = {"explore": box_select, "lab": click_map}


def test_every_page_renders_and_generates(server, browser, tmp_path):
    folder = shot_folder(tmp_path)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    for name, path, button, selector in PAGES:
        page.goto(f"{server}/{path}")
        page.wait_for_selector("h1", timeout=60_000)
        if button:
            page.get_by_role("button", name=button, exact=True).click()
        page.wait_for_selector(selector, timeout=120_000)
        settle(page)
        if name in INTERACT:
            INTERACT[name](page)
            settle(page)
        assert page.locator("[data-testid='stException']").count() == 0, f"{name}: a traceback is shown"
        menu = [t.split("\n")[-1] for t in page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()]
        assert menu == MENU, f"{name}: the sidebar is not app.py's navigation: {menu}"
        assert page.locator("[data-testid='stAlertContentError']").count() == 0, f"{name}: an error is shown"
        height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
        page.set_viewport_size({"width": 1440, "height": max(900, min(int(height), 3200))})
        page.wait_for_timeout(500)
        page.screenshot(path=str(folder / f"{name}.png"))
        page.set_viewport_size({"width": 1440, "height": 1000})
        assert (folder / f"{name}.png").stat().st_size > 10_000
    page.close()


def set_number(page, label: str, value: int) -> None:
    """Type into the number input with this label and wait for the rerun."""
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settle(page)


def test_generate_shows_an_estimate_and_can_be_cancelled(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(server)
    page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
    settle(page)
    set_number(page, "Images", 64)
    set_number(page, "Steps", 1000)
    page.get_by_text("64 images x 1000 steps: about").wait_for(timeout=10_000)  # before pressing Generate
    page.get_by_role("button", name="Generate", exact=True).click()
    cancel = page.get_by_role("button", name="Cancel")
    cancel.wait_for(timeout=30_000)
    page.get_by_text("step ").first.wait_for(timeout=30_000)  # sampling has started
    started = time.monotonic()
    cancel.click()
    page.get_by_text("Cancelled: that run's images were dropped").wait_for(timeout=30_000)
    settle(page)
    assert time.monotonic() - started < 30
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert page.locator("[data-testid='stImage'] img").count() == 0  # nothing from the cancelled run
    assert page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count() == 0
    set_number(page, "Steps", 2)  # the page is usable again: a short run gives its images
    set_number(page, "Images", 2)
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("seed 1", exact=True).wait_for(timeout=60_000)
    settle(page)
    assert page.locator("[data-testid='stImage'] img").count() == 2
    assert page.get_by_text("Cancelled: that run's images were dropped").count() == 0
    page.close()
