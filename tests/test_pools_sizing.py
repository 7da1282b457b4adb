"""A pool sized to its target on libcloud's Dummy cloud, the clock moved by time-machine:
the floor by schedule in the pool's time zone (a change of the clocks too), the reactive
target from recent demand and its slow way down, the forecast from previous days, paused
and draining pools. (Overrides through the API: test_pool_overrides.py.)"""

import dataclasses
import datetime

import pytest
import sqlalchemy
import time_machine
from conftest import assert_error, metric, token_client
from libcloud.compute.types import NodeState

from dispatcher import clouds, create_app, pools
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, BOOTING, DELETED, FREE, Assignment, AuditEntry, Span
from dispatcher.operations import tend_pool
from dispatcher.pools import sizing

ASSIGN = "/api/v1/vm/action/assign"
UTC = datetime.UTC


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def pool(**changes) -> dict:
    entry = {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 1,
        "max_total": 40,
        "boot_timeout": 86400,
        **changes,
    }
    return {"web": entry}


def at(*moment) -> datetime.datetime:
    return datetime.datetime(*moment, tzinfo=UTC)


def run_pass(app, **changes):
    """A pass over the pool, ``changes`` made to its spec first (as an override would)."""
    with app.app_context():
        return tend_pool(dataclasses.replace(pools.get("web"), **changes))


def levels(app) -> dict[str, int]:
    """The pool's VMs by state."""
    with app.app_context():
        found = db.session.execute(
            sqlalchemy.select(Assignment.status, sqlalchemy.func.count())
            .where(Assignment.pool == "web", Assignment.status != DELETED)
            .group_by(Assignment.status)
        )
        counts = dict(found.all())
    return {
        "booting": counts.get(BOOTING, 0),
        "free": counts.get(FREE, 0),
        "assigned": counts.get(ASSIGNED, 0),
    }


def kept(app) -> int:
    """The pool's VMs free or booting: what its target counts."""
    now = levels(app)
    return now["booting"] + now["free"]


def target(app) -> sizing.Target:
    with app.app_context():
        return sizing.target(pools.get("web"))


# -- the configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"schedule": {"cron": "0 8 * * *"}},
            "POOLS['web']: schedule must be a list of {cron, until, min_ready}",
        ),
        (
            {"schedule": [{"cron": "0 8 * * *", "min_ready": 2}]},
            "POOLS['web']['schedule'][0]: until is missing",
        ),
        (
            {"schedule": [{"cron": "0 25 * * *", "until": "0 19 * * *", "min_ready": 2}]},
            "POOLS['web']['schedule'][0]: cron must be a cron expression of five fields, "
            "like '0 8 * * 1-5'",
        ),
        (
            {"schedule": [{"cron": "0 8 * * *", "until": "0 0 19 * * *", "min_ready": 2}]},
            "POOLS['web']['schedule'][0]: until must be a cron expression of five fields, "
            "like '0 8 * * 1-5'",
        ),
        (
            {"schedule": [{"cron": "0 8 * * *", "until": "0 8 * * *", "min_ready": 2}]},
            "POOLS['web']['schedule'][0]: cron and until are the same: it covers no time",
        ),
        (
            {"schedule": [{"cron": "0 8 * * *", "until": "0 9 * * *", "min_ready": 41}]},
            "POOLS['web']['schedule'][0]: min_ready (41) is more than max_total (40)",
        ),
        (
            {"schedule": [{"cron": "0 8 * * *", "until": "0 9 * * *", "min_ready": 1, "x": 1}]},
            "POOLS['web']['schedule'][0]: unknown key 'x' (known: cron, min_ready, until)",
        ),
        (
            {"timezone": "Mars/Olympus"},
            "POOLS['web']: timezone 'Mars/Olympus' is not a time zone (names like "
            "Europe/Rome, UTC)",
        ),
        (
            {"timezone": "../../etc/passwd"},
            "POOLS['web']: timezone '../../etc/passwd' is not a time zone (names like "
            "Europe/Rome, UTC)",
        ),
        (
            {"demand": {"headroom": 0}},
            "POOLS['web']: demand: headroom must be a number above 0, at most 100",
        ),
        (
            {"demand": {"window": 10}},
            "POOLS['web']: demand: window must be a whole number from 60",
        ),
        (
            {"demand": {"scale_down": 10}},
            "POOLS['web']: demand: unknown key 'scale_down' "
            "(known: headroom, scale_down_delay, window)",
        ),
        ({"forecast": {"days": 0}}, "POOLS['web']: forecast: days must be a whole number from 1"),
        ({"forecast": {"days": 61}}, "POOLS['web']: forecast: days must be at most 60"),
        (
            {"forecast": {"spread": 10**9}},
            "POOLS['web']: forecast: spread must be at most 43200 (12 hours)",
        ),
        ({"forecast": 7}, "POOLS['web']: forecast must be a mapping of days, spread"),
    ],
)
def test_a_bad_sizing_stops_the_start_naming_the_pool_and_key(changes, message):
    with pytest.raises(ConfigurationError) as caught:
        create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
                "CLOUD_FARM": DUMMY_FARM,
                "POOLS": pool(**changes),
            }
        )
    assert str(caught.value) == message


# -- the floor by schedule -----------------------------------------------------------------

OFFICE = [{"cron": "0 8 * * *", "until": "0 19 * * *", "min_ready": 4}]


@pytest.mark.parametrize(
    ("day", "opens_utc", "closes_utc"),
    [
        # Winter time in Rome (UTC+1): 08:00 is 07:00 UTC.
        ((2026, 3, 28), (7, 0), (18, 0)),
        # The clocks go forward at 02:00 that night: 08:00 is 06:00 UTC from that day.
        ((2026, 3, 29), (6, 0), (17, 0)),
        # And back at 03:00 on the last Sunday of October: 08:00 is 07:00 UTC again.
        ((2026, 10, 25), (7, 0), (18, 0)),
    ],
)
def test_the_scheduled_floor_switches_at_the_minute_in_the_pools_time_zone(
    make_app, day, opens_utc, closes_utc
):
    """Before 08:00 in Rome the pool keeps its min_ready of 1; from 08:00:00 the schedule's
    4, made by the first pass; at 19:00 the floor is 1 again and the surplus is retired
    once it has lasted the scale_down_delay, never below the floor."""
    app = make_app(POOLS=pool(schedule=OFFICE, timezone="Europe/Rome"))
    opens = at(*day, *opens_utc)
    closes = at(*day, *closes_utc)
    second = datetime.timedelta(seconds=1)
    with time_machine.travel(opens - datetime.timedelta(minutes=5), tick=False) as clock:
        run_pass(app)
        assert kept(app) == 1
        clock.move_to(opens - second)
        assert target(app).free == 1
        run_pass(app)
        assert kept(app) == 1
        clock.move_to(opens)
        found = target(app)
        assert (found.free, found.floor) == (4, 4)
        assert found.because == "floor: schedule '0 8 * * *' until '0 19 * * *' (Europe/Rome)"
        run_pass(app)
        assert kept(app) == 4

        clock.move_to(closes - second)
        assert target(app).free == 4
        clock.move_to(closes)
        assert target(app) == sizing.Target(1, "floor: min_ready 1", 1)
        run_pass(app)
        assert levels(app)["free"] == 4  # the surplus waits for the scale_down_delay
        clock.shift(datetime.timedelta(seconds=899))
        run_pass(app)
        assert levels(app)["free"] == 4
        clock.shift(datetime.timedelta(seconds=1))
        retired = metric("dispatcher_pool_scale_downs_total", pool="web")
        run_pass(app)
        assert levels(app) == {"booting": 0, "free": 1, "assigned": 0}
        assert metric("dispatcher_pool_scale_downs_total", pool="web") == retired + 3


def test_the_first_schedule_entry_covering_a_moment_wins_and_weekdays_count(make_app):
    schedule = [
        {"cron": "0 8 * * 1-5", "until": "0 19 * * 1-5", "min_ready": 6},
        {"cron": "0 0 * * *", "until": "0 12 * * *", "min_ready": 2},
    ]
    app = make_app(POOLS=pool(schedule=schedule, min_ready=0))
    with time_machine.travel(at(2026, 12, 7, 9, 0), tick=False) as clock:  # a Monday
        assert target(app).free == 6  # both cover 09:00: the first wins
        clock.move_to(at(2026, 12, 6, 9, 0))  # a Sunday: only the second
        assert target(app).free == 2
        clock.move_to(at(2026, 12, 6, 12, 0))
        assert target(app).free == 0


# -- the reactive target -------------------------------------------------------------------


def test_demand_raises_the_target_after_a_burst_and_lowers_it_only_after_the_delay(make_app):
    """Ten assigns refused by an empty pool in a minute: a rate of 1/6 a second, times the
    boot (boot_timeout 20 while no VM has booted), times 1.5: five VMs. They stay free for
    the scale_down_delay after the window has forgotten the burst, then go."""
    app = make_app(
        POOLS=pool(
            min_ready=0,
            boot_timeout=20,
            demand={"window": 60, "headroom": 1.5, "scale_down_delay": 300},
        )
    )
    start = at(2026, 12, 1, 9, 0)
    with time_machine.travel(start, tick=False) as clock:
        client = token_client(app)
        run_pass(app)
        assert kept(app) == 0
        for _ in range(10):
            clock.shift(datetime.timedelta(seconds=5))
            assert_error(
                client.put(ASSIGN, json={"user": "ada", "vm_type": "web"}),
                503,
                "pool web has no free VM now",
                prefix=True,
            )
        found = target(app)
        assert (found.free, found.demand, found.floor) == (5, 5, 0)
        assert found.because == "demand: 0.167 assigns/s × 20 s boot × 1.5"
        run_pass(app)
        assert kept(app) == 5
        clock.shift(datetime.timedelta(seconds=20))  # the VMs boot in 20 s
        run_pass(app)
        assert levels(app)["free"] == 5
        assert target(app).free == 5  # 9 refusals in the window: 4.5 wanted

        # As the window forgets the burst, the target falls at once...
        clock.move_to(start + datetime.timedelta(seconds=76))
        assert target(app).free == 4
        clock.move_to(start + datetime.timedelta(seconds=50 + 60, microseconds=1))
        assert target(app) == sizing.Target(0, "floor: min_ready 0", 0, demand=0)
        run_pass(app)
        # ...but the VMs stay for the scale_down_delay of 300 s from that pass.
        clock.shift(datetime.timedelta(seconds=299))
        run_pass(app)
        assert levels(app)["free"] == 5
        clock.shift(datetime.timedelta(seconds=1))
        run_pass(app)
        assert levels(app)["free"] == 0
    with app.app_context():
        destroyed = db.session.scalars(
            sqlalchemy.select(AuditEntry.message).where(AuditEntry.action == "destroy")
        ).all()
    assert len(destroyed) == 5
    assert all("beyond the pool's target of 0 (set by floor: min_ready 0)" in m for m in destroyed)


def test_a_surplus_that_ends_before_the_delay_is_not_retired_later(make_app):
    """Free VMs beyond the target for a while, then taken: the delay starts again."""
    app = make_app(POOLS=pool(min_ready=3, demand={"scale_down_delay": 300}))
    with time_machine.travel(at(2026, 12, 1, 9, 0), tick=False) as clock:
        client = token_client(app, roles=("admin",))
        run_pass(app)
        run_pass(app)
        assert levels(app)["free"] == 3
        run_pass(app, min_ready=1)  # two beyond the target from now
        clock.shift(datetime.timedelta(seconds=200))
        for _ in range(2):
            assert client.put(ASSIGN, json={"user": "ada", "vm_type": "web"}).status_code == 200
        run_pass(app, min_ready=1)  # no surplus: one free
        assert levels(app)["free"] == 1
        clock.shift(datetime.timedelta(seconds=150))
        run_pass(app, min_ready=0)  # a surplus again, since now
        clock.shift(datetime.timedelta(seconds=200))
        run_pass(app, min_ready=0)
        assert levels(app)["free"] == 1  # 200 s of surplus, not 350


# -- the forecast --------------------------------------------------------------------------


def made_up_history(app, day: datetime.datetime, burst: int) -> None:
    """``burst`` assigns of the pool in the minute from 09:00 UTC of ``day``, and one at
    15:00: assigned spans as the ledger writes them, long ended."""
    with app.app_context():
        moments = [day.replace(hour=9) + datetime.timedelta(seconds=4 * n) for n in range(burst)]
        moments.append(day.replace(hour=15))
        for number, moment in enumerate(moments):
            db.session.add(
                Span(
                    assignment_id=10_000 + number,
                    cloud="default",
                    status=ASSIGNED,
                    holder="ci",
                    pool="web",
                    started_at=moment,
                    ended_at=moment + datetime.timedelta(minutes=10),
                )
            )
        db.session.commit()


def test_the_forecast_makes_the_pool_ready_before_yesterdays_burst_recurs(make_app):
    """Twelve assigns came in the minute after 09:00 on each of the last two days. A lead
    time (75 s) before the spread (600 s) before them, the forecast starts to see them;
    by 08:50 the pool makes all 12 and a margin of 4, ready before 09:00, and the twelve
    assigns of today's burst are all answered at once."""
    app = make_app(POOLS=pool(min_ready=0, boot_timeout=60, forecast={"days": 7, "spread": 600}))
    made_up_history(app, at(2026, 12, 1), 12)
    made_up_history(app, at(2026, 12, 2), 12)
    with time_machine.travel(at(2026, 12, 3, 8, 48, 45), tick=False) as clock:
        client = token_client(app)
        assert target(app).free == 0
        run_pass(app)
        assert kept(app) == 0
        clock.move_to(at(2026, 12, 3, 8, 50))
        found = target(app)
        assert (found.free, found.forecast) == (16, 16)
        # The lead time: a boot (boot_timeout, as none is on record) and one pass.
        assert found.because == (
            "forecast: 12 assigns within 75 s near this time on 2026-12-02, + 4 for chance"
        )
        run_pass(app)
        clock.shift(datetime.timedelta(seconds=30))
        run_pass(app)
        assert levels(app)["free"] == 16
        clock.move_to(at(2026, 12, 3, 9, 0))
        answered = [
            client.put(ASSIGN, json={"user": f"u{n}", "vm_type": "web"}).status_code
            for n in range(12)
        ]
        assert answered == [200] * 12
        # Once the spread has passed the burst's last assign (09:00:44), nothing is.
        clock.move_to(at(2026, 12, 3, 9, 10, 44))
        assert target(app).forecast > 0
        clock.move_to(at(2026, 12, 3, 9, 10, 45))
        assert target(app).forecast == 0


def test_the_forecast_reads_the_time_of_day_on_the_wall_clock_across_a_change(make_app):
    """A burst at 09:00 in Rome on the Saturday before the clocks go forward (08:00 UTC)
    is forecast for 09:00 in Rome on the Sunday (07:00 UTC), not for 08:00 UTC."""
    app = make_app(
        POOLS=pool(
            min_ready=0,
            boot_timeout=60,
            timezone="Europe/Rome",
            forecast={"days": 1, "spread": 300},
        )
    )
    with app.app_context():
        for number in range(9):
            db.session.add(
                Span(
                    assignment_id=number + 1,
                    cloud="default",
                    status=ASSIGNED,
                    holder="ci",
                    pool="web",
                    started_at=at(2026, 3, 28, 8, 0, number),
                    ended_at=at(2026, 3, 28, 9, 0),
                )
            )
        db.session.commit()
    with time_machine.travel(at(2026, 3, 29, 6, 55), tick=False) as clock:
        assert target(app).free == 9 + 3
        clock.move_to(at(2026, 3, 29, 7, 55))
        assert target(app).free == 0


# -- paused and draining -------------------------------------------------------------------


def test_a_paused_pool_creates_nothing_though_below_its_target(make_app):
    app = make_app(POOLS=pool(min_ready=3))
    created = metric("dispatcher_pool_creations_total", pool="web", cloud="default")
    report = run_pass(app, paused=True)
    assert (report.target, report.created) == (3, 0)
    assert kept(app) == 0
    assert metric("dispatcher_pool_creations_total", pool="web", cloud="default") == created
    run_pass(app)
    assert kept(app) == 3


def test_a_draining_pool_retires_its_free_vms_and_leaves_the_assigned_ones(make_app):
    app = make_app(POOLS=pool(min_ready=3, release="reuse"))
    client = token_client(app)
    run_pass(app)
    run_pass(app)
    answer = client.put(ASSIGN, json={"user": "ada", "vm_type": "web"})
    assert answer.status_code == 200
    held = answer.get_json()["id_vm"]
    with app.app_context():
        made = set(db.session.scalars(sqlalchemy.select(Assignment.id_vm)))
    assert len(made) == 3
    report = run_pass(app, draining=True)
    assert (report.target, report.created, report.destroyed) == (0, 0, 2)
    assert levels(app) == {"booting": 0, "free": 0, "assigned": 1}
    with app.app_context():
        listed = clouds.get("default").call_driver("list_nodes")
        running = {node.id for node in listed if node.state != NodeState.TERMINATED}
    assert running & made == {held}  # of the pool's VMs, the cloud runs the assigned one
    run_pass(app, draining=True)
    assert levels(app) == {"booting": 0, "free": 0, "assigned": 1}


# -- the target as GET shows it --------------------------------------------------------


def test_an_override_of_min_ready_replaces_the_schedule_until_cleared(make_app):
    """In office hours the schedule's 4; an admin's min_ready of 2 is the whole floor
    then, office hours or not; cleared, the schedule is back. Draining keeps nothing."""
    app = make_app(POOLS=pool(schedule=OFFICE, timezone="Europe/Rome"))
    with time_machine.travel(at(2026, 12, 7, 10, 0), tick=False):
        admin = token_client(app, "root", roles=("admin",))

        def shown() -> dict:
            return admin.get("/api/v1/pools/web").json["pool"]["target"]

        assert shown()["free"] == 4
        assert admin.patch("/api/v1/pools/web", json={"min_ready": 2}).status_code == 200
        assert shown() == {
            "free": 2,
            "because": "floor: min_ready 2",
            "floor": 2,
            "demand": None,
            "forecast": None,
            "requested": 0,
        }
        assert admin.patch("/api/v1/pools/web", json={"draining": True}).status_code == 200
        assert shown() == {
            "free": 0,
            "because": "draining: no VM is kept",
            "floor": 0,
            "demand": None,
            "forecast": None,
            "requested": 0,
        }
        assert admin.delete("/api/v1/pools/web").status_code == 200
        assert shown()["free"] == 4


def test_a_target_above_max_total_is_max_total_and_says_so(make_app):
    app = make_app(POOLS=pool(min_ready=0, max_total=3, boot_timeout=60, demand={"window": 60}))
    with time_machine.travel(at(2026, 12, 1, 9, 0), tick=False):
        client = token_client(app)
        for _ in range(20):
            client.put(ASSIGN, json={"user": "ada", "vm_type": "web"})
        found = target(app)
    assert (found.free, found.demand) == (3, 30)
    assert found.because == ("max_total 3, below demand: 0.333 assigns/s × 60 s boot × 1.5")


def test_waiting_for_a_paused_pool_says_it_is_paused(make_app):
    app = make_app(POOLS=pool(min_ready=2))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["pools", "pause", "web"]).exit_code == 0
    waited = runner.invoke(args=["worker", "pass", "--job", "pools", "--wait", "0.2"])
    assert waited.exit_code == 1
    assert waited.output.strip().splitlines()[-1] == (
        "Error: after 0.2 s: pool web has 0 free of 2: paused by an admin, it makes no VM"
    )
    assert kept(app) == 0
