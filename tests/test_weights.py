"""Weights load from every supported layout, and our forward equals diffusers' WanTransformer3DModel."""

import json

import pytest
import torch
from safetensors.torch import save_file

from contextforcing.model.config import DiTConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.model.weights import (
    config_from_state_dict,
    convert,
    detect_layout,
    diffusers_config,
    load_model,
    save_model,
)

from helpers import assert_close, randomize

diffusers = pytest.importorskip("diffusers")
single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")

TOL = 2e-6
DIFFUSERS_SINUSOID_TOL = 1e-4
"""diffusers computes the timestep sinusoid in float32; Wan (and we) in float64."""


class WanSinusoid(torch.nn.Module):
    """Wan2.1's `sinusoidal_embedding_1d`: float64 angles t * 10000^(-i/half), cosines first."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        position = t.to(torch.float64)
        sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half).to(position).div(half)))
        return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def _diffusers_tiny(config: DiTConfig):
    model = diffusers.WanTransformer3DModel(**diffusers_config(config), rope_max_seq_len=64)
    return randomize(model, seed=3).eval()


def _with_wan_sinusoid(reference, config: DiTConfig):
    """The diffusers model with Wan's float64 timestep sinusoid in place of its float32 one."""
    reference.condition_embedder.timesteps_proj = WanSinusoid(config.freq_dim)
    return reference


def _inputs(config, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, config.in_channels, 5, 6, 8, generator=g)
    t = torch.tensor([130.0, 915.0])
    text = torch.randn(2, config.text_len, config.text_dim, generator=g)
    return x, t, text


def _padded(text: torch.Tensor, length: int) -> torch.Tensor:
    """Text features zero-padded to `length` tokens, as Wan's forward (and diffusers' pipeline) pads."""
    return torch.cat([text, text.new_zeros(text.shape[0], length - text.shape[1], text.shape[2])], dim=1)


def _assert_same_as_diffusers(ours, reference, config):
    x, t, short = _inputs(config)
    text = _padded(short, ours.config.text_len)  # diffusers' transformer leaves padding to its pipeline
    tokens_per_frame = config.tokens_per_frame(x.shape[3], x.shape[4])
    per_frame = torch.tensor([[10.0, 250.0, 500.0, 750.0, 999.0], [0.0, 0.0, 333.0, 333.0, 1000.0]])
    with torch.no_grad():
        ours_out = ours(x, t, short)
        # diffusers' own float32 sinusoid departs from Wan's by ~1e-5; with Wan's the models agree.
        assert_close(ours_out, reference(x, t, text, return_dict=False)[0], atol=DIFFUSERS_SINUSOID_TOL)
        reference = _with_wan_sinusoid(reference, config)
        assert_close(ours_out, reference(x, t, text, return_dict=False)[0], atol=TOL)
        # diffusers takes per-token timesteps; ours takes one per latent frame.
        ours_out = ours(x, per_frame, short)
        reference_out = reference(
            x, per_frame.repeat_interleave(tokens_per_frame, 1), text, return_dict=False
        )[0]
        assert_close(ours_out, reference_out, atol=TOL)


def test_short_text_is_padded_with_zeros_as_wan(tmp_path, tiny_config):
    """Wan pads prompt features to text_len with zeros and attends to the padding; diffusers leaves the
    padding to its pipeline, so a diffusers model given the zero-padded prompt is the reference."""
    reference = _diffusers_tiny(tiny_config)
    reference.save_pretrained(tmp_path / "transformer")
    ours = load_model(tmp_path)
    reference = _with_wan_sinusoid(reference, tiny_config)
    x, t, text = _inputs(tiny_config)
    short = text[:, :5]
    padded = _padded(short, ours.config.text_len)
    with torch.no_grad():
        reference_out = reference(x, t, padded, return_dict=False)[0]
        assert_close(ours(x, t, short), reference_out, atol=TOL)
        unpadded = reference(x, t, short, return_dict=False)[0]
    assert (unpadded - reference_out).abs().max() > 1e-2  # the padding matters
    with pytest.raises(ValueError, match="text_len"):
        ours(x, t, _padded(text, ours.config.text_len + 1))


def test_equals_diffusers_loaded_from_a_diffusers_folder(tmp_path, tiny_config):
    reference = _diffusers_tiny(tiny_config)
    reference.save_pretrained(tmp_path / "transformer")
    assert detect_layout(tmp_path) == "diffusers"
    ours = load_model(tmp_path)
    assert ours.config.dim == tiny_config.dim and ours.config.num_layers == tiny_config.num_layers
    _assert_same_as_diffusers(ours, reference, tiny_config)


def _write_wan_original(folder, model: CausalDiT, shards: int = 2):
    """The original Wan2.1 release layout: sharded safetensors with Wan's names and its config.json."""
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    for i in range(shards):
        part = {k: state[k] for k in keys[i::shards]}
        save_file(part, folder / f"diffusion_pytorch_model-0000{i + 1}-of-0000{shards}.safetensors")
    c = model.config
    config = {"_class_name": "WanModel", "model_type": "t2v", "dim": c.dim, "ffn_dim": c.ffn_dim,
              "freq_dim": c.freq_dim, "in_dim": c.in_channels, "out_dim": c.out_channels,
              "num_heads": c.num_heads, "num_layers": c.num_layers, "text_len": c.text_len,
              "text_dim": c.text_dim, "eps": c.eps}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return state


def test_equals_diffusers_when_converted_from_the_original_layout(tmp_path, tiny_config):
    """diffusers' own Wan converter and ours read the same original checkpoint the same way."""
    source = randomize(CausalDiT(tiny_config), seed=5)
    state = _write_wan_original(tmp_path / "wan", source)
    converted = single_file_utils.convert_wan_transformer_to_diffusers(dict(state))
    reference = _diffusers_tiny(tiny_config)
    missing, unexpected = reference.load_state_dict(converted, strict=True)
    assert not missing and not unexpected
    assert detect_layout(tmp_path / "wan") == "wan"
    convert(tmp_path / "wan", tmp_path / "ours")
    assert detect_layout(tmp_path / "ours") == "contextforcing"
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model"]["num_heads"] == tiny_config.num_heads
    _assert_same_as_diffusers(load_model(tmp_path / "ours"), reference.eval(), tiny_config)


def test_self_forcing_checkpoint_prefers_ema(tmp_path, tiny_config):
    generator = randomize(CausalDiT(tiny_config), seed=1)
    ema = randomize(CausalDiT(tiny_config), seed=2)
    checkpoint = {
        "generator": {f"model.{k}": v for k, v in generator.state_dict().items()},
        "generator_ema": {f"model._fsdp_wrapped_module.{k}": v for k, v in ema.state_dict().items()},
    }
    torch.save(checkpoint, tmp_path / "model.pt")
    assert detect_layout(tmp_path / "model.pt") == "self-forcing"
    loaded = load_model(tmp_path / "model.pt", config=tiny_config)
    assert torch.equal(loaded.head.head.weight, ema.head.head.weight)
    loaded = load_model(tmp_path / "model.pt", config=tiny_config, ema=False)
    assert torch.equal(loaded.head.head.weight, generator.head.head.weight)


def test_round_trip_is_exact(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config == tiny_model.config
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, tiny_model, tiny_config):
    state = dict(tiny_model.state_dict())
    del state["blocks.1.ffn.0.bias"]
    state["blocks.0.extra.weight"] = torch.zeros(3)
    state["head.head.weight"] = torch.zeros(5, 5)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(
        json.dumps({"format": "contextforcing", "model": tiny_config.to_dict()})
    )
    with pytest.raises(ValueError) as error:
        load_model(tmp_path)
    message = str(error.value)
    assert "blocks.1.ffn.0.bias" in message and "blocks.0.extra.weight" in message
    assert "head.head.weight: checkpoint (5, 5), model expects (16, 64)" in message


def test_unknown_layout_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        detect_layout(tmp_path)
    with pytest.raises(ValueError, match="no checkpoint"):
        detect_layout(tmp_path / "absent")


def test_config_inferred_from_shapes(tiny_model):
    inferred = config_from_state_dict(tiny_model.state_dict(), head_dim=32, text_len=8)
    assert inferred == tiny_model.config
    with pytest.raises(ValueError, match="head dim"):
        config_from_state_dict(tiny_model.state_dict(), head_dim=48)
