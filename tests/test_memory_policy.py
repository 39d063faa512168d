"""Properties of the pure memory policy and of the RoPE position mapping (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contextforcing.memory import (
    MEMORY_POLICIES,
    MemoryConfig,
    MemoryLayout,
    append_chunk,
    memory_preset,
    promotion_due,
    read_layout,
    rope_positions,
    should_promote,
    slot_sources,
)

BOUNDED = [name for name, cfg in MEMORY_POLICIES.items() if cfg.bounded]


@st.composite
def configs(draw: st.DrawFn) -> MemoryConfig:
    chunk = draw(st.integers(1, 4))
    slow = draw(st.integers(0, 6))
    promotion = draw(st.sampled_from(["surprisal", "uniform"])) if slow else "none"
    return MemoryConfig(
        num_sink_frames=draw(st.integers(0, 5)),
        num_slow_frames=slow,
        num_fast_frames=chunk + draw(st.integers(0, 6)),
        frames_per_chunk=chunk,
        promotion=promotion,
        promotion_interval=draw(st.integers(1, 3)),
        keyframe_interval=draw(st.integers(0, 3)) if promotion == "surprisal" else 0,
        num_promoted_frames=draw(st.integers(1, chunk)),
        positions=draw(st.sampled_from(["bounded", "block-relative"])),
    )


def _run(config: MemoryConfig, similarities: list[float]) -> list[tuple[MemoryLayout, MemoryLayout, bool]]:
    """(before, after, promoted) for every chunk of a rollout with the given similarities."""
    layout, steps = MemoryLayout(), []
    for index, similarity in enumerate(similarities):
        size = config.frames_per_chunk
        promote = should_promote(config, index, similarity)
        new = append_chunk(layout, range(index * size, (index + 1) * size), config, promote=promote)
        steps.append((layout, new, promote))
        layout = new
    return steps


def test_every_frame_stays_visible_until_the_cache_is_full() -> None:
    config = memory_preset("context")
    steps = _run(config, [1.0] * 6)  # no promotion: 18 frames fill the cache exactly
    assert [len(after) for _, after, _ in steps] == [3, 6, 9, 12, 15, 18]
    assert steps[-1][1].slow == tuple(range(3, 15)) and steps[-1][1].fast == (15, 16, 17)
    after = _run(config, [1.0] * 7)[-1][1]
    assert after.slow == tuple(range(3, 15)) and after.fast == (18, 19, 20)  # early frames stay on
    promoted = _run(config, [1.0] * 6 + [0.0])[-1][1]
    assert promoted.slow == (*range(4, 15), 18)  # a promotion replaces the oldest early frame


def test_without_filling_the_slow_tier_holds_promoted_frames_only() -> None:
    config = memory_preset("context", fill_slow=False)
    steps = _run(config, [1.0] * 7)  # no promotion: sink and fast frames alone
    assert all(after.slow == () for _, after, _ in steps) and steps[-1][1].fast == (18, 19, 20)
    promoted = _run(config, [1.0] * 6 + [0.0, 1.0, 0.0])[-1][1]
    assert promoted.slow == (18, 24) and promoted.sink == (0, 1, 2)
    with pytest.raises(ValueError, match="fill_slow"):
        memory_preset("context-released", fill_slow=False)


rollouts = st.tuples(configs(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))


@settings(max_examples=150, deadline=None)
@given(rollouts)
def test_sink_is_never_evicted_and_tiers_respect_capacity(rollout: tuple[MemoryConfig, list[float]]) -> None:
    config, similarities = rollout
    for index, (before, after, _) in enumerate(_run(config, similarities)):
        generated = (index + 1) * config.frames_per_chunk
        assert after.sink == tuple(range(min(config.num_sink_frames, generated)))
        assert after.sink[: len(before.sink)] == before.sink
        assert len(after.sink) <= config.num_sink_frames
        assert len(after.slow) <= config.num_slow_frames
        assert len(after.fast) <= config.num_past_fast_frames
        assert len(after) <= config.context_capacity()


@settings(max_examples=150, deadline=None)
@given(rollouts)
def test_fast_tier_is_fifo_and_promotion_only_below_tau_or_on_keyframes(
    rollout: tuple[MemoryConfig, list[float]],
) -> None:
    config, similarities = rollout
    for index, (before, after, promoted) in enumerate(_run(config, similarities)):
        # FIFO: the fast tier is always the newest non-sink frames, oldest first.
        newest = tuple(f for f in range((index + 1) * config.frames_per_chunk) if f not in after.sink)
        keep = config.num_past_fast_frames
        assert after.fast == (newest[-keep:] if keep else ())
        if config.promotion == "surprisal" and promoted:
            keyframe = config.keyframe_interval and index % config.keyframe_interval == 0
            assert keyframe or similarities[index] < config.similarity_threshold
        if promoted:
            assert promotion_due(config, index)
        gained = set(after.slow) - set(before.slow)
        chunk_start = index * config.frames_per_chunk
        if config.num_past_fast_frames >= config.frames_per_chunk:  # else the chunk cannot stay in fast
            assert promoted == any(
                f >= chunk_start for f in gained
            )  # new frames reach slow only by promotion
        assert all(f in before.fast for f in gained if f < chunk_start)  # older ones only from the fast tier
        assert after.slow == tuple(sorted(after.slow))  # evicts the oldest


@settings(max_examples=150, deadline=None)
@given(rollouts)
def test_bounded_positions_stay_inside_the_cache(rollout: tuple[MemoryConfig, list[float]]) -> None:
    config, similarities = rollout
    limit = config.num_cache_frames
    for index, (before, _, _) in enumerate(_run(config, similarities)):
        positions = rope_positions(before, config, index * config.frames_per_chunk)
        assert all(0 <= p < limit for p in positions.context + positions.query)
        assert positions.query == tuple(
            range(positions.query[0], positions.query[0] + config.frames_per_chunk)
        )
        sink, slow = len(before.sink), len(before.slow)
        tiers = [positions.context[sink : sink + slow], positions.context[sink + slow :]]
        if config.positions == "bounded":  # slot ranks: monotone over the whole non-sink context
            tiers = [positions.context[sink:]]
            assert all(p >= sink for p in positions.context[sink:])  # no other key on a sink position
        assert all(list(tier) == sorted(tier) for tier in tiers)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=120))
def test_context_preset_positions_lie_in_0_20(similarities: list[float]) -> None:
    config = memory_preset("context")
    for index, (before, _, _) in enumerate(_run(config, similarities)):
        positions = rope_positions(before, config, index * 3)
        assert all(0 <= p <= 20 for p in positions.context + positions.query)


def test_bounded_positions_match_released_code_once_full() -> None:
    """Eq. 8 as released: sink keys at 0..2, slot j at position j, queries at 18..20 once full."""
    config = memory_preset("context")
    layout = MemoryLayout(sink=(0, 1, 2), slow=tuple(range(6, 42, 3)), fast=(57, 58, 59))
    positions = rope_positions(layout, config, 60)
    assert positions.query == (18, 19, 20)
    assert positions.context[:3] == (0, 1, 2)
    assert positions.context == tuple(range(18))  # slot j sits at position j
    early = rope_positions(MemoryLayout(sink=(0, 1, 2), fast=(3, 4, 5)), config, 6)
    assert early.query == (6, 7, 8) and early.context == (0, 1, 2, 3, 4, 5)  # absolute while filling


def test_no_non_sink_key_sits_on_a_sink_position_before_the_cache_is_full() -> None:
    """A promoted frame is also in the fast tier, so chunk 3 holds 7 non-sink keys for the 6 positions
    3..8 below its queries; the oldest two share position 3 instead of one taking the sink's 2."""
    config = memory_preset("context")
    layout = _run(config, [1.0, 1.0, 0.0])[-1][1]
    assert layout == MemoryLayout(sink=(0, 1, 2), slow=(3, 4, 5, 6), fast=(6, 7, 8))
    positions = rope_positions(layout, config, 9)
    assert positions.query == (9, 10, 11)
    assert positions.context == (0, 1, 2, 3, 3, 4, 5, 6, 7, 8)


def test_block_relative_matches_infinity_rope() -> None:
    config = memory_preset("infinity-rope")
    positions = rope_positions(MemoryLayout(sink=(0,), fast=(31, 32)), config, 33)
    assert positions.query == (3, 4, 5) and positions.context == (0, 1, 2)


def test_surprisal_schedule_every_chunk_or_every_two() -> None:
    released = memory_preset("context")
    paper = memory_preset("context", promotion_interval=2)
    assert [promotion_due(released, i) for i in range(6)] == [False, False, True, True, True, True]
    assert [promotion_due(paper, i) for i in range(6)] == [False, False, True, False, True, False]
    assert not should_promote(released, 3, 0.95) and should_promote(released, 3, 0.9499)


def test_keyframes_promote_on_their_interval_whatever_the_similarity() -> None:
    """Surprisal with `keyframe_interval=3` promotes chunks 3, 6, ... unchanged, and the others below tau;
    the slow tier then holds the keyframes and the frames at the change, oldest evicted first."""
    config = memory_preset("context", keyframe_interval=3, num_slow_frames=3, fill_slow=False)
    similarities = [1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    steps = _run(config, similarities)
    assert [index for index, (_, _, promote) in enumerate(steps) if promote] == [3, 4, 6, 9]
    assert steps[-1][1].slow == (12, 18, 27)
    assert not should_promote(config, 2, 1.0) and not should_promote(config, 5, 1.0)
    assert [promote for _, _, promote in _run(memory_preset("context"), similarities)].count(True) == 1


def test_slot_sources_reorder_old_and_new() -> None:
    old = MemoryLayout(sink=(0, 1, 2), slow=(6,), fast=(6, 7, 8))
    new = MemoryLayout(sink=(0, 1, 2), slow=(6, 9), fast=(9, 10, 11))
    assert slot_sources(old, new, 9) == [0, 1, 2, 3, 7, 7, 8, 9]
    assert slot_sources(old, new, 9, promoted_offset=3) == [0, 1, 2, 3, 10, 7, 8, 9]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_fast_frames": 2}, "num_fast_frames"),
        ({"num_sink_frames": -1}, "num_sink_frames"),
        ({"num_slow_frames": 0}, "promotion"),
        ({"num_promoted_frames": 4}, "num_promoted_frames"),
        ({"num_fast_frames": None}, "positions"),
        ({"layer_thresholds": (0.9, 1.5)}, "layer_thresholds must lie in"),
        ({"layer_thresholds": (0.9,), "per_layer_decisions": False}, "layer_thresholds needs"),
        ({"layer_thresholds": (0.9,), "promotion": "uniform"}, "layer_thresholds needs"),
        ({"layer_thresholds": (0.9,), "bookkeeping": "released"}, "layer_thresholds"),
        ({"keyframe_interval": -1}, "keyframe_interval"),
        ({"keyframe_interval": 3, "promotion": "uniform"}, "keyframe_interval"),
        ({"keyframe_interval": 3, "bookkeeping": "released"}, "keyframe_interval"),
        ({"reencode": True, "bookkeeping": "released"}, "reencode"),
        ({"promotion": "grid"}, "reencode=True"),
        ({"promotion": "grid", "reencode": True, "num_promoted_frames": 2}, "num_promoted_frames"),
        ({"promotion": "grid", "reencode": True, "num_fast_frames": 8}, "whole chunks"),
    ],
)
def test_invalid_configs_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        memory_preset("context", **overrides)


@pytest.mark.parametrize(
    ("field", "word"), [("promotion", "keyframes"), ("positions", "relative"), ("decide_on", "last"),
                        ("bookkeeping", "paper")],
)  # fmt: skip
def test_a_config_built_in_code_refuses_unknown_words(field: str, word: str) -> None:
    with pytest.raises(ValueError, match=f"MemoryConfig.{field} must be one of"):
        MemoryConfig(**{field: word})


@pytest.mark.parametrize(("interval", "fast", "sink"), [(3, 9, 3), (2, 6, 3), (1, 3, 1)])
def test_a_grid_memory_reads_the_frames_a_context_teacher_sees(interval: int, fast: int, sink: int) -> None:
    """Chunk after chunk, `promotion='grid'` gives a chunk the frames `plan.history_indices` gives a context
    teacher before the same target (slow frames one every `interval` chunks, as many recent frames as the
    fast tier keeps), and keeps no more than its capacity."""
    from contextforcing.training.config import ContextTeacherConfig
    from contextforcing.training.plan import history_indices

    config = memory_preset("context", promotion="grid", promotion_interval=interval, num_fast_frames=fast,
                           num_sink_frames=sink, reencode=True)  # fmt: skip
    teacher = ContextTeacherConfig(
        num_sink_frames=sink, slow_interval=3 * interval, num_recent_frames=fast - 3
    )
    layout, reach = MemoryLayout(), 0
    for chunk in range(70):
        read = read_layout(layout, config, 3 * chunk)
        assert list(read.frames) == history_indices(teacher, 3 * chunk), chunk
        assert len(read) <= config.num_cache_frames - 3 and len(layout) <= config.context_capacity()
        reach = max(reach, len(read.slow))
        layout = append_chunk(layout, range(3 * chunk, 3 * chunk + 3), config, promote=False)
    assert reach == config.num_slow_frames  # the grid reaches as far back as the teacher's slow frames
    assert not promotion_due(config, 10)


def test_a_layer_threshold_replaces_tau_in_its_layer_only() -> None:
    config = memory_preset("context", layer_thresholds=(0.9, 0.99))
    assert config.threshold(0) == 0.9 and config.threshold(1) == 0.99 and config.threshold() == 0.95
    assert not should_promote(config, 3, 0.95, layer=0) and should_promote(config, 3, 0.95, layer=1)
    assert not should_promote(config, 3, 0.95)  # shared decisions read similarity_threshold
    assert MemoryConfig.from_dict(config.to_dict()) == config


def test_presets_round_trip_and_unknown_names() -> None:
    for name in MEMORY_POLICIES:
        config = memory_preset(name)
        assert MemoryConfig.from_dict(config.to_dict()) == config
    assert memory_preset("context").num_cache_frames == 21
    assert memory_preset("sink").num_cache_frames == 12
    with pytest.raises(ValueError, match="unknown memory policy"):
        memory_preset("nope")
    assert BOUNDED


def test_the_trace_plot_draws_the_layer_that_promoted_most(tmp_path) -> None:
    """`busiest_layer` picks the layer with the most promoting chunks, `promoted_frames` the frames it
    promoted (not those the slow tier was filled with), and the plot draws that layer by default."""
    from contextforcing.memory import ChunkRecord, LayerRecord, MemoryTrace
    from contextforcing.memory.trace import busiest_layer, plot_trace, promoted_frames

    config = memory_preset("context")
    layers: list[list[LayerRecord]] = [[], []]
    similarities = ([0.90, 0.99, 0.99, 0.99], [0.99, 0.90, 0.99, 0.90])
    decisions = ([True, False, False, False], [False, True, False, True])
    layouts = [MemoryLayout(), MemoryLayout()]
    for chunk in range(4):
        frames = range(chunk * 3, chunk * 3 + 3)
        for index in range(2):
            promote = decisions[index][chunk]
            new = append_chunk(layouts[index], frames, config, promote=promote)
            promoted = (frames[0],) if promote else ()
            layers[index].append(LayerRecord(new, (), similarities[index][chunk], promoted))
            layouts[index] = new
    records = [
        ChunkRecord(
            chunk, tuple(range(chunk * 3, chunk * 3 + 3)), (0, 1, 2), (layers[0][chunk], layers[1][chunk])
        )
        for chunk in range(4)
    ]
    trace = MemoryTrace(config, records)
    assert busiest_layer(trace) == 1
    assert promoted_frames(trace, 1) == {3, 9} and promoted_frames(trace, 0) == {0}
    assert busiest_layer(MemoryTrace(config, [])) == 0
    assert plot_trace(trace, tmp_path / "memory.png").stat().st_size > 0
