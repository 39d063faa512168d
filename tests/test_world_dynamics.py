"""Metrics a still video cannot pass: dynamics, free-running recall and temporal coherence."""

from __future__ import annotations

import torch

from contextforcing.world.dynamics import (
    Sighting,
    cast_of,
    coherence,
    detect_subjects,
    dynamics,
    dynamics_check,
    event_scores,
    free_recall,
    pooled_chance,
    recall_by_gap,
    shuffled_recall,
    switch_rate,
    video_background,
    video_events,
    visits_of,
    world_dynamics,
)
from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall_probe import ProbeConfig, probe_recall, wilson_interval
from contextforcing.world.render import background_frame, composite_sprite, render_episode_uint8
from contextforcing.world.timeline import world_events
from contextforcing.world.types import world_version

WORLD = world_version(2)


def _video(seed: int):
    episode = sample_episode(240, torch.Generator().manual_seed(100 + seed), WORLD)
    return episode, render_episode_uint8(episode, WORLD)


def _shuffled(frames, seed: int):
    pieces = list(frames.split(8))  # 2-second pieces
    order = torch.randperm(len(pieces), generator=torch.Generator().manual_seed(seed))
    return torch.cat([pieces[i] for i in order])


def test_true_episodes_are_coherent_and_shuffled_ones_are_not():
    shuffled_total = 0.0
    for seed in range(3):
        _, frames = _video(seed)
        true = coherence(detect_subjects(frames, WORLD), WORLD)
        shuffled = coherence(detect_subjects(_shuffled(frames, seed), WORLD), WORLD)
        assert true["incoherent_per_minute"] == 0
        assert shuffled["incoherent_per_minute"] >= 3
        shuffled_total += shuffled["incoherent_per_minute"]
    assert shuffled_total / 3 >= 5


def test_the_switch_rate_is_identity_changes_away_from_the_gate_per_pair_of_frames_with_a_subject():
    def seen(x: float, identity: int) -> Sighting:
        return Sighting(x, 20.0, int(x) - 12, int(x) + 12, identity)

    away, gate = 20.0, WORLD.width / 2
    one = [seen(away, i) for i in (0, 0, 1, 1, 0)] + [None] + [seen(gate, i) for i in (1, 2, 2)]
    other = [None, seen(away, 3), seen(away, 3), None]
    rate = switch_rate([coherence(one, WORLD), coherence(other, WORLD)])
    assert rate == 2 / (4 + 2 + 1)  # 0->1 and 1->0 away from the gate; 1->2 is at the gate
    assert coherence(one, WORLD)["switch_frames"] == [2, 4]
    assert switch_rate([coherence([None, seen(away, 0), None], WORLD)]) is None
    for seed in range(3):
        true = coherence(detect_subjects(_video(seed)[1], WORLD), WORLD)
        assert true["subject_pairs"] > 50 and switch_rate([true]) == 0.0


def test_true_episodes_come_back_as_they_left():
    for seed in range(3):
        result = free_recall(detect_subjects(_video(seed)[1], WORLD), WORLD)
        assert result["num_returns"] >= 1 and result["recall"] == 1.0
        # each return names the end of the visit it is compared with, which lies before it
        assert all(0 < r["left_at"] < r["frame"] for r in result["returns"])


def test_free_recall_compares_a_return_with_the_last_visit_out_of_its_doorway():
    def door(sighting):
        return sighting.x < WORLD.width / 2, sighting.y < WORLD.height / 2

    checked = 0
    for seed in range(3):
        sightings = detect_subjects(_video(seed)[1], WORLD)
        visits = visits_of(sightings)
        for record in free_recall(sightings, WORLD)["returns"]:
            before = [
                stop
                for start, stop in visits
                if start < record["frame"] and door(sightings[start]) == door(sightings[record["frame"]])
            ]
            assert record["left_at"] == before[-1]  # the latest earlier visit out of the same doorway
            checked += 1
    assert checked >= 3


def _returns(*pairs):
    return [{"identity": came, "left_as": left, "recalled": came == left} for came, left in pairs]


def test_chance_recall_is_the_recall_of_the_returns_identities_shuffled():
    one_subject = _returns((3, 3), (3, 3), (3, 3))
    assert shuffled_recall(one_subject) == 1.0  # a cast of one keeps every return, by chance alone
    # two identities, two of each among the returns: half of any dealing matches
    assert shuffled_recall(_returns((0, 0), (1, 1), (0, 1), (1, 0))) == 0.5
    assert shuffled_recall(_returns((0, 1), (1, 0))) == 0.5 and shuffled_recall([]) is None
    # all left as 1, one in three comes back as 1: dealing those identities matches one time in three
    assert shuffled_recall(_returns((0, 1), (0, 1), (1, 1))) == 1 / 3
    # pooled over videos by their returns, each video shuffled on its own
    assert pooled_chance([one_subject, _returns((0, 1), (1, 0)), []]) == (3 * 1.0 + 2 * 0.5) / 5
    assert pooled_chance([[], []]) is None


def test_the_worlds_returns_come_back_far_above_chance():
    returns = [free_recall(detect_subjects(_video(seed)[1], WORLD), WORLD) for seed in range(3)]
    assert all(r["recall"] == 1.0 for r in returns)
    assert pooled_chance([r["returns"] for r in returns]) < 0.8


def test_recall_by_gap_groups_returns_by_the_seconds_since_the_exit():
    returns = [
        {"frame": 10, "left_at": 6, "recalled": True},  # 1 s at 4 fps
        {"frame": 40, "left_at": 20, "recalled": False},  # 5 s
        {"frame": 60, "left_at": 28, "recalled": True},  # 8 s: the group that starts there
        {"frame": 200, "left_at": 100, "recalled": True},  # 25 s
        {"frame": 230, "left_at": 160, "recalled": False},  # 17.5 s
    ]
    groups = recall_by_gap(returns, fps=4.0, edges=(0.0, 4.0, 8.0, 16.0))
    assert [(g["from_s"], g["to_s"]) for g in groups] == [(0.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, None)]
    assert [(g["returns"], g["recalled"]) for g in groups] == [(1, 1), (1, 0), (1, 1), (2, 1)]


def test_the_cast_read_from_true_episodes_is_the_cast_they_show():
    for seed in range(3):
        episode, frames = _video(seed)
        current, doorways, shown = list(episode.identities), set(), set()
        for visit in episode.visits:
            if visit.enter_frame >= len(frames):
                break
            doorways.add((visit.door_in, visit.y_in))
            shown.add(current[visit.subject])
            if visit.change_frame is not None and visit.change_frame < len(frames):
                current[visit.subject] = visit.change_to
                shown.add(visit.change_to)
        assert cast_of(detect_subjects(frames, WORLD), WORLD) == {
            "doorways": len(doorways),
            "identities": len(shown),
        }
        assert len(doorways) >= 2  # the world's episodes bring more than one subject


def test_an_empty_video_fails_the_dynamics_check_and_the_world_passes_it():
    world = world_dynamics(WORLD, seconds=60.0, episodes=8)
    episode, _ = _video(0)
    empty = background_frame(episode, WORLD).permute(1, 2, 0).to(torch.uint8)[None].repeat(240, 1, 1, 1)
    still = dynamics(detect_subjects(empty, WORLD), WORLD)
    assert still["presence"] == 0 and not dynamics_check(still, world)["passes"]
    rows = [dynamics(detect_subjects(_video(s)[1], WORLD), WORLD) for s in range(8)]
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("presence", "visits_per_minute")}
    assert dynamics_check(mean, world)["passes"]
    assert world["long_visits_per_minute"]["max"] == 0 and still["long_visits_per_minute"] == 0
    # the world's visits last 4 s; only those cut by the minute's edges are shorter
    assert world["short_visits_per_minute"]["mean"] < 1 < world["visits_per_minute"]["mean"] - 4
    assert 0.25 <= world["presence"]["mean"] <= 0.55 and 4 <= world["visits_per_minute"]["mean"] <= 9
    # the world's returns come back as they left, far above the chance of its casts of two or three
    assert world["free_recall"] == 1.0 and world["free_recall_chance"] < 0.8
    assert 2 <= world["doorways"]["mean"] <= 3 and world["identities"]["mean"] >= world["doorways"]["mean"]


def _standing(room: torch.Tensor, frames: int = 240, still: int = 168) -> torch.Tensor:
    """uint8 [T, H, W, 3]: a subject standing in the middle of `room` for the first `still` frames."""
    size = WORLD.sprite_size
    x0, y0 = (WORLD.width - size) // 2 + 6, (WORLD.height - size) // 2
    with_subject = composite_sprite(room, 0, (x0, y0, x0 + size, y0 + size), WORLD)
    video = torch.stack([with_subject] * still + [room] * (frames - still))
    return video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def test_a_subject_standing_still_most_of_the_time_is_found_against_the_prompts_room():
    episode, _ = _video(0)
    room = background_frame(episode, WORLD)
    video = _standing(room)
    background = video_background(video, WORLD, room)
    assert background.source == "room" and background.still_pixels >= WORLD.sprite_size**2 // 2
    found = dynamics(detect_subjects(video, WORLD, background), WORLD)
    assert found["presence"] == 168 / 240 and found["visits_per_minute"] == 1.0
    assert found["long_visits_per_minute"] == 1.0  # 42 s in view; the world's visits last 4 s
    assert found["short_visits_per_minute"] == 0.0
    # Against the video's own median the subject is the background: it is never seen, and the frames
    # without it read as a visit.
    assert dynamics(detect_subjects(video, WORLD), WORLD)["presence"] == 72 / 240
    # A video of another room than the prompt's (one that looks different) is judged against its own median.
    rooms = [background_frame(_video(s)[0], WORLD) for s in range(50)]
    other = next(r for r in rooms if ((r - room).abs().mean(dim=0) > 40).any())
    elsewhere = video_background(_standing(room, still=0), WORLD, other)
    assert elsewhere.source == "other room" and elsewhere.still_pixels == 0
    # On the world's own episodes the room and the median agree.
    for seed in range(3):
        fixed, frames = _video(seed)
        assert video_background(frames, WORLD, background_frame(fixed, WORLD)).still_pixels == 0


def test_detected_events_match_the_ground_truth():
    episode, frames = _video(1)
    truth = [e.frame for e in world_events(episode)]
    found = video_events(detect_subjects(frames, WORLD))
    scores = event_scores(found, truth, tolerance=0, num_frames=240, fps=WORLD.fps)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0
    none = event_scores([], truth, tolerance=3, num_frames=240, fps=WORLD.fps)
    assert none["per_minute"] == 0 and none["recall"] == 0.0 and none["precision"] is None


def test_wilson_interval():
    low, high = wilson_interval(12, 24)
    assert low < 0.5 < high and 0.29 < low < 0.32 and 0.68 < high < 0.71
    assert wilson_interval(0, 24)[0] == 0.0 and wilson_interval(24, 24)[1] == 1.0


class _Identity:
    """A stand-in codec: latents are the frames."""

    temporal_factor = 1

    def encode(self, frames):
        return frames

    def decode(self, latents):
        return latents


def test_probe_splits_every_gap_by_where_the_answer_lies():
    def blank(history, prompt, generator):  # draws nothing: the background of the last frame
        return history[:, :, -1:].expand(-1, -1, 6, -1, -1)

    probe = ProbeConfig(gaps_seconds=(3.0,), episodes_per_gap=2, num_target_frames=6)
    results = probe_recall(blank, _Identity(), WORLD, probe)
    assert [r["answer"] for r in results] == ["early", "late"]
    assert all(r["count"] == 2 and r["drawn"] == 0 and r["recall"] == 0 for r in results)
    assert all(len(r["interval"]) == 2 for r in results)


def test_the_probe_reads_from_the_ground_truth_what_a_memory_keeps():
    def blank(history, prompt, generator):
        return history[:, :, -1:].expand(-1, -1, 6, -1, -1)

    def measured(keeper):
        probe = ProbeConfig(gaps_seconds=(3.0,), episodes_per_gap=3, num_target_frames=6)
        return {r["answer"]: r for r in probe_recall(blank, _Identity(), WORLD, probe, keeper)}

    everything = measured(lambda history, prompt: tuple(range(history.shape[2])))
    # A late answer's subject changed at the gate on its last visit: its first identity is in the history.
    assert everything["late"]["answer_kept"] == 1 and everything["late"]["first_kept"] == 1
    assert everything["early"]["answer_kept"] == 1
    sink = measured(lambda history, prompt: (0, 1, 2))  # nothing is in view in the sink
    assert all(r["answer_kept"] == 0 and r["first_kept"] == 0 for r in sink.values())
    assert all(r["kept_frames"] == 3 and r["kept_from_start"] == 3 for r in sink.values())
    assert all(r["answer_frames_kept"] == r["first_frames_kept"] == 0 for r in sink.values())
    # The whole history shows the answer on its last visit and the first identity on the first one.
    assert everything["late"]["answer_frames_kept"] >= 1 and everything["late"]["first_frames_kept"] >= 4
    length = everything["late"]["kept_frames"]  # every history is kept whole, without a gap
    assert length > 12 and everything["late"]["kept_from_start"] == length
    gapped = measured(lambda history, prompt: (0, 1, 2, 5, 6))
    assert all(r["kept_frames"] == 5 and r["kept_from_start"] == 3 for r in gapped.values())
    # The last four frames before the return show the empty room, the subject's exit lies 12 frames back.
    recent = measured(lambda history, prompt: tuple(range(history.shape[2] - 4, history.shape[2])))
    assert all(r["answer_kept"] == 0 for r in recent.values())
    without = probe_recall(blank, _Identity(), WORLD, ProbeConfig(gaps_seconds=(3.0,), episodes_per_gap=1))
    assert "answer_kept" not in without[0]  # no keeper, no claim about what is kept


def test_frames_showing_follow_a_change_at_the_gate():
    from contextforcing.world.cast import sample_return_episode
    from contextforcing.world.timeline import frames_showing, visit_identities

    episode, start = sample_return_episode(
        12, "late", torch.Generator().manual_seed(3), WORLD, target_frames=6
    )
    index = max(i for i, v in enumerate(episode.visits) if v.subject == 0 and v.exit_frame <= start)
    last, (entry, exit_) = episode.visits[index], visit_identities(episode)[index]
    assert entry != exit_ and last.enter_frame < last.change_frame < last.exit_frame
    after, before = (
        set(range(last.change_frame, last.exit_frame)),
        set(range(last.enter_frame, last.change_frame)),
    )
    assert after <= frames_showing(episode, 0, exit_, start) and not before & frames_showing(
        episode, 0, exit_, start
    )
    assert before <= frames_showing(episode, 0, entry, start)
    assert not frames_showing(episode, 0, exit_, last.change_frame) & after  # nothing from `stop` on


def test_a_visit_shorter_than_the_world_allows_is_incoherent():
    at_door = Sighting(x=WORLD.width - 16, y=32, x0=WORLD.width - 28, x1=WORLD.width - 5, identity=0)
    blank = [None] * 8
    short = [*blank, *[at_door] * (WORLD.min_visit_frames - 1), *blank]
    long = [*blank, *[at_door] * WORLD.min_visit_frames, *blank]
    assert (
        coherence(short, WORLD)["short_visits"] == 1 and coherence(short, WORLD)["incoherent_per_minute"] > 0
    )
    assert (
        coherence(long, WORLD)["short_visits"] == 0 and coherence(long, WORLD)["incoherent_per_minute"] == 0
    )
    cut = [*[at_door] * 3, *blank, *[at_door] * 3]  # visits cut by the video's ends are not judged
    assert coherence(cut, WORLD)["short_visits"] == 0
