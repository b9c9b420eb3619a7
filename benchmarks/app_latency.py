"""Latency of what the app's pages compute, on the shipped checkpoints: in this process (after the first load),
or with --browser as a user sees it, click to drawn result, in headless Chromium.

    python benchmarks/app_latency.py             # in process: benchmarks/results/app_latency.json
    python benchmarks/app_latency.py --browser   # Chromium: benchmarks/results/app_latency_browser.json
    python benchmarks/app_latency.py --browser --first-loads 3   # the first page load alone, 3 app starts
The browser run starts `streamlit run app.py` on a free port (a fresh process with an empty cache folder unless
--cache names one), drives /usr/bin/chromium through playwright and prints a table. Times on a shared machine
vary with its load: repeat a run before comparing.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lwgen.app.explore  # noqa: F401  (what the Explore page loads, sklearn.manifold included)
from lwgen.app.runner import condition_of, generate_images
from lwgen.pipeline import DEFAULT_GUIDANCE, DiffusionModel
from lwgen.projection import load_gallery, pixel_features, project


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, env: dict[str, str]) -> subprocess.Popen:
    """`streamlit run app.py` on a port, once it accepts connections."""
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--server.fileWatcherType", "none",
                               "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("streamlit did not start within 60 s")


def stop_app(server: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s (a server stopped while it still imports can take longer to exit)."""
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def idle(page, timeout: float = 120_000) -> None:
    """Wait until no script run is going on (Streamlit's status widget is gone)."""
    page.wait_for_timeout(200)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def fill(page, label: str, value: int) -> None:
    """Type a value into the number input with this label and wait for the rerun it starts."""
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    idle(page)


def choose(page, label: str, option: str) -> None:
    """Pick an option of the first visible select box with this label."""
    box = page.locator("[data-testid='stSelectbox']:visible").filter(
        has=page.locator("label", has_text=label)).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def wait_legend(page, title: str, timeout: float = 120_000) -> None:
    """Wait until the first visible map's legend is titled `title` (the map of that colouring is drawn)."""
    page.wait_for_function(
        "t => [...document.querySelectorAll('.js-plotly-plot .legendtitletext')]"
        ".some(e => e.getClientRects().length && e.textContent === t)", arg=title, timeout=timeout)


def first_load(page, url: str) -> dict[str, float]:
    """Seconds from opening the app to its Generate button, and to the model loaded (the text drawn after it)."""
    t0 = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=120_000)
    button = time.perf_counter() - t0
    page.get_by_text("Choose a condition", exact=False).wait_for(timeout=120_000)  # drawn once the model loaded
    return {"first page load, to the Generate button (s)": button,
            "first page load, to the model loaded (s)": time.perf_counter() - t0}


def browser_rows(url: str, first_only: bool = False) -> dict[str, float]:
    """Click-to-result seconds of the app's slow spots in Chromium (only the first page load with first_only)."""
    from playwright.sync_api import sync_playwright

    rows: dict[str, float] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        rows.update(first_load(page, url))
        if first_only:
            browser.close()
            return rows
        idle(page)
        fill(page, "Images", 4)
        for name, seed in (("first Generate, 4 images, click to images (s)", 100),
                           ("Generate, 4 images, click to images (s)", 200)):
            fill(page, "Seed", seed)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_text(f"seed {seed + 3}", exact=True).wait_for(timeout=120_000)
            rows[name] = time.perf_counter() - t0
            idle(page)
        t0 = time.perf_counter()
        page.goto(f"{url}/explore", timeout=120_000)
        page.wait_for_selector(".js-plotly-plot .scatterlayer", timeout=120_000)
        rows["Explore, open the page to the first map (s)"] = time.perf_counter() - t0
        idle(page)
        for name, colour in (("Explore, colour by source, first time (s)", "source"),
                             ("Explore, colour by group, cached (s)", "group"),
                             ("Explore, colour by source, cached (s)", "source")):
            t0 = time.perf_counter()
            choose(page, "Colour by", colour)
            wait_legend(page, colour)
            rows[name] = time.perf_counter() - t0
            idle(page)
        for name, method in (("Explore, t-SNE of the images (s)", "t-SNE"), ("Explore, UMAP first use (s)", "UMAP"),
                             ("Explore, back to PCA, cached (s)", "PCA")):
            t0 = time.perf_counter()
            choose(page, "Projection", method)
            page.get_by_text(f"{method} of pixels").first.wait_for(timeout=120_000)
            rows[name] = time.perf_counter() - t0
            idle(page)
        browser.close()
    return rows


def browser_main(out: Path, cache: Path | None, first_loads: int = 0) -> None:
    """The browser rows; with first_loads N, only the first page load, N times, each on a newly started app."""
    # one thread unless told otherwise: 2 torch threads on 2 cores that other programs use too made a 4-image
    # Generate take 15-20 s instead of 2.5 s here
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    rows: dict[str, float] = {}
    for k in range(max(first_loads, 1)):
        port = free_port()
        env["LWGEN_CACHE"] = str(cache or tempfile.mkdtemp(prefix="lwgen-latency-"))  # default: cold, nothing cached
        server = start_app(port, env)
        try:
            found = browser_rows(f"http://127.0.0.1:{port}", first_only=first_loads > 0)
        finally:
            stop_app(server)
        suffix = f", start {k + 1}" if first_loads else ""
        rows.update({f"{name[:-4]}{suffix} (s)": value for name, value in found.items()})  # name ends " (s)"
    report(rows, out)


def report(rows: dict[str, float], out: Path) -> None:
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value:8.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": rows}, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/emoji-cosine"))
    p.add_argument("--browser", action="store_true", help="measure in Chromium, click to drawn result")
    p.add_argument("--cache", type=Path, default=None,
                   help="the app's cache folder for --browser (default: a new empty one, so UMAP compiles from "
                        "scratch; pass the same folder twice to measure a second start)")
    p.add_argument("--first-loads", type=int, default=0,
                   help="with --browser, measure only the first page load, this many times, each on a newly "
                        "started app (default 0: every row once)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.browser:
        default = "app_latency_first_load.json" if args.first_loads else "app_latency_browser.json"
        browser_main(args.out or ROOT / "benchmarks/results" / default, args.cache, args.first_loads)
        return
    args.out = args.out or Path("benchmarks/results/app_latency.json")
    t0 = time.perf_counter()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    rows = {"load checkpoint (s)": time.perf_counter() - t0}
    cond = condition_of(model, {"group": "smileys-emotion", "subgroup": "face-smiling"})
    # the page's defaults, 4 images
    generate = lambda: generate_images(model, cond, list(range(4)), 20, "dpmpp", DEFAULT_GUIDANCE)
    rows["first Generate, 4 images, 20 steps (s)"] = seconds(generate)
    rows["Generate, 4 images, 20 steps (s)"] = min(seconds(generate) for _ in range(3))
    gallery = load_gallery(args.checkpoint)
    x = pixel_features(gallery.images)
    rows["gallery points"] = len(gallery)
    for method in ("PCA", "t-SNE", "UMAP"):  # cold: the first call in the process (UMAP compiles with numba)
        rows[f"{method} of the gallery, cold (s)"] = seconds(lambda m=method: project(x, m))
        rows[f"{method} of the gallery, warm (s)"] = seconds(lambda m=method: project(x, m))
    report(rows, args.out)


if __name__ == "__main__":
    main()
