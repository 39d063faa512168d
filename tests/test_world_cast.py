"""The second world: a cast of subjects with their own doorways, identities changed at a gate."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from contextforcing.config import from_dict
from contextforcing.world.cast import centre_column, sample_return_episode
from contextforcing.world.episodes import episode_from_metadata, episode_metadata, sample_episode
from contextforcing.world.render import (
    background_frame,
    charge_levels,
    gate_frames,
    gate_mask,
    render_episode_uint8,
    subject_boxes,
    subject_identities,
)
from contextforcing.world.shipped import shipped
from contextforcing.world.timeline import EARLY_SECONDS, novel_frames, returns, visit_identities
from contextforcing.world.types import WorldConfig, world_version

WORLD = world_version(2)
EARLY = round(EARLY_SECONDS * WORLD.fps)


def _episode(seed: int, num_frames: int = 240):
    return sample_episode(num_frames, torch.Generator().manual_seed(seed), WORLD)


def _frames(episode):
    return render_episode_uint8(episode, WORLD).permute(0, 3, 1, 2).float()


def test_same_seed_same_episode():
    assert _episode(3) == _episode(3)
    assert torch.equal(render_episode_uint8(_episode(3), WORLD), render_episode_uint8(_episode(3), WORLD))
    assert _episode(3) != _episode(4)


def test_a_cast_of_two_or_three_with_their_own_doorways_one_in_view_at_a_time():
    counts = set()
    for seed in range(20):
        episode = _episode(seed)
        counts.add(episode.num_subjects)
        assert len(set(episode.doorways)) == episode.num_subjects
        for visit in episode.visits:
            assert (visit.door_in, visit.y_in) == episode.doorways[visit.subject]
            assert visit.door_out == visit.door_in and visit.y_out == visit.y_in
        for before, after in zip(episode.visits, episode.visits[1:], strict=False):
            assert after.enter_frame - before.exit_frame >= WORLD.min_gap_frames
    assert counts == {2, 3}


def test_nothing_in_the_sink_entries_on_chunks_and_a_cue_before_each():
    for seed in range(10):
        episode = _episode(seed)
        frames, background = _frames(episode), background_frame(episode, WORLD)
        assert all(box is None for box in subject_boxes(episode, WORLD)[: WORLD.num_sink_frames])
        for visit in episode.visits:
            if visit.enter_frame >= episode.num_frames:
                continue
            assert visit.enter_frame % WORLD.chunk_frames == 0 and visit.enter_frame >= WORLD.num_sink_frames
            x0 = 0 if visit.door_in == "left" else WORLD.width - WORLD.door_width
            rows = slice(visit.y_in, visit.y_in + WORLD.sprite_size)
            cue, plain = frames[visit.enter_frame - 1], background
            assert (
                cue[:, rows, x0 : x0 + WORLD.door_width] != plain[:, rows, x0 : x0 + WORLD.door_width]
            ).all()


def _door_brightness(frames, visit):
    x0 = 0 if visit.door_in == "left" else WORLD.width - WORLD.door_width
    return frames[:, :, visit.y_in : visit.y_in + WORLD.sprite_size, x0 : x0 + WORLD.door_width].mean(
        dim=(1, 2, 3)
    )


def test_the_next_visitors_door_charges_from_the_last_exit_to_its_cue():
    for seed in range(6):
        episode = _episode(seed)
        frames, levels = _frames(episode), charge_levels(episode, WORLD.charge_floor)
        visits = sorted(episode.visits, key=lambda v: v.enter_frame)
        starts = [0] + [v.exit_frame for v in visits[:-1]]
        for start, visit in zip(starts, visits, strict=True):
            if visit.enter_frame >= episode.num_frames:
                continue
            charging = range(start, visit.enter_frame)
            assert [levels[f][0] for f in charging] == [visit] * len(charging)
            assert levels[visit.enter_frame - 1][1] == 1.0
            # the charge starts at the floor: the next visitor's doorway shows from the first frame on
            assert WORLD.charge_floor < levels[start][1] <= WORLD.charge_floor + 1.0 / len(charging)
            brightness = _door_brightness(frames, visit)[start : visit.enter_frame]
            assert (brightness.diff() >= 0).all() and brightness[-1] > brightness[0]
            # while a subject is in view no door charges
            assert not set(range(visit.enter_frame, visit.exit_frame)) & set(levels)
    # without door_charge only the frame before an entry lights up
    instant = dataclasses.replace(WORLD, door_charge=False)
    episode = sample_episode(240, torch.Generator().manual_seed(0), instant)
    frames = render_episode_uint8(episode, instant).permute(0, 3, 1, 2).float()
    visit = episode.visits[1]
    brightness = _door_brightness(frames, visit)
    assert brightness[visit.enter_frame - 1] > brightness[visit.enter_frame - 2] == brightness[0]


def test_a_clip_is_the_start_of_a_longer_episode_charge_ahead_included():
    """A training clip (an episode of a few frames) shows what the first frames of any longer episode of
    the same draws show: also the charge of a visit that enters after its last frame."""
    without, unlit_tails = dataclasses.replace(WORLD, charge_ahead=False), 0
    for seed in range(12):
        long = _frames(_episode(seed, 240))
        for num_frames in (6, 9, 15, 27, 45):
            assert torch.equal(_frames(_episode(seed, num_frames)), long[:num_frames]), (seed, num_frames)
            cut = sample_episode(num_frames, torch.Generator().manual_seed(seed), without)
            unlit_tails += not torch.equal(render_episode_uint8(cut, without).permute(0, 3, 1, 2).float(),
                                           long[:num_frames])  # fmt: skip
    assert unlit_tails > 0  # without it some clips end in a room no longer episode shows


def test_identities_change_only_at_the_lit_gate_and_stay_distinct():
    changes = 0
    for seed in range(20):
        episode = _episode(seed)
        frames, background = _frames(episode), background_frame(episode, WORLD)
        shown, boxes = subject_identities(episode), subject_boxes(episode, WORLD)
        lit = set(gate_frames(episode))
        gate = gate_mask(WORLD)
        for frame in range(1, episode.num_frames):
            if shown[frame] is not None and shown[frame - 1] is not None and shown[frame] != shown[frame - 1]:
                changes += 1
                assert frame in lit and abs(boxes[frame][0] - centre_column(WORLD)) <= 2  # at the gate
                assert (frames[frame][:, gate] != background[:, gate]).any()
                # The change shows in the pixels: the sprite differs from the frame before, where it stood
                # one step away.
                assert not torch.equal(frames[frame], frames[frame - 1])
        current = list(episode.start_identities)
        assert len(set(current)) == len(current)
        for visit in episode.visits:
            if visit.change_to is not None:
                assert visit.change_to not in current
                current[visit.subject] = visit.change_to
    assert changes > 10


def test_a_change_is_followed_by_at_least_six_visible_frames():
    for seed in range(20):
        for visit in _episode(seed).visits:
            if visit.change_frame is not None:
                assert visit.exit_frame - visit.change_frame >= 6


def test_fixed_turns_and_one_visit_length_leave_only_the_change_to_draw():
    """With `fixed_turns` a visit turns at the gate or just short of it, and with one visit length (up
    to the chunk rounding of the next entry) it leaves when its first frames say."""
    centre, chunk = centre_column(WORLD), WORLD.chunk_frames
    length = round(WORLD.min_visit_seconds * WORLD.fps)
    loose = dataclasses.replace(WORLD, fixed_turns=False)
    turns, loose_turns = set(), set()
    for seed in range(10):
        for visit in _episode(seed).visits:
            turns.add(abs(visit.x_turn - centre))
            assert length <= visit.exit_frame - visit.enter_frame < length + chunk
        loose_turns |= {
            abs(v.x_turn - centre)
            for v in sample_episode(240, torch.Generator().manual_seed(seed), loose).visits
        }
    assert turns == {0, 6} and len(loose_turns) > 2


def test_novel_frames_are_first_entries_and_changes():
    episode = sample_episode(400, torch.Generator().manual_seed(5), WORLD)
    firsts = {}
    for visit in episode.visits:
        firsts.setdefault(visit.subject, visit.enter_frame)
    changes = [v.change_frame for v in episode.visits if v.change_frame is not None]
    assert changes and len(firsts) >= 2
    assert novel_frames(episode) == sorted(f for f in [*firsts.values(), *changes] if f < 400)


def test_scene_palettes_tie_the_background_to_the_prompt_and_nothing_else():
    free, mismatched = dataclasses.replace(WORLD, scene_palettes=False), False
    for seed in range(20):
        tied = sample_episode(120, torch.Generator().manual_seed(seed), WORLD)
        loose = sample_episode(120, torch.Generator().manual_seed(seed), free)
        assert tied.palette == tied.scene
        assert dataclasses.replace(loose, palette=tied.palette) == tied
        mismatched = mismatched or loose.palette != loose.scene
    assert mismatched  # without it the palette is drawn on its own


def test_returns_come_back_as_they_left():
    episode = _episode(2)
    identities = visit_identities(episode)
    for ret in returns(episode):
        assert ret.answer == identities[ret.previous][1] == identities[ret.visit][0]
        assert (
            ret.gap_frames == episode.visits[ret.visit].enter_frame - episode.visits[ret.previous].exit_frame
        )


@pytest.mark.parametrize("gap_seconds", [1.5, 6.0, 24.0])
def test_probe_episodes_split_by_where_the_answer_lies(gap_seconds):
    gap = round(gap_seconds * WORLD.fps)
    for answer in ("early", "late"):
        for seed in range(8):
            generator = torch.Generator().manual_seed(seed)
            episode, start = sample_return_episode(gap, answer, generator, WORLD, target_frames=6)
            assert episode.num_frames == start + 6 and start % WORLD.chunk_frames == 0
            (ret,) = [r for r in returns(episode) if r.frame == start]
            assert ret.subject == 0 and ret.gap_frames == gap
            if answer == "early":
                assert ret.answer_frame < EARLY
            else:
                # The first frames do not hold the answer: the subject has changed since its first entrance.
                assert ret.answer_frame >= EARLY and ret.answer != ret.first_identity
            assert all(
                box is None for box in subject_boxes(episode, WORLD)[start - WORLD.min_gap_frames : start]
            )


def test_a_probe_episode_cut_after_the_returns_exit_shows_the_next_charge():
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        episode, start = sample_return_episode(12, "early", generator, WORLD, target_frames=24)
        back = next(v for v in episode.visits if v.enter_frame == start)
        assert back.exit_frame < episode.num_frames and episode.upcoming is not None
        levels = charge_levels(episode, WORLD.charge_floor)
        assert all(levels[f][0] == episode.upcoming for f in range(back.exit_frame, episode.num_frames))


def test_metadata_round_trip_and_ground_truth():
    episode = _episode(5, 160)
    metadata = json.loads(json.dumps(episode_metadata(episode, WORLD)))
    assert episode_from_metadata(metadata) == (episode, WORLD)
    assert len(metadata["subjects"]) == episode.num_subjects
    shown = subject_identities(episode)
    for record, identity in zip(metadata["frames"], shown, strict=True):
        visible = [s for s in record["subjects"] if s["visible"]]
        assert len(visible) == (identity is not None)
        assert all(s["identity"] == identity for s in visible)
    kinds = {event["kind"] for event in metadata["events"]}
    assert {"entry", "exit"} <= kinds
    returned = [r for s in metadata["subjects"] for r in s["returns"]]
    assert sorted(r["frame"] for r in returned) == [r.frame for r in returns(episode)]


def test_first_world_configs_still_load_as_the_first_world():
    saved = json.loads((shipped("teacher") / "config.json").read_text())["data"]["world"]
    assert from_dict(WorldConfig, saved) == WorldConfig()
    assert WorldConfig().version == 1 and world_version(1) == WorldConfig()
    with pytest.raises(ValueError, match="version"):
        WorldConfig(version=3)
    with pytest.raises(ValueError, match="max_subjects"):
        WorldConfig(version=2, num_colours=1, num_shapes=2)


def test_an_exported_second_world_episode_is_a_valid_evaluation_reference(tmp_path):
    from contextforcing.world.export import export_episode
    from contextforcing.world.reference import load_reference

    export_episode(tmp_path / "ep", seconds=20, seed=1, config=world_version(2))
    reference = load_reference(tmp_path / "ep" / "meta.json")
    assert len({v.subject for v in reference.episode.visits}) >= 2
    reference.check(reference.frames(), reference.config.fps, "the episode itself")
