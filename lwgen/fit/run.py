"""Run a fit: check the data, then each stage's `lwgen` sub-command in this process, recording progress in
`fit-state.json` so that the same command resumes, and finish with the card `fit.json`."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from ..checkpoint import TRAIN_STATE, write_json
from ..data import DataError
from ..io import check_writable_folder
from .data import FIT_CSV, DataReport, check_data, stage_csv
from .plan import SCHEDULES, FitOptions, Stage, budget, stages
from .samples import class_grids
from .state import (
    CARD,
    LOG,
    STATE,
    identity,
    new_state,
    read_state,
    stage_done,
    write_state,
)

STOPPED = (130, 143)  # exit codes of `lwgen` after Ctrl-C / SIGTERM (the trainer has saved)


def prepare_out(opts: FitOptions, force: bool, argv: list[str]) -> dict[str, Any]:
    """The fit state to continue in --out: an earlier fit of the same data and attributes, or a new one; a folder
    holding something else is refused unless `force` (which removes what a fit writes there)."""
    out = opts.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    ident = identity(opts.data, opts.csv, opts.file_column, opts.attributes, opts.text_column)
    held = sorted(p.name for p in out.iterdir() if p.name != LOG) if out.is_dir() else []
    state = None
    if force:
        for name in held:
            if name in (STATE, CARD, FIT_CSV, "samples", "autoencoder", "classifier") or name.startswith("diffusion-"):
                path = out / name
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    elif held:
        state = read_state(out)
        if state is None:
            shown = ", ".join(held[:4]) + (f", ... ({len(held)} entries)" if len(held) > 4 else "")
            raise ValueError(f"--out {out} is not empty (it holds {shown}) and is not an earlier fit; pass --force "
                             f"to fit there anyway, or choose a new folder")
        if state.get("identity") != ident:
            was = state.get("identity") or {}
            diff = "; ".join(f"{k} {was.get(k)!r} there, {v!r} now" for k, v in ident.items() if was.get(k) != v)
            raise ValueError(f"--out {out} holds a fit of other data ({diff}); pass --force to replace it, or "
                             f"choose a new folder")
    check_writable_folder(out)
    return state or new_state(ident, argv)


def _stage_argv(stage: Stage) -> list[str]:
    """A training stage left unfinished continues from its training state; one without a state starts again."""
    argv = list(stage.argv)
    if stage.trains:
        if (stage.out / TRAIN_STATE).is_file():
            argv.append("--resume")
        elif stage.out.is_dir() and any(stage.out.iterdir()):
            argv.append("--force")
    return argv


def _raise_terminated(signum, frame) -> None:
    from ..training.trainer import Terminated

    raise Terminated()


def run_fit(opts: FitOptions, force: bool = False, argv: list[str] | None = None) -> int:
    """Run (or resume) the fit `opts` describes (`argv`: its command line, kept to run it again). Returns 0, or
    the exit code of the stage that failed or was stopped."""
    argv = list(argv or [])
    t_start = time.monotonic()
    if not opts.data.is_dir():
        raise DataError(f"data folder not found: {opts.data}")
    state = prepare_out(opts, force, argv)
    state.update(command=argv, state="running", current="check data", pid=os.getpid())
    write_state(opts.out, state)
    print("checking the data...", flush=True)
    try:
        report = check_data(opts.data, opts.attributes, opts.csv, opts.file_column, opts.text_column)
        print("\n".join(report.lines(per_reason=5)), flush=True)
        csv, note = stage_csv(report, opts.file_column, opts.skip_bad, opts.out)
    except Exception:
        state["state"] = "failed"
        write_state(opts.out, state)
        raise
    if note:
        print(note, flush=True)
    plan = stages(opts, csv)
    state["budget"] = budget(opts.minutes, SCHEDULES[opts.schedule], fine_tune=opts.autoencoder_init is not None)
    state["stage_names"] = [s.name for s in plan]
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        rc = _run_stages(opts, plan, state)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if rc:
        return rc
    card = write_card(opts, report, csv, plan, state, time.monotonic() - t_start)
    state.update(state="done", current=None)
    write_state(opts.out, state)
    print(f"wrote {opts.out / CARD}: " + "; ".join(
        f"{s}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k in ("fid", "kid") or k.endswith("_top1"))
        for s, m in card["metrics"].items()), flush=True)
    for schedule, lines in card["warnings"].items():
        print("\n".join(f"warning ({schedule}): {line}" for line in lines), flush=True)
    return 0


def _run_stages(opts: FitOptions, plan: list[Stage], state: dict[str, Any]) -> int:
    """Each stage not done yet, through `lwgen.cli.main` with its argv; 0, or the exit code that stopped the fit."""
    from ..cli import main

    n = len(plan)
    for k, stage in enumerate(plan, 1):
        what = f"{stage.minutes:g} min" if stage.minutes else f"{opts.eval_n} images + sample grids"
        if stage_done(state, stage.name):
            print(f"stage {k}/{n}: {stage.name} ({what}): done before, skipped", flush=True)
            continue
        print(f"stage {k}/{n}: {stage.name} ({what})", flush=True)
        argv = _stage_argv(stage)
        entry = state["stages"].setdefault(stage.name, {"seconds": 0.0})
        entry.update(status="running", minutes=stage.minutes, path=str(stage.out), argv=argv, index=k)
        state["current"] = stage.name
        write_state(opts.out, state)
        t0 = time.monotonic()
        try:
            rc = main(argv)
            if rc == 0 and stage.name.startswith("evaluate-"):
                grids = class_grids(stage.out, opts.out / "samples" / stage.out.name, n=opts.grid_n)
                entry["samples"] = {v: str(Path(g).relative_to(opts.out)) for v, g in grids.items()}
                print(f"wrote {len(grids)} sample grids to {opts.out / 'samples' / stage.out.name}", flush=True)
        except KeyboardInterrupt as e:
            rc = 128 + int(getattr(e, "signum", 2))
        entry["seconds"] = round(entry["seconds"] + time.monotonic() - t0, 1)
        if rc:
            entry["status"] = "stopped" if rc in STOPPED else "failed"
            state.update(state=entry["status"], current=stage.name)
            write_state(opts.out, state)
            print(f"stage {k}/{n}: {stage.name} {entry['status']} (exit {rc}); run the same command again to "
                  f"resume", flush=True)
            return rc
        entry["status"] = "done"
        write_state(opts.out, state)
    return 0


def write_card(opts: FitOptions, report: DataReport, csv: str, plan: list[Stage], state: dict[str, Any],
               seconds: float) -> dict[str, Any]:
    """fit.json: the data, attributes, budget per stage, wall time, evaluation metrics, sample grids and paths."""
    metrics, samples, warnings = {}, {}, {}
    for stage in plan:
        if stage.name.startswith("evaluate-"):
            result = json.loads((stage.out / "eval.json").read_text())
            metrics[stage.schedule] = {k: v for k, v in result.items() if isinstance(v, (int, float))}
            if result.get("warnings"):
                warnings[stage.schedule] = result["warnings"]
            samples[stage.schedule] = state["stages"][stage.name].get("samples", {})
    stages_ = {s.name: {k: state["stages"][s.name].get(k) for k in ("minutes", "seconds")} for s in plan}
    card = {"kind": "fit",
            "data": {"folder": str(opts.data), "csv": opts.csv, "file_column": opts.file_column,
                     "text_column": opts.text_column or None, "stage_csv": csv, "rows": report.rows,
                     "images": report.images, "skipped": len(report.skipped), "counts": report.counts},
            "attributes": opts.attributes, "schedules": list(SCHEDULES[opts.schedule]),
            "budget_minutes": opts.minutes, "stages": stages_,
            "autoencoder_init": str(opts.autoencoder_init) if opts.autoencoder_init else None,
            "wall_time_s": round(sum(s["seconds"] or 0 for s in stages_.values()), 1),
            "last_run_s": round(seconds, 1), "metrics": metrics, "warnings": warnings,
            "samples": samples,  # relative to the fit folder
            "paths": {s.name: str(s.out) for s in plan if not s.name.startswith("evaluate-")},
            "command": shlex.join(["lwgen", *state.get("command", [])])}
    write_json(opts.out / CARD, card)
    return card
