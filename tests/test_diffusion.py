"""Schedules, parameterisations and samplers."""
import math

import pytest
import torch

from lwgen.diffusion import (
    SAMPLERS,
    ScheduleConfig,
    add_noise,
    cosine,
    get_sampler,
    linear,
    loss_weight,
    sigmoid,
    spaced_timesteps,
    target,
    to_x0,
)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_schedule_invariants(name):
    abar = ScheduleConfig(name).alphas_cumprod()
    assert abar.shape == (1000,)
    assert torch.all(abar[1:] < abar[:-1]), "alpha-bar must decrease strictly"
    assert 0.99 < abar[0] <= 1.0
    assert abar[-1] < 1e-2


def test_linear_matches_ddpm_betas():
    abar = linear(1000, 1e-4, 0.02)
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)


def test_cosine_matches_closed_form_away_from_clipping():
    abar = cosine(1000, 0.008)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (0, 250, 500, 900):
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-6)


def test_sigmoid_is_monotone_and_ends_near_zero():
    abar = sigmoid(1000)
    assert torch.all(abar[1:] <= abar[:-1]) and abar[-1] < 1e-3


def test_schedule_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'.*linear, cosine, sigmoid"):
        ScheduleConfig("quadratic")
    with pytest.raises(ValueError, match="unknown prediction"):
        ScheduleConfig("cosine", prediction="x1")


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_target_inverts_to_x0(prediction):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    abar = torch.tensor([0.999, 0.5, 0.1, 0.01])
    x_t = add_noise(x0, noise, abar)
    assert torch.allclose(to_x0(x_t, target(x0, noise, abar, prediction), abar, prediction), x0, atol=1e-4)


def test_min_snr_weight():
    abar = torch.tensor([0.99, 0.5, 0.01])
    snr = abar / (1 - abar)
    assert torch.allclose(loss_weight(abar, "v", 5.0), snr.clamp(max=5) / (snr + 1))
    assert torch.allclose(loss_weight(abar, "eps", 5.0), snr.clamp(max=5) / snr)
    assert torch.equal(loss_weight(abar, "v", None), torch.ones(3))
    # the floor lifts only the noisiest step (SNR 0.0101 < 1): its x0 weight becomes 1, so its v weight 1 / (SNR + 1)
    floored = loss_weight(abar, "v", 5.0, snr_floor=1.0)
    assert torch.allclose(floored[:2], loss_weight(abar, "v", 5.0)[:2])
    assert torch.allclose(floored[2], 1 / (snr[2] + 1)) and floored[2] > 50 * loss_weight(abar, "v", 5.0)[2]


def test_spaced_timesteps():
    ts = spaced_timesteps(20, 1000)
    assert ts[0] == 999 and len(ts) == 20 and torch.all(ts[1:] < ts[:-1]) and ts[-1] >= 0
    assert spaced_timesteps(1000, 1000).tolist() == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="between 1 and 1000"):
        spaced_timesteps(0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 5, 20])
def test_samplers_reach_an_oracle_target(name, steps):
    """With a denoiser that always predicts the same x0, every sampler must end exactly there."""
    abar = ScheduleConfig("cosine").alphas_cumprod().float()
    goal = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g)
    seen = []
    out = get_sampler(name)(lambda x_t, t: goal, x, spaced_timesteps(steps), abar,
                            noise=lambda: torch.randn(2, 3, 4, 4, generator=g), callback=seen.append)
    assert torch.allclose(out, goal, atol=1e-5)
    assert [s["i"] for s in seen] == list(range(steps)) and seen[-1]["n"] == steps


def test_dpmpp_is_second_order_on_a_linear_denoiser():
    """On a Gaussian toy problem with an exact denoiser, DPM-Solver++(2M) at 10 steps beats DDIM at 10 steps."""
    abar = ScheduleConfig("cosine").alphas_cumprod().float()
    s2 = 0.25  # data ~ N(0, s2); exact posterior mean: x0 = sqrt(a) s2 / (a s2 + 1 - a) x_t
    denoise = lambda x, t: (abar[t].sqrt() * s2 / (abar[t] * s2 + 1 - abar[t])).view(-1, 1) * x
    x = torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    exact = get_sampler("ddim")(denoise, x, spaced_timesteps(1000), abar)
    err = {n: (get_sampler(n)(denoise, x, spaced_timesteps(10), abar) - exact).abs().mean().item()
           for n in ("ddim", "dpmpp")}
    assert err["dpmpp"] < 0.5 * err["ddim"]


def test_unknown_sampler_lists_choices():
    with pytest.raises(ValueError, match="ddpm, ddim, dpmpp"):
        get_sampler("euler")
