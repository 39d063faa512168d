"""The Wan VAE and UMT5 adapters, on tiny random configs built and saved locally."""

import pytest
import torch

from contextforcing.codec.base import Codec, num_latent_frames, num_pixel_frames
from contextforcing.text_encoder import TextEncoder, UMT5TextEncoder

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def wan_vae_folder(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    folder = tmp_path_factory.mktemp("pipeline") / "vae"
    vae.save_pretrained(folder)
    return folder.parent


def test_wan_vae_round_trip_and_streaming_decode(wan_vae_folder):
    from contextforcing.codec.wan_vae import WanVAECodec

    codec = WanVAECodec.from_pretrained(wan_vae_folder)
    assert isinstance(codec, Codec)
    frames = torch.rand(1, 3, 13, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents = codec.encode(frames)
    assert latents.shape == (1, 4, num_latent_frames(codec, 13), 4, 4)
    decoded = codec.decode(latents)
    assert decoded.shape == frames.shape and decoded.abs().max() <= 1
    stream = codec.stream_decoder()
    chunks = [
        stream.decode(latents[:, :, :1]),
        stream.decode(latents[:, :, 1:3]),
        stream.decode(latents[:, :, 3:]),
    ]
    assert [c.shape[2] for c in chunks] == [1, 8, 4]
    assert torch.equal(torch.cat(chunks, dim=2), decoded)
    assert num_pixel_frames(codec, 4) == 13
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        codec.encode(frames[:, :, :12])


def test_wan_vae_missing_folder(tmp_path):
    from contextforcing.codec.wan_vae import WanVAECodec

    with pytest.raises(ValueError, match="no Wan VAE"):
        WanVAECodec.from_pretrained(tmp_path)


def _tiny_tokenizer():
    words = ["<pad>", "</s>", "<unk>", "a", "cat", "dog", "runs", "on", "the", "beach"]
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def test_umt5_pads_with_zeros_like_wan(tmp_path):
    config = transformers.UMT5Config(
        vocab_size=10,
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    torch.manual_seed(0)
    transformers.UMT5EncoderModel(config).save_pretrained(tmp_path / "text_encoder")
    _tiny_tokenizer().save_pretrained(tmp_path / "tokenizer")
    encoder = UMT5TextEncoder.from_pretrained(tmp_path, max_length=12)
    assert isinstance(encoder, TextEncoder)
    features = encoder.encode(["a cat runs", "a dog runs on the beach"])
    assert features.shape == (2, 12, 16)
    # "a cat runs" + </s> is 4 tokens: everything after is exactly zero, the tokens themselves are not.
    assert features[0, 4:].abs().max() == 0 and (features[0, :4].abs().sum(-1) > 0).all()
    assert features[1, 7:].abs().max() == 0 and (features[1, :7].abs().sum(-1) > 0).all()
    # The features of a prompt do not depend on what else is in the batch.
    alone = encoder.encode(["a cat runs"])
    assert torch.allclose(alone[0], features[0], atol=1e-6)
    with pytest.raises(ValueError, match="non-empty list"):
        encoder.encode("a cat")
