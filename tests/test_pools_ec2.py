"""Warm pools on EC2 (moto on loopback) and PostgreSQL: the pool manager as the installed
`dispatcher pools reconcile`, assigns by type through gunicorn with four workers, a cloud that
refuses, two managers at once, and a manager killed between its create calls and its commit."""

import datetime
import itertools
import re
import signal
import subprocess
import time

import helpers
import pytest
import requests
from conftest import (
    cloud_calls,
    ec2_cloud,
    metric,
    token_client,
)
from sqlalchemy import func, select

from dispatcher import create_app, pools
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, BOOTING, FREE, Assignment, AuditEntry
from dispatcher.pools.events import PoolReport
from dispatcher.worker import pool_pass
from harness.ec2_cloud import INSTANCE_LIMIT, INSUFFICIENT_CAPACITY
from harness.gunicorn_server import race

SIZE = "t2.micro"
POOL = "web"
# A whole number of seconds, as Retry-After takes; the command's --wait does not use it.
INTERVAL = 7


@pytest.fixture
def site(tmp_path, postgresql_url):
    """Make the test's Site on its PostgreSQL schema (skipped where no server answers)."""
    made = []

    def make(farm: dict, pools: dict, **settings) -> helpers.Site:
        made.append(
            helpers.Site(tmp_path, postgresql_url, farm, pools, POOLS_INTERVAL=INTERVAL, **settings)
        )
        return made[-1]

    yield make
    for each in made:
        each.close()


def pool(clouds: list[dict], min_ready: int, max_total: int = 10) -> dict:
    return {POOL: {"clouds": clouds, "min_ready": min_ready, "max_total": max_total}}


def on(cloud_name: str, cloud) -> dict:
    """A pool's entry for a cloud: a t2.micro from one of moto's images."""
    return {"cloud": cloud_name, "image": cloud.default_image_id(), "size": SIZE}


def instances(cloud) -> dict[str, dict]:
    """The instances moto runs (pending or running), by id, looked up outside libcloud."""
    reservations = (
        cloud.boto3_client()
        .describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )
        .get("Reservations", [])
    )
    return {
        instance["InstanceId"]: instance
        for reservation in reservations
        for instance in reservation["Instances"]
    }


def tags(instance: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def addresses(instance: dict) -> tuple[list[str], list[str]]:
    """(public, private) addresses of an instance as moto holds it."""
    public = [instance["PublicIpAddress"]] if instance.get("PublicIpAddress") else []
    return public, [instance["PrivateIpAddress"]]


def succeeded(done: subprocess.CompletedProcess) -> str:
    """The command exited 0; what it printed."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_reconcile_fills_the_pool_then_four_workers_hand_out_each_vm_once(site, cloud):
    """One reconcile makes the pool's three VMs, tagged for it in EC2; three concurrent assigns
    by type through four workers get three different VMs, a fourth gets 503 with Retry-After,
    and the next pass makes three more."""
    deployed = site(
        {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()},
        pool([on("aws", cloud)], min_ready=3),
    )

    succeeded(deployed.reconcile("--wait", "60"))

    assert cloud.count("RunInstances") == 3
    rows = deployed.rows()
    assert [(row.status, row.pool, row.cloud) for row in rows] == [(FREE, POOL, "aws")] * 3
    running = instances(cloud)
    assert sorted(running) == sorted(row.id_vm for row in rows)
    for row in rows:
        marks = tags(running[row.id_vm])
        assert marks["dispatcher-pool"] == POOL
        assert re.fullmatch(r"[0-9a-f]{12}", marks["dispatcher-creation"])
        assert marks["dispatcher-creation"] == row.creation_id

    server = deployed.gunicorn()
    users = ["ann", "bob", "cy"]
    answers = race(
        3, lambda index, session: server.assign(session, deployed.token, users[index], POOL)
    )

    assert [answer.status_code for answer in answers] == [200] * 3, [a.text for a in answers]
    bodies = [answer.json() for answer in answers]
    assert sorted(body["id_vm"] for body in bodies) == sorted(running)
    by_id = {row.id_vm: row for row in rows}
    for body in bodies:
        assert body["status"] == "ok"
        assert body["result"] == f"Node {body['id_vm']} assigned"
        assert body["cloud"] == "aws"
        assert body["id"] == by_id[body["id_vm"]].id
        assert body["hostname"] == f"{POOL}-{by_id[body['id_vm']].creation_id}"
        public, private = addresses(running[body["id_vm"]])
        assert (body["public_ips"], body["private_ips"]) == (public, private)
        assert private
    holders = {(row.id_vm, row.status, row.user) for row in deployed.rows()}
    assert holders == {
        (body["id_vm"], ASSIGNED, user) for body, user in zip(bodies, users, strict=True)
    }

    with requests.Session() as session:
        empty = server.assign(session, deployed.token, "dee", POOL)
    assert empty.status_code == 503, empty.text
    assert empty.headers["Retry-After"] == str(INTERVAL)
    body = empty.json()
    assert (body["status"], body["status_code"]) == ("error", 503)
    assert body["message"].startswith(f"pool {POOL} has no free VM"), body["message"]
    assert [row.status for row in deployed.rows()] == [ASSIGNED] * 3

    succeeded(deployed.reconcile())

    assert cloud.count("RunInstances") == 6
    statuses = sorted(row.status for row in deployed.rows())
    assert statuses == sorted([ASSIGNED] * 3 + [BOOTING] * 3)
    assert len(instances(cloud)) == 6


def test_a_refusing_first_cloud_spills_the_pool_over_to_the_next(site, cloud, refusing_port):
    """The pool's first cloud refuses every connection: reconcile fills the pool on the second,
    and the pool's status names the first one's failure, without its credentials."""
    down = ec2_cloud(refusing_port, region="us-east-1", signature_version="4")
    farm = {"default": {"ENGINE": "dummy"}, "down": down, "aws": cloud.farm_entry()}
    deployed = site(farm, pool([on("down", cloud), on("aws", cloud)], min_ready=2))
    started = datetime.datetime.now(datetime.UTC)

    done = deployed.reconcile("--wait", "60")

    succeeded(done)
    assert cloud.count("RunInstances") == 2
    rows = deployed.rows()
    assert [(row.cloud, row.status) for row in rows] == [("aws", FREE)] * 2
    assert sorted(instances(cloud)) == sorted(row.id_vm for row in rows)
    response = token_client(deployed.app).get(f"/api/v1/pools/{POOL}")
    assert response.status_code == 200, response.json
    shown = response.json["pool"]
    assert (shown["name"], shown["free"], shown["booting"]) == (POOL, 2, 0)
    first, second = shown["clouds"]
    assert (first["cloud"], first["free"], first["booting"]) == ("down", 0, 0)
    assert (second["cloud"], second["free"], second["last_error"]) == ("aws", 2, None)
    error = first["last_error"]
    assert error is not None
    assert "refused" in error["message"].lower(), error
    failed_at = datetime.datetime.fromisoformat(error["time"])
    assert started <= failed_at <= datetime.datetime.now(datetime.UTC)
    for secret in (down["USER"], down["PASSWORD"], cloud.key, cloud.secret):
        assert secret not in response.text
        assert secret not in done.stdout + done.stderr


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_two_managers_at_once_make_the_pool_once(site, cloud):
    """Two reconciles started together: the one with the pool's lock makes the four VMs, the
    other skips the pool meanwhile; four RunInstances in all, four rows, both exit 0."""
    deployed = site(
        {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()},
        pool([on("aws", cloud)], min_ready=4),
        POOLS_CREATE_CONCURRENCY=4,
    )

    # The answers wait until one manager has found the pool taken, so that the two passes
    # overlap for certain: a second manager that came after the first would prove nothing.
    # Two managers both creating (more than four held) end the wait too, and fail below.
    def skipped() -> bool:
        return any("another manager is on it" in deployed.output(f"m{i}") for i in (1, 2))

    with cloud.hold("RunInstances") as held:
        managers = [deployed.start_reconcile("--wait", "60", name=f"m{i}") for i in (1, 2)]
        wait_for(lambda: skipped() or held.count > 4, 60, "a manager skips the pool")
        assert held.wait(4, timeout=60), held.count
    codes = [manager.wait(timeout=60) for manager in managers]

    outputs = [deployed.output(f"m{i}") for i in (1, 2)]
    assert codes == [0, 0], outputs
    assert cloud.count("RunInstances") == 4
    live = deployed.live()
    assert [row.status for row in live] == [FREE] * 4
    assert sorted(row.id_vm for row in live) == sorted(instances(cloud))
    created = [int(n) for out in outputs for n in re.findall(r"(\d+) created", out)]
    assert sum(created) == 4, outputs


def test_an_override_through_the_api_rules_the_next_pass_of_another_process(site, cloud):
    """An admin's PATCH through this process: the worker, a process of its own started
    afterwards (as after a restart), sizes the pool by it; paused, it creates nothing though
    an assign took a VM; an app started anew shows the override; once it is cleared the
    next worker process goes back to POOLS (one VM wanted: the two free stay, a surplus
    kept for the scale_down_delay)."""
    deployed = site(
        {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()},
        pool([on("aws", cloud)], min_ready=1),
    )
    succeeded(deployed.reconcile("--wait", "60"))
    assert cloud.count("RunInstances") == 1
    admin = token_client(deployed.app, "root", roles=("admin",))

    changed = admin.patch("/api/v1/pools/web", json={"min_ready": 3})
    assert changed.status_code == 200, changed.json
    assert changed.json["pool"]["target"]["free"] == 3

    output = succeeded(deployed.reconcile("--wait", "60"))
    assert "2 created" in output, output
    assert cloud.count("RunInstances") == 3
    assert [row.status for row in deployed.live()] == [FREE] * 3

    assert admin.patch("/api/v1/pools/web", json={"paused": True}).status_code == 200
    agent = token_client(deployed.app, "ana")
    taken = agent.put("/api/v1/vm/action/assign", json={"vm_type": "web", "user": "ana"})
    assert taken.status_code == 200, taken.json
    output = succeeded(deployed.reconcile())
    assert "0 created" in output, output
    assert cloud.count("RunInstances") == 3  # paused: the VM taken is not replaced

    restarted = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": deployed.app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": helpers.SITE_SECRET_KEY,
            "SECURITY_PASSWORD_SALT": helpers.SITE_PASSWORD_SALT,
            "CLOUD_FARM": deployed.app.config["CLOUD_FARM"],
            "POOLS": deployed.app.config["POOLS"],
        }
    )
    shown = token_client(restarted, "root", roles=("admin",)).get("/api/v1/pools/web").json
    with restarted.app_context():
        db.engine.dispose()
    override = shown["pool"]["override"]
    assert (override["min_ready"], override["paused"], override["set_by"]) == (3, True, "root")
    assert shown["pool"]["configured"] == {"min_ready": 1, "max_total": 10}

    assert admin.delete("/api/v1/pools/web").status_code == 200
    output = succeeded(deployed.reconcile())
    assert "0 created, 0 promoted, 0 destroyed" in output, output
    assert cloud.count("RunInstances") == 3
    assert sorted(row.status for row in deployed.live()) == [FREE, FREE, ASSIGNED]


def test_vms_of_a_manager_killed_before_its_commit_are_adopted_not_made_again(site, cloud):
    """A manager SIGKILLed once EC2 has run its three instances and before it learns their ids:
    the ledger has none of them; the next reconcile adopts the three (by their tags) and runs
    no instance more, and the ledger then holds what EC2 runs."""
    deployed = site(
        {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()},
        pool([on("aws", cloud)], min_ready=3),
        # All three create calls in flight at once, each answer held back until the kill.
        POOLS_CREATE_CONCURRENCY=3,
    )

    with cloud.hold("RunInstances") as held:
        killed = deployed.start_reconcile("--wait", "60")
        assert held.wait(3, timeout=60), deployed.output()
        killed.kill()
        assert killed.wait(timeout=30) == -signal.SIGKILL

    made = instances(cloud)
    assert len(made) == 3
    assert {tags(instance)["dispatcher-pool"] for instance in made.values()} == {POOL}
    assert deployed.rows() == []
    with deployed.engine.connect() as conn:
        known = conn.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.id_vm.in_(list(made)))
        )
    assert known == 0

    printed = succeeded(deployed.reconcile("--wait", "60"))

    assert "3 adopted" in printed, printed
    assert cloud.count("RunInstances") == 3
    adopted = deployed.history("adopt")
    assert sorted(entry.id_vm for entry in adopted) == sorted(made)
    assert {(e.caller, e.vm_type, e.outcome, e.cloud) for e in adopted} == {
        ("pool-manager", POOL, "ok", "aws")
    }
    assert deployed.history("create") == []
    live = deployed.live()
    assert sorted(row.id_vm for row in live) == sorted(instances(cloud)) == sorted(made)
    assert [row.status for row in live] == [FREE] * 3
    for row in live:
        assert row.creation_id == tags(made[row.id_vm])["dispatcher-creation"]


# -- sizes to fall back on -----------------------------------------------------------------

# The pool's second cloud: moto's EC2 in another region, with a size of its own.
SPARE_REGION = "us-west-2"
SPARE_SIZE = "t2.small"
FALLBACKS = "dispatcher_pool_size_fallbacks_total"


def sized_pool_app(make_app, cloud, sizes: list[str]):
    """An app (SQLite, in this process) whose pool web (2 ready) has the cloud aws with
    ``sizes``, then the cloud spare."""
    image = cloud.default_image_id()
    farm = {
        "default": {"ENGINE": "dummy"},
        "aws": cloud.farm_entry(),
        "spare": cloud.farm_entry(region=SPARE_REGION),
    }
    clouds = [
        {"cloud": "aws", "image": image, "size": sizes},
        {"cloud": "spare", "image": image, "size": SPARE_SIZE},
    ]
    return make_app(CLOUD_FARM=farm, POOLS=pool(clouds, min_ready=2))


def one_pass(app) -> PoolReport:
    with app.app_context():
        [report] = pool_pass.run(pools.every())
    return report


def created_messages(app) -> list[tuple[str, str, str]]:
    """The history's create entries: (cloud, id_vm, message), oldest first."""
    with app.app_context():
        found = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "create").order_by(AuditEntry.id)
        )
        return [(entry.cloud, entry.id_vm, entry.message) for entry in found]


def pool_rows(app) -> list[tuple[str, str, str]]:
    """The pool's rows: (cloud, id_vm, status), in the order they were made."""
    with app.app_context():
        found = db.session.scalars(
            select(Assignment).where(Assignment.pool == POOL).order_by(Assignment.id)
        )
        return [(row.cloud, row.id_vm, row.status) for row in found]


def test_a_size_refused_for_capacity_is_followed_by_the_next_size_on_the_same_cloud(
    make_app, cloud
):
    """aws refuses every m5.large for capacity: a pass makes the pool's two VMs on aws as
    t3.micro, asks the cloud spare for none, says so in the history and its report, and counts
    one fallback from m5.large."""
    app = sized_pool_app(make_app, cloud, ["m5.large", "t3.micro"])
    fallbacks = metric(FALLBACKS, pool=POOL, cloud="aws", size="m5.large")
    spare_creations = cloud_calls("spare", "create_node")

    with cloud.refuse("RunInstances", *INSUFFICIENT_CAPACITY, InstanceType="m5.large"):
        done = app.test_cli_runner().invoke(args=["worker", "pass", "--job", "pools"])

    assert (done.exit_code, done.output) == (
        0,
        f"pool {POOL}: 2 created, 0 promoted, 0 destroyed, 0 adopted; 0 free, 2 booting, "
        "0 assigned; aws: 2 created with size t3.micro, after m5.large was refused for capacity\n",
    )
    # Up to POOLS_CREATE_CONCURRENCY m5.large were in flight when the first was refused; every
    # one came before the first t3.micro.
    asked = [params["InstanceType"] for params in cloud.requests("RunInstances")]
    assert asked[-2:] == ["t3.micro", "t3.micro"] and set(asked[:-2]) == {"m5.large"}, asked
    made = instances(cloud)
    assert sorted(i["InstanceType"] for i in made.values()) == ["t3.micro", "t3.micro"]
    rows = pool_rows(app)
    assert sorted(rows) == sorted(("aws", node_id, BOOTING) for node_id in made)
    assert created_messages(app) == [
        (
            "aws",
            node_id,
            f"Node {node_id} created (size t3.micro, after m5.large was refused for capacity), "
            "booting",
        )
        for _, node_id, _ in rows
    ]
    assert cloud_calls("spare", "create_node") == spare_creations
    assert cloud.count("RunInstances", InstanceType=SPARE_SIZE) == 0
    assert metric(FALLBACKS, pool=POOL, cloud="aws", size="m5.large") == fallbacks + 1
    shown = token_client(app).get(f"/api/v1/pools/{POOL}").json["pool"]["clouds"]
    assert [(c["cloud"], c["booting"], c["last_error"]) for c in shown] == [
        ("aws", 2, None),
        ("spare", 0, None),
    ]


def test_a_cloud_refusing_every_size_for_capacity_spills_the_pool_over_to_the_next(make_app, cloud):
    """aws refuses m5.large for capacity, then t3.micro for its instance limit: the pool's two
    VMs are made on spare, aws's failure names both sizes, and each refusal that led to another
    size of aws is counted, the last (which led to the next cloud) as a spill-over."""
    app = sized_pool_app(make_app, cloud, ["m5.large", "t3.micro"])
    counted = {
        size: metric(FALLBACKS, pool=POOL, cloud="aws", size=size)
        for size in ("m5.large", "t3.micro")
    }
    spills = metric("dispatcher_pool_spillovers_total", pool=POOL, cloud="aws")

    with (
        cloud.refuse("RunInstances", *INSUFFICIENT_CAPACITY, InstanceType="m5.large"),
        cloud.refuse("RunInstances", *INSTANCE_LIMIT, InstanceType="t3.micro"),
    ):
        report = one_pass(app)

    code, message, _ = INSTANCE_LIMIT
    failure = (
        "creating a VM failed (size t3.micro, after m5.large was refused for capacity): "
        f"aws: {code}: {message}"
    )
    assert (report.created, report.fallbacks, report.problems) == (2, [], [f"aws: {failure}"])
    asked = [params["InstanceType"] for params in cloud.requests("RunInstances")]
    in_turn = [size for size, _ in itertools.groupby(asked)]
    assert in_turn == ["m5.large", "t3.micro", SPARE_SIZE] and asked.count(SPARE_SIZE) == 2, asked
    assert instances(cloud) == {}  # nothing runs on aws
    rows = pool_rows(app)
    assert [(c, status) for c, _, status in rows] == [("spare", BOOTING)] * 2
    assert created_messages(app) == [(c, i, f"Node {i} created, booting") for c, i, _ in rows]
    assert {size: metric(FALLBACKS, pool=POOL, cloud="aws", size=size) for size in counted} == {
        "m5.large": counted["m5.large"] + 1,
        "t3.micro": counted["t3.micro"],
    }
    assert metric("dispatcher_pool_spillovers_total", pool=POOL, cloud="aws") == spills + 1
    shown = token_client(app).get(f"/api/v1/pools/{POOL}").json["pool"]["clouds"]
    assert shown[0]["cloud"] == "aws" and shown[0]["last_error"]["message"] == failure


def test_a_size_refused_for_another_reason_fails_the_cloud_as_before(make_app, cloud):
    """aws answers the m5.large with an error that is no capacity refusal: its next size is not
    tried, aws's failure is on record, and the pool's VMs are made on spare."""
    app = sized_pool_app(make_app, cloud, ["m5.large", "t3.micro"])
    fallbacks = metric(FALLBACKS, pool=POOL, cloud="aws", size="m5.large")
    unsupported = ("Unsupported", "The requested configuration is currently not supported.")

    with cloud.refuse("RunInstances", *unsupported, InstanceType="m5.large"):
        report = one_pass(app)

    failure = "creating a VM failed: aws: Unsupported: " + unsupported[1]
    assert (report.created, report.fallbacks, report.problems) == (2, [], [f"aws: {failure}"])
    assert cloud.count("RunInstances", InstanceType="t3.micro") == 0
    assert cloud.count("RunInstances", InstanceType=SPARE_SIZE) == 2
    assert [row[0] for row in pool_rows(app)] == ["spare", "spare"]
    assert metric(FALLBACKS, pool=POOL, cloud="aws", size="m5.large") == fallbacks
    shown = token_client(app).get(f"/api/v1/pools/{POOL}").json["pool"]["clouds"]
    assert shown[0]["last_error"]["message"] == failure
