"""The Train page (AppTest) and its jobs module: validation report, zip guard, the one-training lock, progress."""
from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lwgen.app import jobs
from lwgen.cli import main
from lwgen.precision import cpu_bf16_native

PAGE = Path(__file__).resolve().parents[1] / "pages" / "train.py"


@pytest.fixture()
def runs(tmp_path, monkeypatch) -> Path:
    """A private runs/ folder (the lock and the fits live there) and working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LWGEN_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def open_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def bad_copy(shapes_dir: Path, folder: Path) -> Path:
    """The shapes set with a row naming a missing file and a row whose image is not a PNG."""
    shutil.copytree(shapes_dir, folder)
    df = pd.read_csv(folder / "annotations.csv")
    df.loc[3, "file"] = "images/missing.png"
    (folder / "images" / "broken.png").write_bytes(b"not a png")
    df.loc[7, "file"] = "images/broken.png"
    df.to_csv(folder / "annotations.csv", index=False)
    return folder


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_validation_report_lists_bad_rows_and_start_needs_skip(runs, shapes_dir, tmp_path):
    data = bad_copy(shapes_dir, tmp_path / "my data")
    at = open_page()
    at.text_input(key="train:folder").set_value(str(data)).run()
    assert at.multiselect(key="train:attributes").value == ["shape", "color"]
    button(at, "Check the data").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("62 usable images** of 64 rows" in m.value for m in at.markdown)
    assert any("2 bad rows" in w.value for w in at.warning)
    bad = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert bad["row"].tolist() == [5, 9] and bad["file"].tolist() == ["images/missing.png", "images/broken.png"]
    assert "not found" in bad["reason"][0] or "missing" in bad["reason"][0]
    assert button(at, "Start training").disabled
    assert any("Skip the bad rows" in c.value for c in at.caption)
    at.checkbox(key="train:skip").check().run()
    assert not button(at, "Start training").disabled
    command = at.code[-1].value
    assert command.startswith("lwgen fit --data") and "--skip-bad" in command and "--attributes shape color" in command


@pytest.mark.parametrize("native", ["0", "1"])
def test_the_page_says_when_training_runs_in_float32(runs, shapes_dir, monkeypatch, native):
    monkeypatch.setenv("LWGEN_BF16", native)  # as on a CPU without (0) or with (1) bfloat16 instructions
    cpu_bf16_native.cache_clear()
    try:
        at = open_page()
        at.text_input(key="train:folder").set_value(str(shapes_dir)).run()
        button(at, "Check the data").click().run()
        assert not at.exception, [e.value for e in at.exception]
        said = any("no bfloat16 instructions" in c.value for c in at.caption)
    finally:
        cpu_bf16_native.cache_clear()  # the next caller reads this machine again
    assert said == (native == "0")


def test_a_missing_column_is_said_not_raised(runs, shapes_dir, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(shapes_dir, data)
    at = open_page()
    at.text_input(key="train:folder").set_value(str(data)).run()
    at.selectbox(key="train:text").set_value("split").run()
    at.multiselect(key="train:attributes").set_value(["shape"]).run()
    button(at, "Check the data").click().run()
    assert not at.exception
    assert not at.error  # a text column that exists is fine
    (data / "annotations.csv").write_text("file,shape\n")
    at = open_page()
    at.text_input(key="train:folder").set_value(str(data)).run()
    button(at, "Check the data").click().run()
    assert any("has a header but no data rows" in e.value for e in at.error)


def make_zip(entries: dict[str, bytes], links: dict[str, str] | None = None, deflate: bool = True) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buf.getvalue()


def shapes_zip(shapes_dir: Path, extra: dict[str, bytes] | None = None, links: dict[str, str] | None = None) -> bytes:
    entries = {f"shapes/{p.relative_to(shapes_dir)}": p.read_bytes() for p in sorted(shapes_dir.rglob("*"))
               if p.is_file() and ".lwgen-cache" not in p.parts}
    return make_zip({**entries, **(extra or {})}, links)


def test_zip_upload_is_unpacked_and_an_escaping_entry_refused(runs, shapes_dir, tmp_path):
    at = open_page()
    at.radio(key="train:source").set_value("Upload a zip").run()
    evil = shapes_zip(shapes_dir, {"shapes/../../escaped.png": b"x"})
    at.file_uploader(key="train:zip").set_value(("data.zip", evil, "application/zip")).run()
    assert any("zip entry 'shapes/../../escaped.png' leads outside the folder" in e.value for e in at.error)
    assert not list(tmp_path.rglob("escaped.png")) and not (runs / ".uploads").exists()
    good = shapes_zip(shapes_dir)
    at.file_uploader(key="train:zip").set_value(("data.zip", good, "application/zip")).run()
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="train:csv").value == "annotations.csv"
    button(at, "Check the data").click().run()
    assert any("64 usable images** of 64 rows" in m.value for m in at.markdown)


@pytest.mark.parametrize("extra, links, says", [
    ({"/abs.png": b"x"}, None, "'/abs.png' has an absolute or Windows path"),
    ({"shapes/run.sh": b"rm -rf /"}, None, "'shapes/run.sh' is not an image or a CSV"),
    ({}, {"shapes/images/link.png": "/etc/passwd"}, "'shapes/images/link.png' is a symbolic link"),
])
def test_zip_guard_names_the_entry(shapes_dir, tmp_path, extra, links, says):
    with pytest.raises(jobs.JobError, match="zip entry " + says.replace("(", r"\(").replace(")", r"\)")):
        jobs.extract_zip(shapes_zip(shapes_dir, extra, links), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_zip_size_limits(shapes_dir, tmp_path):
    data = shapes_zip(shapes_dir)
    with pytest.raises(jobs.JobError, match="the limit is 0.001 MB"):
        jobs.extract_zip(data, tmp_path / "out", limit_mb=0.001)
    bomb = make_zip({"a.csv": b"file\n", "big.png": b"\0" * 3_000_000})  # compresses to a few kB
    assert len(bomb) < 100_000
    with pytest.raises(jobs.JobError, match="holds 3 MB of files; the limit is 1 MB"):
        jobs.extract_zip(bomb, tmp_path / "out", unzipped_limit_mb=1)


def test_a_corrupt_entry_keeps_nothing_and_a_second_upload_reuses_the_folder(shapes_dir, tmp_path):
    data = bytearray(make_zip({"d/annotations.csv": b"file,shape\nimages/a.png,circle\n", "d/a.png": b"x" * 1000}))
    stored = make_zip({"d/annotations.csv": b"file,shape\n", "d/a.png": b"y" * 1000}, deflate=False)
    at = stored.index(b"y" * 1000)
    corrupt = stored[:at] + b"z" + stored[at + 1:]  # the CRC no longer matches
    with pytest.raises(jobs.JobError, match="zip entry 'd/a.png' cannot be unpacked"):
        jobs.extract_zip(corrupt, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()
    folder = jobs.extract_zip(bytes(data), tmp_path / "good")
    assert folder == tmp_path / "good" / "d" and (folder / "a.png").read_bytes() == b"x" * 1000
    (folder / "kept.txt").write_text("written while a fit reads the folder")
    assert jobs.extract_zip(bytes(data), tmp_path / "good") == folder and (folder / "kept.txt").is_file()


def test_one_training_at_a_time_and_a_stale_lock_is_cleared(runs, shapes_dir, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "lwgen"])
    try:
        jobs.write_lock(other.pid, runs / "elsewhere", ["fit"])
        with pytest.raises(jobs.JobError, match=f"another training is running .*pid {other.pid}"):
            jobs.start(["fit", "--help"], runs / "mine")
        at = open_page()
        at.text_input(key="train:folder").set_value(str(shapes_dir)).run()
        button(at, "Check the data").click().run()
        assert button(at, "Start training").disabled
        assert any("another training is running" in c.value and str(other.pid) in c.value for c in at.caption)
    finally:
        other.kill()
        other.wait()
    assert jobs.read_lock() is None and not jobs.lock_path().exists()  # its process is gone: stale, removed
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a finished fit's pid given to another program: not a training
        jobs.write_lock(stranger.pid, runs / "elsewhere", ["fit"])
        assert jobs.read_lock() is None
    finally:
        stranger.kill()
        stranger.wait()
    pid = jobs.start(["--version"], runs / "mine")  # now free: a real (short) lwgen process takes the lock
    assert json.loads(jobs.lock_path().read_text())["pid"] == pid
    jobs._children[pid].wait(timeout=60)
    assert jobs.read_lock() is None
    assert "lwgen" in (runs / "mine" / "fit.log").read_text()


@pytest.fixture()
def finished_fit(runs, shapes_dir) -> Path:
    """A real tiny fit (cosine only) in runs/tiny."""
    from test_fit import TINY

    argv = ["fit", "--data", str(shapes_dir), "--attributes", "shape", "color", "--minutes", "1", "--out",
            str(runs / "tiny"), "--schedule", "cosine", *TINY]
    assert main(argv) == 0
    return runs / "tiny"


def test_progress_of_a_finished_fit_shows_its_card(finished_fit):
    at = open_page()
    assert at.selectbox(key="train:pick").value == str(finished_fit)
    assert any("done" in m.value for m in at.markdown)
    assert any("now on the Generate page" in s.value and "diffusion-cosine" in s.value for s in at.success)
    metrics = next(d.value for d in at.dataframe if "schedule" in d.value.columns)
    card = json.loads((finished_fit / "fit.json").read_text())
    assert metrics["fid"][0] == pytest.approx(card["metrics"]["cosine"]["fid"])
    assert len(at.get("image")) == len(card["samples"]["cosine"]) == 4  # one grid per shape


def test_progress_of_a_stopped_fit_offers_resume(finished_fit):
    state = json.loads((finished_fit / "fit-state.json").read_text())
    state.update(state="stopped", current="diffusion-cosine")
    state["stages"]["diffusion-cosine"]["status"] = "stopped"
    (finished_fit / "fit-state.json").write_text(json.dumps(state))
    at = open_page()
    assert any("stopped" in m.value for m in at.markdown)
    assert any("stage 3/4: **diffusion-cosine**" in m.value for m in at.markdown)
    assert not button(at, "Resume").disabled


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install -y chromium)")
def test_browser_upload_train_and_reload_shows_the_same_progress(shapes_dir, tmp_path):
    """In Chromium: upload a zip, check it, start a 1-minute fit, watch the progress move, reload mid-training and
    see the same fit's progress, stop it (SIGTERM), resume it to the end, then generate from the new generator on
    the Generate page, without restarting the app."""
    import os
    import socket
    import time

    from playwright.sync_api import sync_playwright

    root = PAGE.parents[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs_dir = tmp_path / "runs"
    env = dict(os.environ, LWGEN_RUNS=str(runs_dir), LWGEN_SHIPPED="0", LWGEN_CHECKPOINTS=str(tmp_path / "none"),
               LWGEN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    log = tmp_path / "streamlit.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--browser.gatherUsageStats", "false",
                                   "--server.fileWatcherType", "none"], cwd=root, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(shapes_zip(shapes_dir))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/train"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url)
            page.get_by_text("Upload a zip").click()
            page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(archive))
            page.get_by_role("button", name="Check the data").click(timeout=60_000)
            page.get_by_text("64 usable images").wait_for(timeout=60_000)
            budget = page.get_by_label("Budget (minutes)")
            budget.fill("1")
            budget.press("Enter")
            page.wait_for_timeout(1000)
            page.get_by_test_id("stExpander").get_by_text("Evaluation", exact=True).click()
            for label, value in (("Images generated to score each generator", "8"), ("Images per sample grid", "2")):
                box = page.get_by_role("spinbutton", name=label)
                box.fill(value)
                box.press("Enter")
                page.wait_for_timeout(1000)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("stage 1/").first.wait_for(timeout=90_000)  # the fit process has started its first stage

            def step() -> int:
                metric = page.locator("[data-testid='stMetric']").filter(has_text="step")
                metric.first.wait_for(timeout=90_000)
                return int(metric.first.locator("[data-testid='stMetricValue']").inner_text())

            first = step()
            deadline = time.monotonic() + 90
            while step() <= first and time.monotonic() < deadline:  # the page refreshes itself from the disk
                page.wait_for_timeout(1000)
            moved = step()
            assert moved > first
            page.reload()
            page.get_by_text("stage ").first.wait_for(timeout=60_000)
            assert page.get_by_text("running").count() >= 1
            assert step() >= moved  # the same fit, still going, after a reload
            page.get_by_role("button", name="Stop").click()
            page.get_by_role("button", name="Resume").wait_for(timeout=90_000)
            fits = list(runs_dir.glob("*/fit-state.json"))
            assert len(fits) == 1
            state = json.loads(fits[0].read_text())
            assert state["state"] == "stopped" and state["identity"]["attributes"] == ["shape", "color"]
            assert not (runs_dir / jobs.LOCK).exists()  # the fit's process is gone: the lock was cleared
            page.get_by_role("button", name="Resume").click()
            page.get_by_text("Done. The generators are now on the Generate page").wait_for(timeout=300_000)
            page.goto(url.rsplit("/", 1)[0] + "/")  # Generate: the new generators are listed without a restart
            page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
            menu = page.locator("[data-testid='stSelectbox']").first  # the checkpoint menu shows the new generator
            assert "/diffusion-cosine" in menu.inner_html()
            for label, value in (("Images", "2"), ("Steps", "2")):
                box = page.get_by_role("spinbutton", name=label, exact=True)
                box.fill(value)
                box.press("Enter")
                page.wait_for_timeout(1000)
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_text("seed 1", exact=True).wait_for(timeout=60_000)
            assert page.locator("[data-testid='stImage'] img").count() == 2
            browser.close()
        state = json.loads(fits[0].read_text())
        assert state["state"] == "done"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        for lock_file in runs_dir.glob(jobs.LOCK):  # a fit still running after a failure: stop it
            pid = json.loads(lock_file.read_text() or "{}").get("pid")
            if pid:
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass


def test_the_app_lists_the_train_page(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("LWGEN_SHIPPED", "0")
    monkeypatch.setenv("LWGEN_CHECKPOINTS", str(tmp_path / "none"))
    at = AppTest.from_file(str(PAGE.parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Train" and at.radio(key="train:source").value == "A folder on this server"
