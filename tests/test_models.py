"""Networks: shapes, initial behaviour, size of the default configuration."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lwgen.diffusion import ScheduleConfig, spaced_timesteps
from lwgen.models import (
    NULL,
    AttributeEmbedder,
    Autoencoder,
    AutoencoderConfig,
    EmbedderConfig,
    UNet,
    UNetConfig,
    Upscaler,
    UpscalerConfig,
    count_parameters,
    forward_gmacs,
    reconstruction_loss,
)
from lwgen.pipeline import ConditionError, DiffusionModel, projected_guidance, within


@pytest.mark.parametrize("cfg", [
    UNetConfig(resolution=16, base_channels=16, channel_mult=(1, 2), attention_levels=(1,), emb_dim=32, groups=8),
    UNetConfig(resolution=32, in_channels=3, unshuffle=2, base_channels=16, channel_mult=(1, 2, 2),
               attention_levels=(2,), emb_dim=32, groups=8, cond_dim=8),
    UNetConfig(resolution=64, in_channels=3, unshuffle=4, base_channels=16, channel_mult=(1, 2), attention_levels=(),
               emb_dim=32),
])
def test_unet_keeps_the_input_shape(cfg):
    net = UNet(cfg)
    x = torch.randn(2, cfg.in_channels, cfg.resolution, cfg.resolution)
    out = net(x, torch.tensor([0.0, 999.0]), torch.randn(2, cfg.cond_dim))
    assert out.shape == x.shape
    assert torch.all(out == 0), "the output layer is zero-initialised"


def test_condition_tokens_start_at_zero():
    """Cross-attention to tokens read from the condition is zero-initialised: a trained U-Net that gains it
    predicts what it did, and the new weights, once they move, change the prediction."""
    cfg = UNetConfig(resolution=8, base_channels=16, channel_mult=(1, 2), attention_levels=(1,), emb_dim=32,
                     groups=8, head_dim=16, cond_dim=16)
    torch.manual_seed(0)
    plain, tokens = UNet(cfg), UNet(dataclasses.replace(cfg, cond_tokens=4))
    missing = tokens.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".cross." in k or k.startswith("token_") for k in missing)
    for p in plain.parameters():  # a trained-looking network: no zero output layers
        torch.nn.init.normal_(p, std=0.2)
    tokens.load_state_dict(plain.state_dict(), strict=False)
    x, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([10.0, 500.0]), torch.randn(2, 16)
    assert torch.equal(plain(x, t, cond), tokens(x, t, cond))
    for name, p in tokens.named_parameters():
        if ".cross." in name or name.startswith("token_"):
            torch.nn.init.normal_(p, std=0.2)
    assert not torch.allclose(tokens(x, t, cond), plain(x, t, cond))


def test_unet_rejects_resolutions_it_cannot_halve():
    with pytest.raises(ValueError, match="cannot be halved"):
        UNetConfig(resolution=24, unshuffle=4, channel_mult=(1, 2, 2))


def test_default_unet_is_light():
    net = UNet(UNetConfig())
    r = net.config.resolution
    assert count_parameters(net) <= 5_000_000
    gmac = forward_gmacs(net, torch.zeros(1, net.config.in_channels, r, r), torch.zeros(1),
                         torch.zeros(1, net.config.cond_dim))
    # a diffusers UNet2DModel of the original's 93 M parameters costs 15.3 GMAC at 64 px (benchmarks/peer.py)
    assert gmac < 15.3 / 50, "well over an order of magnitude below the original design"


def test_generator_moves_like_any_module(tiny_latent_checkpoint):
    """`.to()` reaches every submodule: dtype, channels_last (and a device, on machines that have one)."""
    m = DiffusionModel.from_checkpoint(tiny_latent_checkpoint)
    x, t = torch.randn(2, *m.noise_shape), torch.tensor([10, 500])
    c = m.condition(m.encode({"shape": "square"}).expand(2, -1))
    with torch.no_grad():
        ref = m.unet(x, t, c)
        m.to(memory_format=torch.channels_last)
        assert torch.allclose(m.unet(x.contiguous(memory_format=torch.channels_last), t, c), ref, atol=1e-4)
        m.to(torch.float64)
        assert next(m.unet.parameters()).dtype == torch.float64
        assert torch.allclose(m.unet(x.double(), t, c.double()).float(), ref, atol=1e-4)


def test_upscaler_starts_exactly_at_bicubic():
    up = Upscaler(UpscalerConfig(scale=4, channels=8, num_blocks=2))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(up(x), F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False))


def test_embedder_null_and_sum():
    emb = AttributeEmbedder(EmbedderConfig(["a", "b"], [3, 2], dim=4))
    with torch.no_grad():
        emb.null.copy_(torch.arange(8.0).reshape(2, 4))
    full = emb(torch.tensor([[1, 0]]))
    assert torch.allclose(full, emb.tables[0].weight[1] + emb.tables[1].weight[0])
    none = emb(torch.tensor([[NULL, NULL]]))
    assert torch.allclose(none, emb.null.sum(0))
    with pytest.raises(ValueError, match="shape"):
        emb(torch.tensor([[1, 0, 0]]))


def _model():
    unet = UNetConfig(resolution=16, in_channels=3, base_channels=16, channel_mult=(1, 2), attention_levels=(1,),
                      emb_dim=32, groups=8)
    return DiffusionModel(unet, ScheduleConfig("linear"),
                          {"shape": ["circle", "square"], "color": ["red", "blue"]}, cond_dim=16)


def test_encode_names_and_errors():
    m = _model()
    assert m.encode({"color": "blue"}).tolist() == [NULL, 1]
    assert m.encode({"shape": "any", "color": "red"}).tolist() == [NULL, 0]
    with pytest.raises(ConditionError, match="unknown attribute 'colour'; valid attributes: shape, color"):
        m.encode({"colour": "red"})
    with pytest.raises(ConditionError, match="unknown value 'green' for attribute 'color'; valid values: red, blue"):
        m.encode({"color": "green"})


def test_generation_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    m = _model().eval()
    for p in m.unet.out.parameters():  # make the output depend on the input
        torch.nn.init.normal_(p, std=0.05)
    cond = m.condition(torch.tensor([[0, 1], [1, 0], [1, 1]]))
    for sampler in ("dpmpp", "ddim", "ddpm"):
        a = m.generate(cond, seeds=[5, 6, 7], steps=4, sampler=sampler, bf16=False)
        b = m.generate(cond[1:2], seeds=[6], steps=4, sampler=sampler, bf16=False)
        c = m.generate(cond, seeds=[5, 6, 7], steps=4, sampler=sampler, bf16=False)
        assert torch.equal(a, c)
        assert torch.allclose(a[1:2], b, atol=1e-5)
    assert a.shape == (3, 3, 16, 16) and a.min() >= -1 and a.max() <= 1


def test_guidance_interval_limits_guidance_to_its_noise_levels():
    torch.manual_seed(0)
    m = _model().eval()
    for p in m.parameters():  # no zero-initialised layer: the condition and the input reach the output
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.05)
    cond = m.condition(torch.tensor([[0, 1], [1, 0]]))
    kw = dict(seeds=[1, 2], steps=4, sampler="ddim", bf16=False)
    guided = m.generate(cond, guidance=5.0, **kw)
    assert torch.equal(m.generate(cond, guidance=5.0, interval=(0.0, float("inf")), **kw), guided)
    nowhere = m.generate(cond, guidance=5.0, interval=(1e6, 2e6), **kw)  # no step is that noisy
    assert torch.equal(nowhere, m.generate(cond, guidance=1.0, **kw))
    abar = m.alphas_cumprod
    sigmas = sorted(float(((1 - abar[t]) / abar[t]) ** 0.5) for t in spaced_timesteps(4, m.schedule.timesteps))
    high = m.generate(cond, guidance=5.0, interval=(sigmas[2], float("inf")), **kw)  # the two noisier steps only
    assert not torch.equal(high, guided) and not torch.equal(high, nowhere) and not torch.equal(guided, nowhere)
    assert within(abar[-1], (1.0, float("inf"))) and not within(abar[0], (1.0, float("inf")))
    assert within(torch.tensor(0.5), (1.0, 1.0))  # sigma of abar 0.5 is 1


def test_projected_guidance_keeps_the_orthogonal_part_and_plain_guidance_at_parallel_one():
    g = torch.Generator().manual_seed(0)
    cond_x0, uncond_x0 = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    plain = uncond_x0 + 5.0 * (cond_x0 - uncond_x0)
    assert torch.allclose(projected_guidance(cond_x0, uncond_x0, 5.0, 1.0), plain, atol=1e-5)
    update = projected_guidance(cond_x0, uncond_x0, 5.0, 0.0) - cond_x0
    assert torch.allclose((update * cond_x0).sum((1, 2, 3)), torch.zeros(3), atol=1e-3)  # orthogonal per sample
    assert not torch.allclose(update, plain - cond_x0, atol=1e-2)
    assert torch.equal(projected_guidance(cond_x0, cond_x0, 5.0, 0.0), cond_x0)  # nothing to guide by


def test_generate_with_projected_guidance_differs_from_plain_guidance_only_when_asked():
    torch.manual_seed(0)
    m = _model().eval()
    for p in m.parameters():
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.05)
    cond = m.condition(torch.tensor([[0, 1], [1, 0]]))
    kw = dict(seeds=[1, 2], steps=4, sampler="ddim", bf16=False, guidance=5.0)
    plain = m.generate(cond, **kw)
    assert torch.allclose(m.generate(cond, parallel=1.0, **kw), plain)
    assert not torch.allclose(m.generate(cond, parallel=0.0, **kw), plain, atol=1e-4)


def test_autoencoder_shapes_and_factor():
    ae = Autoencoder(AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = ae.encode(x)
    assert ae.config.factor == 4 and z.shape == (2, 4, 8, 8)
    assert ae.decode(z).shape == x.shape
    assert reconstruction_loss(x, x).item() == 0


def test_latent_generator_makes_images(tiny_latent_checkpoint):
    m = DiffusionModel.from_checkpoint(tiny_latent_checkpoint)
    assert m.noise_shape == (4, 16, 16) and m.resolution == 32
    assert not torch.equal(m.latent_scale, torch.ones_like(m.latent_scale)), "latent statistics are stored"
    cond = m.condition(m.encode({"shape": "square"}).expand(2, -1))
    img = m.generate(cond, seeds=[0, 1], steps=3, bf16=False)
    assert img.shape == (2, 3, 32, 32) and img.abs().max() <= 1
    assert torch.allclose(img[1:], m.generate(cond[1:], seeds=[1], steps=3, bf16=False), atol=1e-4)
    z = m.to_latent(img, bf16=False)
    assert z.shape == (2, *m.noise_shape)


def test_info_describes_a_latent_checkpoint(tiny_latent_checkpoint, capsys):
    from lwgen.cli import main

    assert main(["info", "--checkpoint", str(tiny_latent_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "GMAC per forward on 4x16x16" in out and "32 px images" in out and "decoder" in out
