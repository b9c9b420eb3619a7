"""Eight browser sessions press Generate at the same moment; every one must get its images, with no error.

    python benchmarks/app_concurrency.py [--sessions 8]
Starts `streamlit run app.py` on a free local port with the shipped checkpoints, drives headless Chromium
(/usr/bin/chromium) through the playwright package, prints each session's time to images and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/app_concurrency.json")
    args = p.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--server.fileWatcherType", "none"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            pages = [browser.new_page(viewport={"width": 1280, "height": 900}) for _ in range(args.sessions)]
            for page in pages:
                page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            for page in pages:
                page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
            start = time.monotonic()
            for page in pages:  # press all buttons first, then wait: the sessions run at the same time
                page.get_by_role("button", name="Generate", exact=True).click()
            results = []
            for i, page in enumerate(pages):
                page.wait_for_selector("[data-testid='stImage'] img", timeout=300_000)
                images = page.locator("[data-testid='stImage'] img").count()
                errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count()
                results.append({"session": i, "images": images, "errors": errors,
                                "seconds": round(time.monotonic() - start, 2)})
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    for r in results:
        print(f"session {r['session']}: {r['images']} images, {r['errors']} errors, {r['seconds']} s")
    ok = all(r["images"] > 0 and r["errors"] == 0 for r in results)
    print(f"{sum(r['images'] > 0 and r['errors'] == 0 for r in results)} of {len(results)} sessions got images "
          f"with no error")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "sessions": results, "ok": ok}, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
