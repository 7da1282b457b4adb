"""moto's EC2 emulation on a loopback port, answering libcloud as real EC2 does, with a request log.

Use it as a context manager (the tests' ``cloud`` fixture, in conftest.py, does)::

    with Ec2Cloud() as cloud:
        app.config["CLOUD_FARM"] = {"default": cloud.farm_entry()}
        ...
        assert cloud.count("DescribeImages") == 0

The CLOUD_FARM entry (what ``farm_entry()`` returns) is::

    {
        "ENGINE": "ec2",
        "USER": Ec2Cloud.key,
        "PASSWORD": Ec2Cloud.secret,
        "EXTRA_PARAMS": {
            "host": "127.0.0.1",
            "port": cloud.port,
            "secure": False,            # plain HTTP
            "region": "us-east-1",
            "signature_version": "4",   # with libcloud's default (2) moto answers as S3
        },
    }

moto keeps its state in the process, not per server: one ``Ec2Cloud`` at a time, and starting
one (or ``reset()``) wipes whatever moto held.

``hold(action)`` keeps moto's answers to one Action back from the client, so that a test can
act between what the cloud did and what the client learns of it (kill the client, say)::

    with cloud.hold("RunInstances") as held:
        client = start_the_client()
        assert held.wait(3, timeout=60)   # moto has run three instances, nobody knows yet
        client.kill()
    # leaving the block sends the answers held, to whoever still listens

``refuse(action, code, message, status, **params)`` answers one Action (those of its requests
that carry ``params``) with one of EC2's errors instead of moto's answer, while the block runs::

    with cloud.refuse("RunInstances", *INSUFFICIENT_CAPACITY, InstanceType="m5.large"):
        ...   # every RunInstances of an m5.large is refused for capacity, none is run
"""

import contextlib
import http.client
import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from libcloud.compute.providers import get_driver
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

HOST = "127.0.0.1"
REGION = "us-east-1"

# moto drops the trailing slash of the namespace; libcloud looks elements up with it.
MOTO_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
EC2_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'

# Every action libcloud 3.9's EC2 driver answers through _get_boolean, i.e. reads
# `<return>true</return>`, which real EC2 sends and moto leaves out.
BOOLEAN_ACTIONS = frozenset(
    {
        "AttachInternetGateway",
        "AuthorizeSecurityGroupEgress",
        "AuthorizeSecurityGroupIngress",
        "CreatePlacementGroup",
        "CreateRoute",
        "CreateTags",
        "DeleteInternetGateway",
        "DeleteKeyPair",
        "DeleteNetworkInterface",
        "DeletePlacementGroup",
        "DeleteRoute",
        "DeleteRouteTable",
        "DeleteSecurityGroup",
        "DeleteSnapshot",
        "DeleteSubnet",
        "DeleteTags",
        "DeleteVolume",
        "DeleteVpc",
        "DeregisterImage",
        "DetachInternetGateway",
        "DetachNetworkInterface",
        "DisassociateAddress",
        "DisassociateRouteTable",
        "ModifyImageAttribute",
        "ModifyInstanceAttribute",
        "ModifySnapshotAttribute",
        "ModifySubnetAttribute",
        "RebootInstances",
        "ReleaseAddress",
        "ReplaceRoute",
        "RevokeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
    }
)
ROOT_END = re.compile(rb"</\w+Response>\s*$")

# EC2's refusals for capacity and quota, as refuse() takes them: (code, message, HTTP status).
INSUFFICIENT_CAPACITY = (
    "InsufficientInstanceCapacity",
    "We currently do not have sufficient capacity in the Availability Zone you requested.",
    500,
)
INSTANCE_LIMIT = (
    "InstanceLimitExceeded",
    "You have requested more instances than your current instance limit allows.",
    400,
)

# Requests from boto3_client() carry this header: they are the test's own look-ups, so they
# are neither rewritten nor logged.
PROBE_HEADER = "X-Ec2-Cloud-Probe"
PROBE_ENVIRON = "HTTP_" + PROBE_HEADER.upper().replace("-", "_")


class Call(NamedTuple):
    """One request that reached moto: its Action and every parameter, as the client sent it."""

    action: str
    params: dict[str, str]


class Held:
    """Answers to one Action that moto has made and the wrapper keeps back until ``release()``
    (``Ec2Cloud.hold``)."""

    def __init__(self, action: str) -> None:
        self.action = action
        self._condition = threading.Condition()
        self._count = 0
        self._released = False

    @property
    def count(self) -> int:
        """How many answers reached the hold so far, sent or not."""
        with self._condition:
            return self._count

    def wait(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` answers are held; whether they were within ``timeout`` seconds."""
        with self._condition:
            return self._condition.wait_for(lambda: self._count >= count, timeout)

    def release(self) -> None:
        """Send the answers held, and let every later one through."""
        with self._condition:
            self._released = True
            self._condition.notify_all()

    def _arrive(self) -> None:
        """In the serving thread, with moto's answer made: block until released."""
        with self._condition:
            self._count += 1
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._released)


class Refusal(NamedTuple):
    """An error EC2 answers instead of moto to one Action's requests with some parameters
    (``Ec2Cloud.refuse``)."""

    action: str
    params: dict[str, str]
    status: int
    body: bytes

    def matches(self, action: str, params: dict[str, str]) -> bool:
        return action == self.action and all(params.get(k) == v for k, v in self.params.items())


class _QuietHandler(MotoRequestHandler):
    """moto's request handler without the access log on stderr."""

    def log_request(self, *args: Any) -> None:
        pass


class Ec2Cloud:
    """moto's EC2 served over HTTP on loopback, wrapped so that libcloud sees real EC2."""

    key = "AKIDMOTOEC2CLOUD0001"
    secret = "moto-ec2-cloud-secret"
    region = REGION

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._boto3: Any = None
        self._holds: dict[str, Held] = {}
        self._refusals: list[Refusal] = []

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> "Ec2Cloud":
        """Serve on a free loopback port, with moto's state wiped and its EC2 backend made."""
        self._server = make_server(HOST, 0, self._app, threaded=True, request_handler=_QuietHandler)
        # A short poll interval: shutdown() waits for one.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.reset()
        # moto builds its EC2 backend at the first request of the process: about 1.5 s, more
        # on a busy machine, which the first test would pay within its CLOUD_TIMEOUT. Now.
        self.boto3_client().describe_regions()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = self._boto3 = None

    def __enter__(self) -> "Ec2Cloud":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The loopback port served."""
        return self._server.server_port

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return f"http://{HOST}:{self.port}"

    def reset(self) -> None:
        """Wipe moto's state (all of it, process-wide) and the request log."""
        # Straight over loopback: urllib would honour a proxy set in the environment.
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request("POST", "/moto-api/reset")
            connection.getresponse().read()
        finally:
            connection.close()
        self.clear()

    # -- clients -----------------------------------------------------------------------

    def farm_entry(self, **extra_params: Any) -> dict[str, Any]:
        """The CLOUD_FARM entry for this server; ``extra_params`` add to its EXTRA_PARAMS."""
        return {
            "ENGINE": "ec2",
            "USER": self.key,
            "PASSWORD": self.secret,
            "EXTRA_PARAMS": {
                "host": HOST,
                "port": self.port,
                "secure": False,
                "region": self.region,
                "signature_version": "4",
                **extra_params,
            },
        }

    def driver(self, **extra_params: Any) -> Any:
        """A libcloud EC2 driver built from ``farm_entry()``."""
        entry = self.farm_entry(**extra_params)
        return get_driver(entry["ENGINE"])(
            entry["USER"], entry["PASSWORD"], **entry["EXTRA_PARAMS"]
        )

    def boto3_client(self) -> Any:
        """A boto3 EC2 client on this server; its requests are neither rewritten nor logged."""
        if self._boto3 is not None:
            return self._boto3
        client = boto3.client(
            "ec2",
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 1}),
        )

        def tag(request: Any, **_: Any) -> None:
            request.headers[PROBE_HEADER] = "1"

        client.meta.events.register("before-sign.ec2.*", tag)
        self._boto3 = client
        return client

    # -- state -------------------------------------------------------------------------

    def default_image_id(self) -> str:
        """The id of one of the public AMIs moto ships."""
        images = self.boto3_client().describe_images(
            Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn-ami-*"]}]
        )["Images"]
        return sorted(image["ImageId"] for image in images)[0]

    def add_public_images(self, n: int, name: str = "public-image") -> list[str]:
        """Register ``n`` public AMIs (``name-0``, ...), listed by an unfiltered DescribeImages."""
        client = self.boto3_client()
        ids = []
        for i in range(n):
            image_id = client.register_image(Name=f"{name}-{i}")["ImageId"]
            client.modify_image_attribute(
                ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]}
            )
            ids.append(image_id)
        return ids

    # -- the request log ---------------------------------------------------------------

    def count(self, action: str | None = None, **params: str) -> int:
        """How many requests reached moto: all, one Action's, or those also with ``params``."""
        return len(self.requests(action, **params))

    def requests(self, action: str | None = None, **params: str) -> list[dict[str, str]]:
        """The parameters of the requests logged, in order, selected as ``count()`` does."""
        with self._lock:
            calls = list(self.calls)
        return [
            call.params
            for call in calls
            if (action is None or call.action == action)
            and all(call.params.get(k) == v for k, v in params.items())
        ]

    def actions(self) -> list[str]:
        """The Actions of the requests logged, in order."""
        with self._lock:
            return [call.action for call in self.calls]

    def clear(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.calls.clear()

    # -- holding answers back ----------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, action: str) -> Iterator[Held]:
        """Keep moto's answers to ``action`` back while the block runs: moto has done what was
        asked (and the request is logged), the client waits. Leaving the block releases them.
        """
        held = Held(action)
        with self._lock:
            if action in self._holds:
                raise RuntimeError(f"{action} is held already")
            self._holds[action] = held
        try:
            yield held
        finally:
            with self._lock:
                del self._holds[action]
            held.release()

    # -- refusing requests --------------------------------------------------------------

    @contextlib.contextmanager
    def refuse(
        self, action: str, code: str, message: str, status: int = 400, **params: str
    ) -> Iterator[None]:
        """Answer the requests of ``action`` that carry ``params`` (as the client sent them)
        with EC2's error ``code`` while the block runs, as real EC2 does (``INSUFFICIENT_CAPACITY``
        and ``INSTANCE_LIMIT`` hold two of its refusals): moto is not asked, the request is
        logged all the same.
        """
        body = (
            "<?xml version='1.0' encoding='UTF-8'?>\n<Response><Errors><Error>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            "</Error></Errors><RequestID>refused-by-the-test</RequestID></Response>"
        ).encode()
        refusal = Refusal(action, params, status, body)
        with self._lock:
            self._refusals.append(refusal)
        try:
            yield
        finally:
            with self._lock:
                self._refusals.remove(refusal)

    # -- the WSGI wrapper --------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        """Log a client's EC2 request; bridge moto's differences from real EC2 both ways."""
        if environ.get(PROBE_ENVIRON) or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self._moto(environ, start_response)
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        form = _read_form(environ)
        params = {**query, **form}
        action = params.get("Action")
        if action is None:
            return self._moto(environ, start_response)
        with self._lock:
            self.calls.append(Call(action, params))
            refusal = next((r for r in self._refusals if r.matches(action, params)), None)
        if refusal is not None:
            status = f"{refusal.status} {http.client.responses[refusal.status]}"
            headers = [
                ("Content-Type", "text/xml;charset=UTF-8"),
                ("Content-Length", str(len(refusal.body))),
            ]
            start_response(status, headers)
            return iter([refusal.body])

        query, form = _one_based(query), _one_based(form)
        if action == "DetachVolume" and "InstanceId" not in params:
            # Real EC2 finds the instance from the volume; moto wants it named.
            instance_id = self._attached_instance(environ, params)
            if instance_id:
                (form if "Action" in form else query)["InstanceId"] = instance_id
        if action == "DescribeInstances" and not any(
            key.startswith(("MaxResults", "InstanceId")) for key in params
        ):
            # Real EC2 answers every instance when no MaxResults is given; moto pages at 100
            # (terminated instances included), and libcloud reads the first page only.
            (form if "Action" in form else query)["MaxResults"] = "1000"
        environ["QUERY_STRING"] = urlencode(query)
        _write_form(environ, form)

        status, headers, body = _call(self._moto, environ)
        if status.startswith("2"):
            body = body.replace(MOTO_NAMESPACE, EC2_NAMESPACE)
        else:
            # Real EC2's errors are <Response><Errors>... with no namespace, which is how
            # libcloud reads them; with moto's, it finds no error and reports an empty one.
            body = body.replace(b" " + MOTO_NAMESPACE, b"")
        if action in BOOLEAN_ACTIONS and status.startswith("200") and b"<return>" not in body:
            body = ROOT_END.sub(lambda m: b"<return>true</return>" + m.group(0), body)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        with self._lock:
            held = self._holds.get(action)
        if held is not None:
            held._arrive()
        start_response(status, headers)
        return iter([body])

    def _attached_instance(self, environ: dict[str, Any], params: dict[str, str]) -> str | None:
        """The instance moto has the request's volume attached to, asked of moto itself."""
        lookup = dict(environ)
        lookup.pop("CONTENT_TYPE", None)
        lookup.update(
            REQUEST_METHOD="GET",
            QUERY_STRING=urlencode(
                {
                    "Action": "DescribeVolumes",
                    "Version": params.get("Version", ""),
                    "VolumeId.1": params.get("VolumeId", ""),
                }
            ),
            CONTENT_LENGTH="0",
        )
        lookup["wsgi.input"] = io.BytesIO()
        status, _, body = _call(self._moto, lookup)
        if not status.startswith("200"):
            return None
        return ET.fromstring(body).findtext(".//{*}attachmentSet/{*}item/{*}instanceId")


def _read_form(environ: dict[str, Any]) -> dict[str, str]:
    """The form-encoded body's parameters, leaving the body readable again."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def _write_form(environ: dict[str, Any], form: dict[str, str]) -> None:
    """Replace a form-encoded body by ``form``."""
    if not form:
        return
    body = urlencode(form).encode()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _one_based(params: dict[str, str]) -> dict[str, str]:
    """Renumber from 1 the lists libcloud numbers from 0 (``ResourceId.0``, ``Tag.0.Key``)."""
    # A list is the keys sharing what precedes a numeric segment; one with an index 0 there is
    # shifted by one. Nested lists (IpPermissions.1.IpRanges.0.CidrIp) are lists of their own.
    split = {key: key.split(".") for key in params}
    zero_based = {
        tuple(parts[:i]) for parts in split.values() for i, part in enumerate(parts) if part == "0"
    }
    if not zero_based:
        return params
    renumbered = {}
    for key, parts in split.items():
        new = [
            str(int(part) + 1) if part.isdigit() and tuple(parts[:i]) in zero_based else part
            for i, part in enumerate(parts)
        ]
        renumbered[".".join(new)] = params[key]
    return renumbered


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to completion: its status, headers and whole body."""
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.update(status=status, headers=headers)
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return answer["status"], answer["headers"], body


def main(argv: list[str] | None = None) -> None:
    """``python -m harness.ec2_cloud SETTINGS``: serve the EC2 emulation until interrupted,
    with a dispatcher settings file whose CLOUD_FARM has it as cloud ``aws``.

    For trying the firewall and storage examples by hand (api_call_examples/README.md).
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m harness.ec2_cloud", description=main.__doc__)
    parser.add_argument("settings", help="the settings file to write, for DISPATCHER_SETTINGS")
    settings = parser.parse_args(argv).settings
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Ec2Cloud() as cloud:
        farm = {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()}
        with open(settings, "w") as handle:
            handle.write(f"CLOUD_FARM = {farm!r}\n")
        print(f"EC2 emulation on {cloud.url}: cloud `aws` in {settings}", flush=True)
        print(f"an image: {cloud.default_image_id()}; a size: t2.micro", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
