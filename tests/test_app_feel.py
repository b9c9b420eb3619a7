"""How the app feels: cancelling, time estimates, batches shared by sessions, cached maps and stable colours."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from lwgen.app.estimates import StepTimes, estimate, step_times
from lwgen.app.figures import category_colors, thumbnail_scatter
from lwgen.app.images import data_uri
from lwgen.app.runner import Batcher, Cancelled, condition_of, generate_images, traced_sample
from lwgen.app.selection import outside_known
from lwgen.pipeline import DiffusionModel

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cosine(tiny_checkpoints) -> DiffusionModel:
    return DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])


def test_cancel_stops_after_the_current_step_and_frees_the_model(cosine):
    cancel, lock, steps_seen = threading.Event(), threading.Lock(), []

    def progress(fraction: float, message: str) -> None:
        steps_seen.append(message)
        if len(steps_seen) == 2:
            cancel.set()

    cond = condition_of(cosine, {})
    with pytest.raises(Cancelled):
        generate_images(cosine, cond, [0, 1], 50, "ddim", 1.0, progress, lock, cancel=cancel)
    assert len(steps_seen) == 2 and not lock.locked()
    with pytest.raises(Cancelled):
        traced_sample(cosine, cond, 0, 50, "ddim", 1.0, [], lock=lock, cancel=cancel)
    assert generate_images(cosine, cond, [0], 2, "ddim", 1.0, lock=lock).shape[0] == 1  # usable afterwards


def test_cancel_while_batched_leaves_the_others_their_images(cosine):
    batcher = Batcher(cosine, threading.Lock(), window=0.2)
    cond = condition_of(cosine, {"shape": "circle"})
    cancel = threading.Event()
    cancel.set()
    results: dict[str, object] = {}

    def run(name: str, event: threading.Event | None) -> None:
        try:
            results[name] = generate_images(cosine, cond, [7, 8], 3, "ddim", 2.0, cancel=event, batcher=batcher)
        except Cancelled as e:
            results[name] = e

    threads = [threading.Thread(target=run, args=("kept", None)), threading.Thread(target=run, args=("gone", cancel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(results["gone"], Cancelled)
    assert torch.equal(results["kept"], generate_images(cosine, cond, [7, 8], 3, "ddim", 2.0))


def test_requests_of_several_sessions_share_one_batch_and_match_unbatched(cosine):
    batcher = Batcher(cosine, threading.Lock(), window=0.3)
    conds = [condition_of(cosine, {"shape": s}) for s in ("circle", "square", "circle")]
    seeds = [[0, 1], [2], [5, 6, 7]]
    results: list = [None] * 3
    seen: list[list[str]] = [[], [], []]

    def run(k: int) -> None:
        results[k] = generate_images(cosine, conds[k], seeds[k], 3, "dpmpp", 2.0,
                                     progress=lambda f, m, k=k: seen[k].append(m), batcher=batcher)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert batcher.batches == [3]  # one forward pass per step for the three calls
    for k in range(3):
        alone = generate_images(cosine, conds[k], seeds[k], 3, "dpmpp", 2.0)
        assert torch.equal(results[k], alone)
        assert any("in one batch with 2 other requests" in m for m in seen[k])
    other = generate_images(cosine, conds[0], [0], 4, "dpmpp", 2.0, batcher=batcher)  # other settings: own batch
    assert batcher.batches == [3, 1] and torch.equal(other, generate_images(cosine, conds[0], [0], 4, "dpmpp", 2.0))


def test_batcher_hands_errors_to_the_caller(cosine):
    batcher = Batcher(cosine, window=0.0)
    with pytest.raises(ValueError, match="sampler"):
        batcher.generate(condition_of(cosine, {}), [0], 2, "no-such-sampler", 1.0)
    assert batcher.generate(condition_of(cosine, {}), [0], 1, "ddim", 1.0).shape[0] == 1  # the worker lives on


def test_step_times_fit_a_line_through_the_runs():
    times = StepTimes()
    assert times.per_step(4) is None
    times.add(2, 10, 3.0)  # 0.3 s per step for 2 samples
    assert times.per_step(4) == pytest.approx(0.6)  # one size seen: proportional
    times.add(10, 10, 7.0)  # 0.7 s per step for 10 samples: 0.2 + 0.05 * samples
    assert times.per_step(20) == pytest.approx(1.2)
    times.add(0, 10, 1.0)  # ignored
    assert len(times.runs) == 2


def test_estimate_guesses_then_uses_the_measured_time(tiny_checkpoints):
    model = DiffusionModel.from_checkpoint(tiny_checkpoints["linear"])  # a model of its own: no runs yet
    guess = estimate(model, 4, 3, 2.0)
    assert not guess.measured and guess.seconds > 0 and "rough guess" in guess.text()
    generate_images(model, condition_of(model, {}), [0, 1, 2, 3], 3, "ddim", 2.0)
    assert estimate(model, 4, 3, 2.0).seconds <= guess.seconds  # the guess errs on the long side
    measured = estimate(model, 8, 30, 2.0)
    per_step = step_times(model).per_step(16)
    assert measured.measured and measured.seconds == pytest.approx(30 * per_step)
    assert measured.text().startswith("about ") and "runs so far" in measured.text()
    assert estimate(model, 8, 60, 2.0).seconds == pytest.approx(2 * measured.seconds)
    assert estimate(model, 8, 30, 1.0).seconds < measured.seconds  # no guidance: one U-Net pass per image


def test_colours_follow_the_vocabulary_not_the_gallery():
    vocab = ["animals", "flags", "people", "smileys-emotion"]
    one = category_colors(["people", "flags"], vocab)
    two = category_colors(["smileys-emotion", "flags", "animals", "people"], vocab)
    assert one["people"] == two["people"] and one["flags"] == two["flags"]
    assert len(set(two.values())) == 4
    other = category_colors(["real", "generated"])  # no vocabulary: sorted order
    assert other == category_colors(["generated", "real"])


def test_thumbnail_scatter_draws_webp_thumbnails_in_vocabulary_colours():
    images = torch.randint(0, 255, (3, 3, 16, 16), dtype=torch.uint8)
    uri = data_uri(images[0], 8, "WEBP")
    assert uri.startswith("data:image/webp;base64,") and len(uri) < len(data_uri(images[0], 8))
    frame = pd.DataFrame({"group": ["b", "a", "b"], "tag": ["x", "y", "z"]})
    xy = np.array([[0, 0], [1, 1], [2, 0]], np.float32)
    fig = thumbnail_scatter(xy, frame, "group", ["group", "tag"], [uri, None, None], palette_order=["a", "b"])
    colours = {t.name: t.marker.color for t in fig.data}
    assert colours == category_colors(["a", "b"], ["a", "b"])
    assert [im.source for im in fig.layout.images] == [uri]
    assert fig.data[0].hovertext[0] == "group: b<br>tag: x"


def test_outside_known_flags_positions_far_from_every_condition():
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert not outside_known(xy, (0.5, 0.5))
    assert not outside_known(xy, (1.1, -0.1))  # within the margin
    assert outside_known(xy, (5.0, 0.5)) and outside_known(xy, (0.5, -3.0))
