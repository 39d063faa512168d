"""The three ways to run the DiT agree with each other and with diffusers' Wan transformer."""

import pytest
import torch

from contextforcing.model.dit import CausalDiT
from contextforcing.model.layout import FrameAttention, LayerContext, bidirectional, block_causal
from contextforcing.model.rope import Rotation, apply_rotary, rotary_for_frames

from helpers import assert_close

TOL = 1e-5
CHUNK = 3


def _inputs(config, frames=6, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_channels, frames, 4, 6, generator=g)
    t = torch.rand(batch, frames, generator=g) * 1000
    text = torch.randn(batch, config.text_len, config.text_dim, generator=g)
    return x, t, text


def test_output_shape_and_timestep_forms(tiny_model, tiny_config):
    x, t, text = _inputs(tiny_config)
    with torch.no_grad():
        per_sample = tiny_model(x, t[:, 0], text)
        per_frame = tiny_model(x, t[:, :1].expand(-1, x.shape[2]), text)
    assert per_sample.shape == x.shape
    assert_close(per_frame, per_sample, atol=TOL)


def test_text_cache_equals_raw_text(tiny_model, tiny_config):
    x, t, text = _inputs(tiny_config)
    with torch.no_grad():
        assert_close(tiny_model(x, t, tiny_model.encode_text(text)), tiny_model(x, t, text), atol=TOL)


def test_streaming_with_all_history_equals_block_causal(tiny_model, tiny_config):
    """Mode (c) chunk by chunk, keeping every chunk's K/V, equals one block-causal forward (b)."""
    x, t, text = _inputs(tiny_config, frames=9)
    with torch.no_grad():
        reference = tiny_model(x, t, text, layout=block_causal(9, CHUNK))
        cache = tiny_model.encode_text(text)
        keys = values = None
        for start in range(0, 9, CHUNK):
            positions = torch.arange(start, start + CHUNK)
            context = None
            if keys is not None:
                context = [LayerContext(k, v, torch.arange(start)) for k, v in zip(keys, values, strict=True)]
            out, kv = tiny_model(
                x[:, :, start : start + CHUNK], t[:, start : start + CHUNK], cache,
                layout=bidirectional(CHUNK, positions), context=context, return_kv=True,
            )  # fmt: skip
            assert_close(out, reference[:, :, start : start + CHUNK], atol=TOL)
            new_k, new_v = [k for k, _ in kv], [v for _, v in kv]
            keys = new_k if keys is None else [torch.cat(p, 1) for p in zip(keys, new_k, strict=True)]
            values = new_v if values is None else [torch.cat(p, 1) for p in zip(values, new_v, strict=True)]


def test_block_causal_first_chunk_ignores_the_future(tiny_model, tiny_config):
    x, t, text = _inputs(tiny_config)
    changed = x.clone()
    changed[:, :, CHUNK:] += 1.0
    with torch.no_grad():
        a = tiny_model(x, t, text, layout=block_causal(6, CHUNK))
        b = tiny_model(changed, t, text, layout=block_causal(6, CHUNK))
    assert_close(b[:, :, :CHUNK], a[:, :, :CHUNK], atol=TOL)
    assert not torch.allclose(a[:, :, CHUNK:], b[:, :, CHUNK:], atol=1e-3)


def test_positions_are_relative(tiny_model, tiny_config):
    """Shifting every temporal position by the same amount leaves the output unchanged (RoPE)."""
    x, t, text = _inputs(tiny_config)
    with torch.no_grad():
        a = tiny_model(x, t, text, layout=bidirectional(6, torch.arange(6)))
        b = tiny_model(x, t, text, layout=bidirectional(6, torch.arange(6) + 17))
        c = tiny_model(x, t, text, layout=bidirectional(6, torch.arange(6) * 2))
    assert_close(b, a, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)


def test_repeated_key_entries_match_a_context_read(tiny_model, tiny_config):
    """A key frame listed at a new position in a layout equals reading it from a context there."""
    x, t, text = _inputs(tiny_config)
    t[:, :CHUNK] = 0
    with torch.no_grad():
        _, kv = tiny_model(x[:, :, :CHUNK], t[:, :CHUNK], text, return_kv=True)
        context = [LayerContext(k, v, torch.tensor([5, 6, 9])) for k, v in kv]
        streamed = tiny_model(
            x[:, :, CHUNK:], t[:, CHUNK:], text, layout=bidirectional(CHUNK, torch.tensor([10, 11, 12])),
            context=context,
        )  # fmt: skip
        layout = FrameAttention(
            query_positions=torch.tensor([0, 1, 2, 10, 11, 12]),
            key_frames=torch.tensor([0, 1, 2, 0, 1, 2, 3, 4, 5]),
            key_positions=torch.tensor([0, 1, 2, 5, 6, 9, 10, 11, 12]),
            visible=torch.tensor([[1] * 3 + [0] * 6] * 3 + [[0] * 3 + [1] * 6] * 3).bool(),
        )
        single = tiny_model(x, t, text, layout=layout)
    assert_close(single[:, :, CHUNK:], streamed, atol=TOL)


def test_rotation_is_an_isometry_and_exact_at_zero():
    x = torch.randn(2, 5 * 6, 3, 12)
    rotation = rotary_for_frames(torch.arange(5), (2, 3), (4, 4, 4), 10000.0)
    rotated = apply_rotary(x, rotation)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    zero = Rotation(
        torch.stack([torch.ones_like(rotation.table[..., 0]), torch.zeros_like(rotation.table[..., 1])], -1)
    )
    assert torch.equal(apply_rotary(x, zero), x)


def test_bad_inputs_are_named(tiny_model, tiny_config):
    x, t, text = _inputs(tiny_config)
    with pytest.raises(ValueError, match="x must be"):
        tiny_model(x[:, :1], t, text)
    with pytest.raises(ValueError, match="t must be"):
        tiny_model(x, t[:, :2], text)
    with pytest.raises(ValueError, match="text must be"):
        tiny_model(x, t, text[..., :3])
    with pytest.raises(ValueError, match="query frames"):
        tiny_model(x, t, text, layout=bidirectional(4))
    with pytest.raises(ValueError, match="do not split"):
        block_causal(7, 3)


def test_bf16_keeps_float32_islands(tiny_config):
    model = CausalDiT(tiny_config).to(torch.bfloat16)
    x, t, text = _inputs(tiny_config)
    with torch.no_grad():
        out = model(x.bfloat16(), t, text.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_short_text_is_zero_padded_and_long_text_refused(tiny_model, tiny_config):
    """Wan pads prompt features to text_len with zeros inside its forward and attends to the padding."""
    x, t, text = _inputs(tiny_config)
    short = text[:, :5]
    padded = torch.cat([short, torch.zeros_like(text[:, 5:])], dim=1)
    with torch.no_grad():
        assert_close(tiny_model(x, t, short), tiny_model(x, t, padded), atol=TOL)
        assert tiny_model.encode_text(short).kv[0][0].shape[1] == tiny_config.text_len
    with pytest.raises(ValueError, match="text_len"):
        tiny_model(x, t, torch.cat([text, text[:, :1]], dim=1))


def test_timestep_sinusoid_is_float64_as_wan():
    """Wan computes the angles t * 10000^(-i/half) in float64; float32 angles are off by ~3e-5 at t ~ 1000."""
    from contextforcing.model.embeddings import sinusoidal_embedding

    t = torch.tensor([0.0, 1.0, 250.0, 937.5, 999.0, 1000.0])
    half = 16
    angles = torch.outer(t.double(), torch.pow(10000, -torch.arange(half).double().div(half)))
    wan = torch.cat([angles.cos(), angles.sin()], dim=1)
    ours = sinusoidal_embedding(t, 2 * half)
    assert ours.dtype == torch.float32
    assert (ours.double() - wan).abs().max() <= 1e-7  # float32 rounding of float64 values only


def test_on_keys_hook_runs_before_the_context_is_read(tiny_model, tiny_config):
    """A context's hook sees the call's own keys and may rewrite the context before attention reads it."""
    x, t, text = _inputs(tiny_config, frames=CHUNK)
    g = torch.Generator().manual_seed(4)
    layout = bidirectional(CHUNK, torch.arange(CHUNK) + CHUNK)
    with torch.no_grad():
        _, own = tiny_model(x, t, text, layout=layout, return_kv=True)
        positions = torch.arange(CHUNK)
        other = LayerContext(torch.randn(own[1][0].shape, generator=g), torch.randn(own[1][0].shape, generator=g),
                             positions)  # fmt: skip
        static = tiny_model(x, t, text, layout=layout, context=[LayerContext(*own[0], positions), other])
        keys, values = torch.zeros_like(own[0][0]), torch.zeros_like(own[0][1])

        def copy_in(k, v):
            keys.copy_(k)
            values.copy_(v)

        hooked = tiny_model(x, t, text, layout=layout,
                            context=[LayerContext(keys, values, positions, on_keys=copy_in), other])  # fmt: skip
        zeros = tiny_model(x, t, text, layout=layout,
                           context=[LayerContext(torch.zeros_like(keys), torch.zeros_like(values), positions), other])  # fmt: skip
    assert_close(hooked, static, atol=TOL)
    assert (zeros - static).abs().max() > 1e-3
