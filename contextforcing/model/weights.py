"""Load and save CausalDiT weights in the layouts Wan2.1 models circulate in.

Layouts:
    contextforcing  model.safetensors + config.json {"format": "contextforcing", "model": {...}}
    wan             the original Wan2.1 release: diffusion_pytorch_model*.safetensors + config.json
                    ("WanModel": dim, ffn_dim, num_heads, ...); parameter names equal ours
    diffusers       WanTransformer3DModel.save_pretrained output, or a pipeline folder's transformer/
    self-forcing    .pt checkpoints of the Self-Forcing family: {"generator" | "generator_ema": {...}}
                    with a "model." prefix on the original Wan names

Loading is strict: a file that cannot be read, a missing or unexpected key, a wrong shape or a NaN/Inf
weight raises a ValueError that names the file, the keys and the expected shapes, and the model is never
returned half-loaded. `.pt` files are read with `weights_only=True` only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor

from contextforcing.files import check_finite, read_safetensors, read_torch_file
from contextforcing.model.config import DiTConfig
from contextforcing.model.dit import CausalDiT

__all__ = [
    "Layout",
    "config_from_state_dict",
    "convert",
    "detect_layout",
    "diffusers_config",
    "load_model",
    "read_model_config",
    "read_weights",
    "save_model",
    "to_diffusers_key",
]

Layout = Literal["contextforcing", "wan", "diffusers", "self-forcing"]
_FORMAT = "contextforcing"
_WEIGHTS_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"

# Our (= original Wan) names -> diffusers names, applied in order. The inverse map is built from the
# model's own keys, so both directions agree by construction.
_TO_DIFFUSERS = (
    (r"^time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
    (r"^time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
    (r"^text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
    (r"^text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
    (r"^time_projection\.1\.", "condition_embedder.time_proj."),
    (r"^head\.modulation$", "scale_shift_table"),
    (r"^head\.head\.", "proj_out."),
    (r"\.modulation$", ".scale_shift_table"),
    (r"\.ffn\.0\.", ".ffn.net.0.proj."),
    (r"\.ffn\.2\.", ".ffn.net.2."),
    (r"\.norm3\.", ".norm2."),  # Wan's affine cross-attention norm is diffusers' norm2
    (r"\.self_attn\.", ".attn1."),
    (r"\.cross_attn\.", ".attn2."),
    (r"\.(attn[12])\.([qkv])\.", r".\1.to_\2."),
    (r"\.(attn[12])\.o\.", r".\1.to_out.0."),
)
# Wrappers that training frameworks put around parameter names.
_WRAPPER_PREFIXES = (
    "model.",
    "_fsdp_wrapped_module.",
    "_checkpoint_wrapped_module.",
    "_orig_mod.",
    "module.",
)


def diffusers_config(config: DiTConfig) -> dict[str, Any]:
    """`WanTransformer3DModel(**diffusers_config(config))` builds diffusers' twin of a CausalDiT."""
    return {
        "patch_size": config.patch_size, "num_attention_heads": config.num_heads,
        "attention_head_dim": config.head_dim, "in_channels": config.in_channels,
        "out_channels": config.out_channels, "text_dim": config.text_dim, "freq_dim": config.freq_dim,
        "ffn_dim": config.ffn_dim, "num_layers": config.num_layers, "eps": config.eps,
    }  # fmt: skip


def to_diffusers_key(key: str) -> str:
    for pattern, replacement in _TO_DIFFUSERS:
        key = re.sub(pattern, replacement, key)
    return key


def detect_layout(path: str | Path) -> Layout:
    """Which layout `path` holds; raises ValueError naming what was found for an unknown one."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    if path.is_file() and path.suffix in (".pt", ".pth"):
        return "self-forcing"
    folder = path.parent if path.is_file() else path
    if (folder / "transformer").is_dir() and not (folder / _CONFIG_FILE).exists():
        return "diffusers"
    config = _read_json(folder / _CONFIG_FILE)
    if config.get("format") == _FORMAT:
        return "contextforcing"
    if config.get("_class_name") == "WanTransformer3DModel":
        return "diffusers"
    if config.get("_class_name") == "WanModel" or "num_heads" in config:
        return "wan"
    found = sorted(p.name for p in folder.iterdir())[:20]
    raise ValueError(
        f"unknown checkpoint layout at {path}: expected a contextforcing, Wan2.1, diffusers or Self-Forcing "
        f"checkpoint (config.json with 'format', '_class_name' or 'num_heads', or a .pt file); found {found}"
    )


def read_weights(path: str | Path, layout: Layout, *, ema: bool | None = None) -> dict[str, Tensor]:
    """The state dict at `path`, renamed to our keys (not yet checked against a model)."""
    path = Path(path)
    if layout == "self-forcing":
        return _read_self_forcing(path, ema)
    folder = path.parent if path.is_file() else path
    if layout == "diffusers" and (folder / "transformer").is_dir() and not (folder / _CONFIG_FILE).exists():
        folder = folder / "transformer"
    files = [path] if path.is_file() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"no .safetensors files in {folder}")
    state: dict[str, Tensor] = {}
    for file in files:
        state.update(read_safetensors(file))
    return _from_diffusers(state) if layout == "diffusers" else state


def _read_self_forcing(path: Path, ema: bool | None) -> dict[str, Tensor]:
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{path} does not hold a dict of state dicts (it holds a {type(checkpoint).__name__})"
        )
    names = ["generator_ema"] if ema else ["generator"] if ema is False else ["generator_ema", "generator"]
    for name in names:
        if name in checkpoint:
            state = checkpoint[name]
            if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
                raise ValueError(f"{path}: entry {name!r} is not a state dict of tensors")
            return {_strip_wrappers(str(k)): v for k, v in state.items()}
    raise ValueError(
        f"{path} has no {' or '.join(repr(n) for n in names)} entry; its keys are {sorted(checkpoint)}"
    )


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key.replace("._fsdp_wrapped_module", "").replace("._checkpoint_wrapped_module", "")


def _from_diffusers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a diffusers state dict to our keys; keys with no counterpart are kept so they are reported."""
    num_layers = 1 + max(
        (int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1
    )
    ours = _our_key_names(num_layers)
    inverse = {to_diffusers_key(key): key for key in ours}
    return {inverse.get(key, key): value for key, value in state.items()}


def _our_key_names(num_layers: int) -> list[str]:
    with torch.device("meta"):  # names only: a 1-layer model without storage
        one = CausalDiT(DiTConfig(num_layers=1, dim=12, ffn_dim=12, num_heads=1, text_dim=4, freq_dim=4))
    names = []
    for key in one.state_dict():
        if key.startswith("blocks.0."):
            names += [key.replace("blocks.0.", f"blocks.{i}.", 1) for i in range(num_layers)]
        else:
            names.append(key)
    return names


def config_from_state_dict(
    state: dict[str, Tensor], *, head_dim: int = 128, text_len: int = 512
) -> DiTConfig:
    """Infer a DiTConfig from weight shapes. Head count is not in the shapes: Wan uses head dim 128."""
    missing = [k for k in ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
                           "head.head.weight", "blocks.0.ffn.0.weight") if k not in state]  # fmt: skip
    if missing:
        raise ValueError(f"cannot infer the model shape: missing keys {missing}")
    patch = state["patch_embedding.weight"]
    dim, in_channels, *patch_size = patch.shape
    if dim % head_dim:
        raise ValueError(f"width {dim} is not a multiple of head dim {head_dim}; pass the config explicitly")
    num_layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    return DiTConfig(
        in_channels=in_channels,
        out_channels=state["head.head.weight"].shape[0] // (patch_size[0] * patch_size[1] * patch_size[2]),
        dim=dim,
        ffn_dim=state["blocks.0.ffn.0.weight"].shape[0],
        num_heads=dim // head_dim,
        num_layers=num_layers,
        freq_dim=state["time_embedding.0.weight"].shape[1],
        text_dim=state["text_embedding.0.weight"].shape[1],
        text_len=text_len,
        patch_size=tuple(patch_size),
    )


def _config_from_file(path: Path, layout: Layout) -> DiTConfig | None:
    folder = path.parent if path.is_file() else path
    if layout == "diffusers" and (folder / "transformer").is_dir() and not (folder / _CONFIG_FILE).exists():
        folder = folder / "transformer"
    raw = _read_json(folder / _CONFIG_FILE)
    if not raw:
        return None
    if layout == "contextforcing":
        if not isinstance(raw.get("model"), dict):
            raise ValueError(f"{folder / _CONFIG_FILE} has no 'model' section describing the model shape")
        try:
            return DiTConfig.from_dict(raw["model"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{folder / _CONFIG_FILE}: bad 'model' section: {error}") from None
    if layout == "diffusers":
        return _config_from_diffusers(raw)
    return _config_from_wan(raw)


def _config_from_diffusers(raw: dict[str, Any]) -> DiTConfig:
    if raw.get("image_dim") or raw.get("added_kv_proj_dim"):
        raise ValueError("image-conditioned Wan models (image_dim / added_kv_proj_dim) are not supported")
    if raw.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads" or not raw.get(
        "cross_attn_norm", True
    ):
        raise ValueError("only qk_norm='rms_norm_across_heads' with cross_attn_norm=True is supported")
    heads, head_dim = raw.get("num_attention_heads", 40), raw.get("attention_head_dim", 128)
    return DiTConfig(
        in_channels=raw.get("in_channels", 16),
        out_channels=raw.get("out_channels") or raw.get("in_channels", 16),
        dim=heads * head_dim,
        ffn_dim=raw.get("ffn_dim", 13824),
        num_heads=heads,
        num_layers=raw.get("num_layers", 40),
        freq_dim=raw.get("freq_dim", 256),
        text_dim=raw.get("text_dim", 4096),
        patch_size=tuple(raw.get("patch_size", (1, 2, 2))),
        eps=raw.get("eps", 1e-6),
    )


def _config_from_wan(raw: dict[str, Any]) -> DiTConfig:
    if raw.get("model_type", "t2v") != "t2v":
        raise ValueError(
            f"only Wan2.1 text-to-video models are supported, got model_type={raw['model_type']!r}"
        )
    return DiTConfig(
        in_channels=raw.get("in_dim", 16),
        out_channels=raw.get("out_dim", 16),
        dim=raw["dim"],
        ffn_dim=raw["ffn_dim"],
        num_heads=raw["num_heads"],
        num_layers=raw["num_layers"],
        freq_dim=raw.get("freq_dim", 256),
        text_dim=raw.get("text_dim", 4096),
        text_len=raw.get("text_len", 512),
        patch_size=tuple(raw.get("patch_size", (1, 2, 2))),
        eps=raw.get("eps", 1e-6),
    )


def read_model_config(path: str | Path) -> DiTConfig:
    """The model shape a checkpoint's config.json describes (any layout), without reading weights."""
    path = Path(path)
    config = _config_from_file(path, detect_layout(path))
    if config is None:
        raise ValueError(f"no config.json describing a model at {path}")
    return config


def load_model(
    path: str | Path,
    *,
    config: DiTConfig | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    ema: bool | None = None,
) -> CausalDiT:
    """Build a CausalDiT from a checkpoint in any supported layout (see the module docstring).

    Args:
        path: a file or folder.
        config: the model shape; read from the checkpoint's config.json, or inferred from shapes.
        dtype, device: where the weights end up.
        ema: for Self-Forcing checkpoints, read `generator_ema` (True), `generator` (False), or the EMA
            weights when present (None).
    """
    path = Path(path)
    layout = detect_layout(path)
    state = read_weights(path, layout, ema=ema)
    config = config or _config_from_file(path, layout) or config_from_state_dict(state)
    with torch.device("meta"):
        model = CausalDiT(config)
    try:
        check_state_dict(model, state)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    check_finite(state, path)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.to(device)


def check_state_dict(model: CausalDiT, state: dict[str, Tensor]) -> None:
    """Raise a ValueError naming every missing, unexpected or wrongly shaped key."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model expects {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if wrong:
        problems.append(f"wrong shapes ({len(wrong)}): {_listing(wrong)}")
    if problems:
        raise ValueError("checkpoint does not fit the model: " + "; ".join(problems))


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def save_model(
    model: CausalDiT,
    folder: str | Path,
    *,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write folder/model.safetensors and folder/config.json atomically; returns the folder.

    `dtype` stores the weights in that precision (float16 halves a float32 model's file); `load_model`
    casts them back to the dtype it is asked for.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / (_WEIGHTS_FILE + ".tmp")
    save_file(state, tmp)
    tmp.replace(folder / _WEIGHTS_FILE)
    meta = {"format": _FORMAT, "model": model.config.to_dict(), **(extra or {})}
    tmp_config = folder / (_CONFIG_FILE + ".tmp")
    tmp_config.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp_config.replace(folder / _CONFIG_FILE)
    return folder


def convert(
    source: str | Path,
    destination: str | Path,
    *,
    config: DiTConfig | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Read a checkpoint in any layout and write it in ours (in `dtype` when given, see `save_model`);
    a source in ours keeps its record (the stage and step a training run exported it at). Returns the
    destination folder."""
    source = Path(source)
    model = load_model(source, config=config)
    layout = detect_layout(source)
    record = _read_json(source / _CONFIG_FILE) if layout == _FORMAT else {}
    kept = {key: value for key, value in record.items() if key not in ("format", "model", "converted_from")}
    extra = {**kept, "converted_from": {"path": str(source), "layout": layout}}
    return save_model(model, destination, extra=extra, dtype=dtype)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a JSON object: expected a model config")
    return record
