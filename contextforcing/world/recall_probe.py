"""Does a model recall? Identity recall against gap, continuing a true history.

For each gap G, world episodes are drawn in which the subject leaves and comes back after exactly G
frames, at frame r (a chunk boundary; the door lights up at r - 1). A model continues the true history
[0, r) for `num_target_frames` frames:

- a teacher gets the history laid out as it was trained (sink, sparse slow frames, recent frames; or a
  plain window) and samples the target with an Euler ODE and guidance;
- a student streams it: the history is written into its memory as a prefix, chunk by chunk, and its
  memory policy decides what it keeps; then it generates with its few-step sampler.

The decoded return is read with the world's recall decoder and compared with the true identity. With
8 identities, chance is 1/8. In the second world (`WorldConfig.version` 2) the returning subject is one
of a cast, and each gap is probed twice: with its last sighting in the first 10 s ("early") and after
them ("late", where it changed at the gate on its last visit, so its first entrance shows another
identity); a memory that keeps only the first frames fails the late half. This is the learnability check of the miniature reproduction and the
recall column of its comparison table.

Shape legend: B batch (1 here), C latent channels, F frames, H x W latent size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.diffusion.sampling import EulerConfig
from contextforcing.inference.streaming import SamplerConfig, StreamingGenerator
from contextforcing.inference.teacher import sample_after_context
from contextforcing.memory.config import MemoryConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.runtime import step_generator
from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.plan import history_indices
from contextforcing.training.rollout import self_rollout
from contextforcing.world.cast import sample_return_episode
from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall import recall_events
from contextforcing.world.render import render_episode
from contextforcing.world.timeline import frames_showing
from contextforcing.world.types import Episode, WorldConfig

__all__ = [
    "Continuer",
    "Keeper",
    "ProbeConfig",
    "Sampler",
    "kept_of_history",
    "layout_keeper",
    "memory_keeper",
    "memory_teacher_sampler",
    "probe_recall",
    "student_continuer",
    "student_sampler",
    "teacher_context",
    "teacher_sampler",
    "wilson_interval",
]

Sampler = Callable[[Tensor, str, torch.Generator], Tensor]
"""(history latents [1, C, r, H, W], prompt, generator) -> continuation latents [1, C, F, H, W]."""
Keeper = Callable[[Tensor, str], tuple[int, ...]]
"""(history latents [1, C, r, H, W], prompt) -> the ids of the history frames a context keeps at its end
(a student's memory, or a teacher's layout)."""
Continuer = Callable[[Tensor, str, int, torch.Generator], Tensor]
"""(prefix latents [1, C, P, H, W], prompt, frames to add, generator) -> the added latents [1, C, F, H, W];
P may be 0 (from the prompt alone)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeConfig:
    """What the probe measures and how a teacher samples."""

    gaps_seconds: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 18.0, 24.0)
    """Gaps between the subject's two visits."""
    episodes_per_gap: int = 24
    """Returns measured per gap."""
    num_target_frames: int = 21
    """Frames generated after the history."""
    teacher: EulerConfig = field(default_factory=EulerConfig)
    """How a teacher samples: Euler steps, shift and CFG scale (the context is kept in both branches)."""
    seed: int = 0
    """Seed of the episodes and the noise."""


def teacher_sampler(
    model: CausalDiT, layout: ContextTeacherConfig, text_encoder, probe: ProbeConfig
) -> Sampler:
    """A bidirectional teacher continuing its training layout of the history (Euler ODE with CFG)."""
    uncond = text_encoder.encode([""])

    def sample(history: Tensor, prompt: str, generator: torch.Generator) -> Tensor:
        context = teacher_context(layout, history)
        noise = torch.randn(
            (1, history.shape[1], probe.num_target_frames, *history.shape[3:]), generator=generator
        )
        text = text_encoder.encode([prompt])
        return sample_after_context(
            model, noise, text, uncond, probe.teacher, context, layout.context_timestep
        )

    return sample


def memory_teacher_sampler(
    model: CausalDiT,
    layout: ContextTeacherConfig,
    student: CausalDiT,
    memory: MemoryConfig,
    text_encoder,
    probe: ProbeConfig,
) -> Sampler:
    """A teacher continuing what a student's memory keeps of the history: the context Contextual DMD
    gives its teacher with `distill.teacher_context="memory"` (the student's sink, slow and fast frames,
    kept by the same rollout the trainer runs)."""
    uncond = text_encoder.encode([""])

    def sample(history: Tensor, prompt: str, generator: torch.Generator) -> Tensor:
        text = text_encoder.encode([prompt])
        _, context = kept_of_history(student, memory, history, text)
        noise = torch.randn(
            (1, history.shape[1], probe.num_target_frames, *history.shape[3:]), generator=generator
        )
        return sample_after_context(
            model, noise, text, uncond, probe.teacher, context, layout.context_timestep
        )

    return sample


def kept_of_history(
    student: CausalDiT, memory: MemoryConfig, history: Tensor, text: Tensor
) -> tuple[tuple[int, ...], Tensor]:
    """What a student's memory keeps of a history [1, C, r, H, W] (whole chunks) when it starts the next
    chunk: the frame ids, in order, and their clean latents [1, C, U, H, W]."""
    chunks = history.shape[2] // memory.frames_per_chunk
    rollout = self_rollout(
        student, memory, student.encode_text(text), torch.zeros_like(history), timesteps=torch.zeros(1),
        generator=torch.Generator(), exit_steps=[1] * chunks, grad_chunks=[False] * chunks, prefix=history,
    )  # fmt: skip
    return rollout.memory.kept_frames()


def teacher_context(layout: ContextTeacherConfig, history: Tensor) -> Tensor | None:
    """The history [1, C, r, H, W] laid out as the teacher was trained (`plan.history_indices`: a history
    too short for the layout is given whole), and an empty one not at all (the teacher's training steps
    without context)."""
    if history.shape[2] == 0:
        return None
    return history[:, :, history_indices(layout, history.shape[2])]


def student_continuer(
    model: CausalDiT, memory: MemoryConfig, text_encoder, sampler: SamplerConfig | None = None
) -> Continuer:
    """A causal student streaming on from a prefix, which it keeps as its memory policy says.

    The prefix enters the memory through clean refresh passes, so with `decide_on="first-pass"` its
    promotions are decided on clean keys, unlike on the student's own rollouts.
    """

    def go_on(prefix: Tensor, prompt: str, num_frames: int, generator: torch.Generator) -> Tensor:
        streamer = StreamingGenerator(model, memory, latent_size=tuple(prefix.shape[3:]), sampler=sampler)
        num_chunks = -(-num_frames // memory.frames_per_chunk)
        chunks = streamer.stream(text_encoder.encode([prompt]), num_chunks=num_chunks, generator=generator,
                                 prefix=prefix if prefix.shape[2] else None)  # fmt: skip
        return torch.cat(list(chunks), dim=2)[:, :, :num_frames]

    return go_on


def layout_keeper(layout: ContextTeacherConfig) -> Keeper:
    """The frames a teacher's training layout keeps of a history (`teacher_context`)."""
    return lambda history, prompt: tuple(history_indices(layout, history.shape[2]))


def memory_keeper(student: CausalDiT, memory: MemoryConfig, text_encoder) -> Keeper:
    """The frames a student's memory keeps of a history (`kept_of_history`)."""
    return lambda history, prompt: kept_of_history(student, memory, history, text_encoder.encode([prompt]))[0]


def student_sampler(
    model: CausalDiT,
    memory: MemoryConfig,
    text_encoder,
    probe: ProbeConfig,
    sampler: SamplerConfig | None = None,
) -> Sampler:
    """A causal student streaming `probe.num_target_frames` frames on from the history."""
    go_on = student_continuer(model, memory, text_encoder, sampler)
    return lambda history, prompt, generator: go_on(history, prompt, probe.num_target_frames, generator)


def _episode_with_gap(
    gap: int, generator: torch.Generator, world: WorldConfig, target: int, answer: str
) -> tuple[Episode, int]:
    """An episode in which a subject comes back after exactly `gap` hidden frames, cut `target` frames
    later; in version 2 its last sighting lies in the first 10 s ("early") or after ("late")."""
    if world.version == 2:
        return sample_return_episode(gap, answer, generator, world, target_frames=target)
    episode = sample_episode(4 * (gap + 60), generator, world, gap_frames=gap)
    start = episode.visits[1].enter_frame
    return replace(episode, num_frames=start + target), start


def wilson_interval(successes: int, count: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (z = 1.96); (0, 1) without trials."""
    if count == 0:
        return 0.0, 1.0
    p = successes / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return max(0.0, centre - half), min(1.0, centre + half)


def _answers(world: WorldConfig) -> tuple[str, ...]:
    return ("early", "late") if world.version == 2 else ("any",)


@torch.no_grad()
def probe_recall(
    sampler: Sampler, codec: Codec, world: WorldConfig, probe: ProbeConfig, keeper: Keeper | None = None
) -> list[dict]:
    """Recall of the returning identity per gap (and, in version 2, per place of the answer):
    [{gap_seconds, answer, count, recall, interval, colour_recall, drawn, stale}]. A return counts only
    where a subject is drawn (`drawn`: the share of returns where one is); `interval` is recall's 95 %
    Wilson interval; `stale` the share that show the subject's first identity after it has changed.

    With a `keeper` (the frames a memory keeps of the history), also what the memory holds at the return,
    from the ground truth: `answer_kept`, the share of returns where it keeps a frame that shows the subject
    as it left, and `first_kept`, where it keeps one that shows a first identity the subject has changed
    (`answer_frames_kept` and `first_frames_kept`: the mean number of such frames it keeps); and its
    shape: `kept_frames`, the mean number of frames it keeps, and `kept_from_start`, the mean number of
    the history's first frames it keeps without a gap (the sink, and the first frames no promotion has
    replaced).

    Episode i of gap j comes from its own generator seeded by (seed, j, i), and the sampler's noise
    from another, so every model is judged on exactly the same episodes.
    """
    results = []
    for j, gap_seconds in enumerate(probe.gaps_seconds):
        for answer in _answers(world):
            events = _gap_events(sampler, codec, world, probe, j, answer, keeper)
            results.append(_gap_result(events, world, gap_seconds, answer))
    return results


def _gap_events(
    sampler: Sampler, codec: Codec, world: WorldConfig, probe: ProbeConfig, j: int, answer: str,
    keeper: Keeper | None,
) -> list[dict]:  # fmt: skip
    gap = round(probe.gaps_seconds[j] * world.fps)
    where = f"probe/gap{j}" if answer == "any" else f"probe/gap{j}/{answer}"
    events = []
    for i in range(probe.episodes_per_gap):
        episodes = step_generator(probe.seed, i, f"{where}/episode")
        noise = step_generator(probe.seed, i, f"{where}/noise")
        episode, start = _episode_with_gap(gap, episodes, world, probe.num_target_frames, answer)
        events += _judge(sampler, codec, world, episode, start, noise, keeper)
    return events


def _gap_result(events: list[dict], world: WorldConfig, gap_seconds: float, answer: str) -> dict:
    identities, count = world.identities, len(events)
    recalled = sum(e["matches_truth"] for e in events)
    colours = sum(e["drawn"] and identities[e["decoded"]].colour == identities[e["truth"]].colour
                  for e in events)  # fmt: skip
    result = {
        "gap_seconds": gap_seconds, "answer": answer, "count": count, "recall": recalled / count,
        "interval": list(wilson_interval(recalled, count)), "colour_recall": colours / count,
        "drawn": sum(e["drawn"] for e in events) / count, "stale": sum(e["stale"] for e in events) / count,
    }  # fmt: skip
    if events and "answer_kept" in events[0]:
        for key in ("answer_kept", "first_kept", "answer_frames_kept", "first_frames_kept", "kept_frames",
                    "kept_from_start"):  # fmt: skip
            result[key] = sum(e[key] for e in events) / count
    return result


def _judge(sampler: Sampler, codec: Codec, world: WorldConfig, episode: Episode, start: int,
           generator: torch.Generator, keeper: Keeper | None) -> list[dict]:  # fmt: skip
    """Continue the true history from `start` and read the returning identity."""
    frames = render_episode(episode, world)  # [3, T, H, W]
    history = codec.encode(frames[None, :, :start])
    generated = codec.decode(sampler(history, episode.prompt, generator))[0]
    video = torch.cat([frames[:, :start], generated], dim=1)
    pixels = ((video.clamp(-1, 1) + 1) * 127.5).permute(1, 0, 2, 3)  # [T, 3, H, W] in [0, 255]
    events = [e for e in recall_events(pixels, episode, world) if e["frame"] == start]
    if keeper is not None:
        kept = set(keeper(history, episode.prompt))
        from_start = next(f for f in range(len(kept) + 1) if f not in kept)
        for e in events:
            e["kept_frames"], e["kept_from_start"] = len(kept), from_start
            answer = kept & frames_showing(episode, e["subject"], e["truth"], start)
            changed = e["first_identity"] != e["truth"]
            first = (
                kept & frames_showing(episode, e["subject"], e["first_identity"], start) if changed else set()
            )
            e["answer_kept"], e["first_kept"] = bool(answer), bool(first)
            e["answer_frames_kept"], e["first_frames_kept"] = len(answer), len(first)
    return events
