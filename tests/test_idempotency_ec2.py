"""Idempotency-Key against moto's EC2: a client cut off before it reads the answer sends the
request again and it runs once; concurrent requests with one key through gunicorn's four
workers on PostgreSQL run once; firewall changes and a cloud's failure through the test
client."""

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import pytest
import requests
import sqlalchemy
from conftest import CHEAP_PASSWORD_HASH, prepare_database, settings_file, token_client
from helpers import Gunicorn
from sqlalchemy import select

from dispatcher import auth, create_app
from dispatcher.extensions import db
from dispatcher.models import AGENT, ASSIGNED, FREE, Assignment, AuditEntry, IdempotencyKey
from harness.gunicorn_server import race

SECRET_KEY = "idempotency-ec2-test-secret-key"
PASSWORD_SALT = "idempotency-ec2-test-password-salt"
SIZE = "t2.micro"
# Seconds a cut-off client waits for its answer: the answer is held back far longer.
CUT_OFF = 1


class Site:
    """The dispatcher under gunicorn (four workers) on a PostgreSQL schema, with moto's EC2 as
    cloud `aws`, and an agent's token."""

    def __init__(self, folder: Path, database_url: str, cloud):
        farm = {"default": {"ENGINE": "dummy"}, "fake_driver": {"ENGINE": "dummy"}}
        farm["aws"] = cloud.farm_entry()
        self.app = prepare_database(
            create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": database_url,
                    "SECRET_KEY": SECRET_KEY,
                    "SECURITY_PASSWORD_SALT": PASSWORD_SALT,
                    "CLOUD_FARM": farm,
                    **CHEAP_PASSWORD_HASH,
                }
            )
        )
        with self.app.app_context():
            self.token = auth.create_user("retrier", "retrier-password", roles=(AGENT,))
            self.token = self.token.get_auth_token()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DISPATCHER_SECRET_KEY": SECRET_KEY,
            "DISPATCHER_PASSWORD_SALT": PASSWORD_SALT,
            "DISPATCHER_SETTINGS": str(settings_file(folder / "settings.py", CLOUD_FARM=farm)),
            "DISPATCHER_INSTANCE_PATH": str(folder / "instance"),
        }
        self.engine = sqlalchemy.create_engine(database_url)
        self.server = Gunicorn(folder, env)
        self.server.warm_up(self.token)

    def send(self, method: str, path: str, body: dict, key: str, timeout: float = 30, **kwargs):
        """``method`` ``path`` (below /api/v1) with ``body``, the token and the key."""
        return requests.request(
            method,
            f"{self.server.base}{path}",
            json=body,
            headers={"X-Auth-Token": self.token, "Idempotency-Key": key},
            timeout=timeout,
            **kwargs,
        )

    def until_replayed(self, method: str, path: str, body: dict, key: str) -> requests.Response:
        """Send the request again until its answer is the replay; every answer before it
        must be the 409 of a request still running."""
        deadline = time.monotonic() + 60
        while True:
            response = self.send(method, path, body, key)
            if response.headers.get("Idempotent-Replayed") == "true":
                return response
            assert response.status_code == 409, response.text
            assert response.headers["Retry-After"] == "1"
            if time.monotonic() > deadline:
                pytest.fail(f"no replay within 60 s:\n{self.server.output()}")
            time.sleep(0.1)

    def select(self, query) -> list:
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def close(self) -> None:
        self.server.stop()
        print(self.server.output())  # shown when the test failed
        with self.app.app_context():
            db.engine.dispose()
        self.engine.dispose()


@pytest.fixture
def site(tmp_path, postgresql_url, cloud):
    made = Site(tmp_path, postgresql_url, cloud)
    yield made
    made.close()


def instances(cloud) -> list[str]:
    """The ids of the instances moto runs (pending or running), asked outside libcloud."""
    reservations = cloud.boto3_client().describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def cut_off(site: Site, method: str, path: str, body: dict, key: str) -> None:
    """Send the request and give up on its answer before it comes."""
    with pytest.raises(requests.ReadTimeout):
        site.send(method, path, body, key, timeout=(10, CUT_OFF))


@pytest.mark.slow
def test_a_start_cut_off_then_sent_again_runs_one_instance(site, cloud):
    """The client stops waiting while RunInstances is under way; its repeat meanwhile is a
    409, and once the first request ends the repeat is its answer: one RunInstances, and
    the answer names the one instance, which the ledger holds."""
    body = {"name": "web-1", "image": cloud.default_image_id(), "size": SIZE}
    cloud.clear()

    with cloud.hold("RunInstances") as held:
        cut_off(site, "POST", "/vm/start/aws", body, "start-web-1")
        assert held.wait(1, timeout=60), site.server.output()
        meanwhile = site.send("POST", "/vm/start/aws", body, "start-web-1")
        assert meanwhile.status_code == 409, meanwhile.text
        assert meanwhile.headers["Retry-After"] == "1"
    replayed = site.until_replayed("POST", "/vm/start/aws", body, "start-web-1")

    assert replayed.status_code == 200, replayed.text
    node = replayed.json()["nodes"]
    assert instances(cloud) == [node["id"]]
    assert cloud.count("RunInstances") == 1
    stored = site.select(select(IdempotencyKey.status_code, IdempotencyKey.body))
    assert [(status, json.loads(text)["nodes"]["id"]) for status, text in stored] == [
        (200, node["id"])
    ]
    ledger = site.select(select(Assignment.id_vm, Assignment.status, Assignment.cloud))
    assert ledger == [(node["id"], FREE, "aws")]


@pytest.mark.slow
def test_an_assign_cut_off_then_sent_again_assigns_once(site, cloud):
    """An assign of an instance the ledger does not know yet (looked up in EC2, held back):
    cut off, repeated until replayed; one ASSIGNED row, one audit entry."""
    reservation = cloud.boto3_client().run_instances(
        ImageId=cloud.default_image_id(), InstanceType=SIZE, MinCount=1, MaxCount=1
    )
    instance_id = reservation["Instances"][0]["InstanceId"]
    body = {"node": instance_id, "user": "alice", "vm_type": "app"}

    with cloud.hold("DescribeInstances") as held:
        cut_off(site, "PUT", "/vm/action/assign/aws", body, "assign-alice")
        assert held.wait(1, timeout=60), site.server.output()
        meanwhile = site.send("PUT", "/vm/action/assign/aws", body, "assign-alice")
        assert meanwhile.status_code == 409, meanwhile.text
    replayed = site.until_replayed("PUT", "/vm/action/assign/aws", body, "assign-alice")

    rows = site.select(select(Assignment.id, Assignment.id_vm, Assignment.status, Assignment.user))
    assert [row[1:] for row in rows] == [(instance_id, ASSIGNED, "alice")]
    assert replayed.json() == {
        "status": "ok",
        "id_vm": instance_id,
        "id": rows[0][0],
        "result": f"Node {instance_id} assigned",
    }
    entries = site.select(select(AuditEntry.action, AuditEntry.id_vm, AuditEntry.outcome))
    assert entries == [("assign", instance_id, "ok")]


@pytest.mark.slow
def test_two_concurrent_starts_with_one_key_run_once(site, cloud):
    """Two requests with one key released at once, served by two workers: one runs (and is
    held in RunInstances), the other answers 409 meanwhile; then the key replays that VM."""
    body = {"name": "web-1", "image": cloud.default_image_id(), "size": SIZE}
    cloud.clear()

    barrier = threading.Barrier(2)

    def send(index):
        barrier.wait(timeout=30)
        return site.send("POST", "/vm/start/aws", body, "k")

    with ThreadPoolExecutor(max_workers=2) as pool:
        with cloud.hold("RunInstances") as held:
            futures = [pool.submit(send, index) for index in range(2)]
            # One answers while the other is held; had both run, both would be held.
            done, _ = wait(futures, timeout=60, return_when=FIRST_COMPLETED)
            assert len(done) == 1, site.server.output()
            meanwhile = done.pop().result()
            assert meanwhile.status_code == 409, meanwhile.text
            assert meanwhile.headers["Retry-After"] == "1"
            assert held.wait(1, timeout=60), site.server.output()
        answers = [future.result(timeout=60) for future in futures]

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 409], [answer.text for answer in answers]
    ran = next(answer for answer in answers if answer.status_code == 200)
    assert "Idempotent-Replayed" not in ran.headers
    assert cloud.count("RunInstances") == 1
    assert instances(cloud) == [ran.json()["nodes"]["id"]]
    assert len(site.server.worker_pids("/api/v1/vm/start/aws", 2)) == 2
    replayed = site.send("POST", "/vm/start/aws", body, "k")
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == ran.content


@pytest.mark.slow
def test_eight_concurrent_assigns_with_one_key_run_once(site, cloud):
    """Eight requests with one key at once: one assign runs, the others answer 409 or the
    replay; never a second run (which would answer "node ... is assigned" and be recorded)."""
    reservation = cloud.boto3_client().run_instances(
        ImageId=cloud.default_image_id(), InstanceType=SIZE, MinCount=1, MaxCount=1
    )
    instance_id = reservation["Instances"][0]["InstanceId"]
    body = {"node": instance_id, "user": "bob", "vm_type": "app"}

    answers = race(
        8, lambda index, session: site.send("PUT", "/vm/action/assign/aws", body, "one-key")
    )

    ran = [a for a in answers if a.status_code == 200 and "Idempotent-Replayed" not in a.headers]
    assert len(ran) == 1, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.headers["Retry-After"] == "1", answer.text
        else:
            assert (answer.status_code, answer.content) == (200, ran[0].content)
    assert site.select(select(Assignment.id_vm, Assignment.status, Assignment.user)) == [
        (instance_id, ASSIGNED, "bob")
    ]
    assert site.select(select(AuditEntry.action, AuditEntry.outcome)) == [("assign", "ok")]


# Through the test client: the firewall, and a cloud that fails.


@pytest.fixture
def client(make_app, cloud):
    farm = {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()}
    return token_client(make_app(CLOUD_FARM=farm))


def test_a_repeated_group_creation_makes_one_group(client, cloud):
    body = {"name": "web", "description": "web servers"}
    first = client.post("/api/v1/fw/aws", json=body, headers={"Idempotency-Key": "fw-web"})
    again = client.post("/api/v1/fw/aws", json=body, headers={"Idempotency-Key": "fw-web"})

    assert first.status_code == 200, first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["group"]["id"] == first.json["group"]["id"]
    assert cloud.count("CreateSecurityGroup") == 1


def test_opening_a_port_by_put_then_post_with_one_key_is_422(client, cloud):
    """fw/open takes PUT and POST: the method is part of the request the key names."""
    made = client.post("/api/v1/fw/aws", json={"name": "web", "description": "web servers"})
    group = made.json["group"]
    rule = {"group": group["id"], "from_port": 22}
    headers = {"Idempotency-Key": "open-22"}

    opened = client.put("/api/v1/fw/open/aws", json=rule, headers=headers)
    by_post = client.post("/api/v1/fw/open/aws", json=rule, headers=headers)

    assert opened.json["result"] == "opened"
    assert by_post.status_code == 422
    assert cloud.count("AuthorizeSecurityGroupIngress") == 1


def test_a_cloud_failure_is_not_kept_and_the_retry_asks_the_cloud_again(client, cloud):
    """EC2 refuses RunInstances (502): the key is given back, and the retry with it runs
    again (a second RunInstances), not a replay."""
    body = {
        "name": "web-1",
        "image": cloud.default_image_id(),
        "size": SIZE,
        "metadata": {f"tag-{number}": "x" for number in range(60)},
    }
    headers = {"Idempotency-Key": "too-many-tags"}

    first = client.post("/api/v1/vm/start/aws", json=body, headers=headers)
    again = client.post("/api/v1/vm/start/aws", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (502, 502)
    assert "Idempotent-Replayed" not in again.headers
    assert cloud.count("RunInstances") == 2
    with client.application.app_context():
        assert db.session.scalars(select(IdempotencyKey)).all() == []
