"""The pools' replay (bench/pools_replay.py): a day's trace played through the real pool
pass, assign and release on a simulated clock and cloud."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import pools_replay
from bench.pools_replay import Options, Replay, played_day, read_trace

ROOT = Path(__file__).resolve().parent.parent
BOOT_MEAN, BOOT_JITTER = 60, 20
USERS = 10


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("time_s,event,user,vm_type\n" + "".join(f"{line}\n" for line in lines))
    return path


@pytest.fixture
def hour(tmp_path) -> Path:
    """Ten users over one hour from 9:00: each asks for a VM of ``web`` 5 minutes after
    the last, and gives it back 20 minutes later; written out of order."""
    lines = []
    for number in range(USERS):
        start = 9 * 3600 + 300 * number + 7
        lines.append(f"{start + 1200},release,user-{number},web")
        lines.append(f"{start},assign,user-{number},web")
    return write(tmp_path / "hour.csv", lines)


def replay(trace: Path, **options) -> Replay:
    options = {"boot_mean": BOOT_MEAN, "boot_jitter": BOOT_JITTER, **options}
    played = Replay(read_trace(trace), Options(**options))
    played.figures = played.run()
    return played


def test_no_vm_ready_every_assign_waits_a_boot(hour):
    played = replay(hour, min_ready=0)
    web = played.figures["pools"]["web"]
    assert web["assigns"] == USERS
    assert web["warm_hits"] == 0
    assert web["waited"] == USERS
    assert min(played.states["web"].waits) >= BOOT_MEAN - BOOT_JITTER
    # Released VMs are destroyed: each assign had a VM of its own.
    assert web["vms_created"] >= web["assigns"]
    assert web["idle_vm_hours"] > 0
    assert web["unserved"] == 0
    assert played.figures["total"]["assigns"] == USERS


def test_a_pool_as_large_as_the_crowd_answers_every_assign_at_once(hour):
    web = replay(hour, min_ready=USERS).figures["pools"]["web"]
    assert web["assigns"] == USERS
    assert web["warm_hits"] == USERS
    assert web["warm_share"] == 1.0
    assert (web["waited"], web["wait_p50"], web["wait_p99"]) == (0, None, None)
    assert web["vms_created"] >= USERS + USERS  # the ten at the start, one for each assign


def test_idle_time_of_one_assign_is_its_vms_boot(tmp_path):
    """One assign at 1:00:07, no pool: the pass at 1:00:15 makes a VM that runs at
    1:01:15, the pass then makes it free and the assign takes it."""
    trace = write(tmp_path / "one.csv", ["3607,assign,alice,web"])
    played = replay(trace, min_ready=0, jitter=0, boot_mean=60, boot_jitter=0)
    web = played.figures["pools"]["web"]
    idle = web["idle_vm_hours"] * 3600
    assert 60 <= idle < 60 + 15  # booting, then free until the next pass at most
    assert idle == pytest.approx(60)
    assert played.states["web"].waits == [pytest.approx(68)]
    assert web["vms_created"] == 1


def test_a_release_before_the_vm_came_gives_it_back_once_served(tmp_path):
    trace = write(tmp_path / "early.csv", ["3607,assign,alice,web", "3620,release,alice,web"])
    played = replay(trace, min_ready=0, jitter=0, boot_mean=60, boot_jitter=0)
    web = played.figures["pools"]["web"]
    assert (web["assigns"], web["waited"], web["unmatched_releases"]) == (1, 1, 0)
    assert not played.states["web"].holdings["alice"]


def test_later_days_vary_the_first(hour):
    trace = read_trace(hour)
    first = played_day(trace, 0, 300, seed=1)
    assert [event.time for event in first] == [event.time for event in trace]
    second = played_day(trace, 1, 300, seed=1)
    assert second == played_day(trace, 1, 300, seed=1)  # seeded
    assert second != played_day(trace, 1, 300, seed=2)
    assert all(86400 <= event.time < 2 * 86400 for event in second)
    users = {event.user for event in second}
    assert len({user for user in users if user.endswith("~2")}) == 1  # a tenth doubled
    assert len({user.removesuffix("~2") for user in users}) == USERS - 1  # a tenth left out
    moved = {(event.user, event.kind): event.time - 86400 for event in second}
    assert any(moved.get((event.user, event.kind), event.time) != event.time for event in trace)
    assert sum(event.kind == "assign" for event in second) == USERS


def test_two_days_count_the_second_only(hour):
    figures = replay(hour, min_ready=0, days=2).figures
    assert figures["measured_days"] == [2]
    assert figures["pools"]["web"]["assigns"] == USERS  # one left out, one played twice
    again = replay(hour, min_ready=0, days=2).figures
    assert again["pools"] == figures["pools"]


def test_the_sweep_finds_the_static_size_that_matches(hour):
    options = Options(min_ready=USERS, boot_mean=BOOT_MEAN, boot_jitter=BOOT_JITTER)
    trace = read_trace(hour)
    chosen = Replay(trace, options).run()
    found = pools_replay.sweep(trace, options, chosen)["pools"]["web"]
    assert found["warm_share"] == 1.0
    assert 1 <= found["min_ready"] <= USERS
    assert found["idle_vm_hours"] <= chosen["pools"]["web"]["idle_vm_hours"]


@pytest.mark.parametrize("policy", ["schedule", "forecast"])
def test_the_passes_skipped_change_nothing(hour, policy):
    """The replay skips the ticks where no pass would do anything, and computes a pool's
    target again only when it may have changed: the figures are those of a replay that
    computes it and considers a pass at every tick, from 8:00 to 11:30 of the second day
    (the forecast counts from the first day's assigns; the demand rises after the
    assigns and falls half an hour later; the schedule holds from 9:00 to 10:00)."""
    trace = read_trace(hour)
    options = {"policy": policy, "min_ready": 1, "days": 2, "boot_mean": 90, "boot_jitter": 30}
    skipping = Replay(trace, Options(**options)).run()
    checking = Replay(trace, Options(**options, every_tick=(86400 + 8 * 3600, 86400 + 11.5 * 3600)))
    checked = checking.run()
    for figures in (skipping, checked):
        for entry in (*figures["pools"].values(), figures["total"]):
            entry.pop("passes")
    assert checked["pools"] == skipping["pools"]
    assert checked["total"] == skipping["total"]


def test_sizing_policies_run(hour, capsys):
    assert pools_replay.main([str(hour), "--policy", "demand", "--days", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["policy"] == "demand"
    assert figures["pools"]["web"]["assigns"] == USERS


@pytest.mark.parametrize(
    ("lines", "line", "says"),
    [
        (["3600,assign,alice,web", "3700,return,alice,web"], 3, "event must be"),
        (["3600,assign,alice,web", "86400,release,alice,web"], 3, "time_s must be"),
        (["-1,assign,alice,web"], 2, "time_s must be"),
        (["soon,assign,alice,web"], 2, "time_s must be"),
        (["3600,assign,alice"], 2, "3 fields, not 4"),
        (["3600,assign,alice,no pool"], 2, "vm_type must be"),
    ],
)
def test_a_bad_trace_names_its_line(tmp_path, capsys, lines, line, says):
    trace = write(tmp_path / "bad.csv", lines)
    assert pools_replay.main([str(trace)]) == 2
    error = capsys.readouterr().err
    assert f"{trace}:{line}: {says}" in error
    assert len(error.strip().splitlines()) == 1


def test_a_trace_without_its_header_exits_2_without_a_traceback(tmp_path):
    trace = tmp_path / "headless.csv"
    trace.write_text("3600,assign,alice,web\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench.pools_replay", str(trace), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"pools_replay: {trace}:1: the header must be time_s,event,user,vm_type"
    )
