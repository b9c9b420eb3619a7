"""What starting a training from the app costs the page, and how the app answers while it trains.

    python benchmarks/train_page.py
Drives pages/train.py in-process (streamlit's AppTest) on the 512 demo shapes in a temporary runs/ folder:
the time of the page run that presses "Check the data" (it reads every image), then of the run that presses
"Start training" (it launches `lwgen fit` as its own process, with every core but one); then the time of 4
Generate images on the shipped emoji-cosine before the training and while it trains, and stops the training
(SIGTERM). Run it as the app should run on a small machine, `OMP_NUM_THREADS=1 python benchmarks/train_page.py`.
Prints a table and writes benchmarks/results/train_page.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate_seconds(model, repeats: int = 3) -> float:
    from lwgen.app.runner import condition_of, generate_images

    cond = condition_of(model, {"group": "flags"})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate_images(model, cond, list(range(4)), 20, "dpmpp", 7.0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_page.json")
    p.add_argument("--wait", type=float, default=60.0, help="seconds the training runs before the second Generate")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lwgen-train-page-"))
    os.chdir(work)
    os.environ["LWGEN_RUNS"] = str(work / "runs")
    from streamlit.testing.v1 import AppTest

    from lwgen.app import jobs
    from lwgen.pipeline import DiffusionModel

    model = DiffusionModel.from_checkpoint(ROOT / "checkpoints" / "emoji-cosine")
    generate_seconds(model, 1)  # warm
    idle = generate_seconds(model)
    data = jobs.demo_data(work / "demo")
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    at.text_input(key="train:folder").set_value(str(data)).run()
    check = next(b for b in at.button if b.label == "Check the data")
    t0 = time.perf_counter()
    check.click().run()
    checked = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.button(key="train:start").click().run()
    started = time.perf_counter() - t0
    lock = jobs.read_lock()
    if lock is None:
        raise SystemExit("the training did not start: " + "; ".join(e.value for e in [*at.exception, *at.error]))
    time.sleep(args.wait)
    busy = generate_seconds(model)
    status = json.loads(next(Path(lock["out"]).glob("*/status.json")).read_text())
    jobs.stop()
    rows = {
        "page run pressing Check the data (s)": checked,
        "page run pressing Start training (s)": started,
        "Generate 4 images, emoji-cosine, idle (s)": idle,
        f"Generate 4 images while the fit trains ({status.get('stage')}, step {status.get('step')}) (s)": busy,
        "slow-down while training (x)": busy / idle,
    }
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({k: round(v, 4) for k, v in rows.items()}, indent=1) + "\n")
    print(f"wrote {args.out} (cores: {os.cpu_count()}, torch threads: {__import__('torch').get_num_threads()})")


if __name__ == "__main__":
    sys.exit(main())
