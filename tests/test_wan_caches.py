"""Prompt and latent caches: encoded once, resumed after an interruption, read back exactly."""

import json

import pytest
import torch

from contextforcing.cli import main
from contextforcing.config import override
from contextforcing.presets import preset
from contextforcing.text_encoder import WAN_NEGATIVE_PROMPT
from contextforcing.training.caches import LatentCache, PromptCache, find_cache
from contextforcing.training.data import CachedSource, cache_source

from wan_folder import TINY_OVERRIDES, write_clips

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("clips") / "videos")


def _source(data_updates, stage="wan-dmd"):
    config = override(preset(stage), {**TINY_OVERRIDES, **data_updates})
    return config, CachedSource(config.data, 512, torch.device("cpu"))


def test_prompt_cache_holds_the_umt5_features_and_resumes(tiny_wan, tmp_path, caplog):
    from contextforcing.text_encoder import UMT5TextEncoder

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat runs\n\n  \na dog runs on the beach\na red ball\n")
    argv = [
        "encode-prompts",
        str(prompts),
        "--wan",
        str(tiny_wan),
        "--dtype",
        "float32",
        "--shard-size",
        "2",
    ]
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert "skipped line 2: empty line" in caplog.text and "skipped line 3: empty line" in caplog.text
    cache = find_cache(prompts, "prompt")
    assert cache == tmp_path / "prompts.txt.cache"
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["num_prompts"] == 3 and [s["count"] for s in manifest["shards"]] == [2, 1]
    encoder = UMT5TextEncoder.from_pretrained(tiny_wan)
    _, source = _source({"data.prompt_cache": str(cache)})
    batch = source.sample_prompts([torch.Generator().manual_seed(s) for s in range(6)])
    assert set(batch.prompts) <= {"a cat runs", "a dog runs on the beach", "a red ball"}
    assert torch.equal(batch.text, encoder.encode(list(batch.prompts)))
    assert torch.equal(source.unconditional(2), encoder.encode(["", ""]))
    # Guidance runs against Wan's negative prompt, stored beside the prompts; a run that asks for another
    # is refused.
    assert PromptCache(cache).negative_prompt == WAN_NEGATIVE_PROMPT
    assert torch.equal(source.negative(2), encoder.encode([WAN_NEGATIVE_PROMPT] * 2))
    assert not torch.equal(source.negative(1), source.unconditional(1))
    with pytest.raises(ValueError, match="negative prompt"):
        _source({"data.prompt_cache": str(cache), "data.negative_prompt": ""})
    # Stored trimmed: "a cat runs" + </s> is 4 tokens, not 512.
    assert PromptCache(cache).features(0).shape == (4, 16)
    # An interrupted run (last shard and manifest missing) finishes without redoing the first shard.
    first = (cache / "features-00000.safetensors").stat().st_mtime_ns
    (cache / "features-00001.safetensors").unlink()
    (cache / "manifest.json").unlink()
    with pytest.raises(ValueError, match="interrupted run"):
        PromptCache(cache)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert "1 prompts encoded now, 2 from an earlier run" in caplog.text
    assert (cache / "features-00000.safetensors").stat().st_mtime_ns == first
    assert torch.equal(PromptCache(cache).features(2), encoder.encode(["a red ball"])[0, :4])
    # A cache is never extended with another prompt file.
    prompts.write_text("a cat runs\n")
    assert main(argv) == 2


def test_latent_cache_clips_follow_the_first_frame_convention(tiny_wan, clips, tmp_path, caplog):
    from contextforcing.codec.wan_vae import WanVAECodec
    from contextforcing.training.caches import _prepare
    from contextforcing.video_io import read_video

    out = tmp_path / "latents"
    argv = ["encode-videos", str(clips), "--wan", str(tiny_wan), "--out", str(out), "--clip-frames", "7",
            "--stride", "48", "--height", "32", "--width", "32", "--dtype", "float32",
            "--videos-per-shard", "2"]  # fmt: skip
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert "skipped" in caplog.text and "nocaption.mp4: no caption nocaption.txt" in caplog.text
    assert "short.mp4: too short: 20 frames at 16 fps, a clip of 7 latents needs 25" in caplog.text
    cache = LatentCache(out)
    # 109 frames: clips start at 0, 48 (and 96 does not fit 25 frames): 2 clips for each of 3 videos.
    assert len(cache) == 6 and cache.clip_frames == 7 and cache.latent_size == (4, 4)
    codec = WanVAECodec.from_pretrained(tiny_wan)
    frames, fps = read_video(clips / "b.mp4")
    pixels = _prepare(frames, fps, 16.0, (32, 32))
    index = next(
        i for i in range(len(cache)) if cache.prompts.prompt(cache.caption(i)) == "a dog runs on the beach"
    )
    expected = codec.encode(pixels[None, :, 0:25])[0]
    assert torch.allclose(cache.clip(index), expected, atol=1e-5)
    # The VAE is causal: the first 3 latents of a clip are the encoding of its first 9 frames alone.
    alone = codec.encode(pixels[None, :, 0:9])[0]
    assert torch.allclose(cache.clip(index, 3), alone, atol=1e-4)
    _, source = _source({"data.latent_cache": str(out)}, stage="wan-context-teacher")
    batch = source.sample(5, [torch.Generator().manual_seed(s) for s in range(3)])
    assert batch.latents.shape == (3, 4, 5, 4, 4) and batch.text.shape == (3, 512, 16)
    with pytest.raises(ValueError, match="--clip-frames 8"):
        source.sample(8, [torch.Generator()])
    # A second run finds everything done.
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert "0 clips encoded now, 6 from an earlier run, 2 videos skipped" in caplog.text


def test_jsonl_manifest_and_what_is_skipped(tiny_wan, clips, tmp_path, caplog):
    manifest = tmp_path / "clips.jsonl"
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    lines = [{"video": str(clips / "a.mp4"), "caption": "a cat runs"}, {"video": "broken.mp4", "caption": "a dog"},
             {"video": "missing.mp4", "caption": ""}]  # fmt: skip
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    argv = ["encode-videos", str(manifest), "--wan", str(tiny_wan), "--clip-frames", "4", "--height", "32",
            "--width", "32", "--max-clips-per-video", "1"]  # fmt: skip
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert "broken.mp4: unreadable: cannot read video" in caplog.text
    assert "missing.mp4: empty caption" in caplog.text and "line 4: not a {'video', 'caption'}" in caplog.text
    cache = LatentCache(find_cache(manifest, "latent"))
    assert len(cache) == 1 and cache.prompts.prompt(cache.caption(0)) == "a cat runs"


def test_cache_source_is_checked_up_front(tiny_wan, tmp_path):
    with pytest.raises(ValueError, match=r"no prompt cache for .*encode-prompts"):
        (tmp_path / "p.txt").write_text("a cat\n")
        find_cache(tmp_path / "p.txt", "prompt")
    config = override(preset("wan-context-teacher"), TINY_OVERRIDES)
    with pytest.raises(ValueError, match=r"needs data\.prompt_cache"):
        cache_source(config, torch.device("cpu"))
