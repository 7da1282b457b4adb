"""(b) Starting a VM on EC2 (moto on loopback): upstream requests and latency.

The dispatcher: ``POST /api/v1/vm/start/default`` through the real app (Flask's test client,
a token of role agent, the local ledger on SQLite), CLOUD_FARM ``{"default":
cloud.farm_entry()}``. A *first* start names an image the dispatcher has not looked up
yet (each repetition another of moto's public AMIs); a *second* start names an image
that an earlier start looked up, which the dispatcher remembers (IMAGE_CACHE_SECONDS).

The 2015 dispatcher, as it did it, on the libcloud driver directly (no HTTP layer, no
ledger): ``list_images()`` and ``list_sizes()``, each filtered in Python by id, then
``create_node``.

moto ships 1,301 public AMIs in us-east-1; the full run registers 1,300 more, so that the
unfiltered DescribeImages the original sends answers 2,601 images. The counts of requests
come from the harness's log of what reached moto (harness/ec2_cloud.py).
"""

import time
from collections import Counter

from bench import common
from harness.ec2_cloud import Ec2Cloud

SIZE = "t2.micro"


def original_start(driver, name: str, image_id: str, size_id: str):
    """What the 2015 dispatcher did for vm/start: list everything, pick by id, create."""
    image = [image for image in driver.list_images() if image.id == image_id][0]
    size = [size for size in driver.list_sizes() if size.id == size_id][0]
    return driver.create_node(name=name, image=image, size=size)


def run(quick: bool = False, **_) -> common.Result:
    extra_images, original_reps, dispatcher_reps = (0, 1, 3) if quick else (1300, 3, 5)
    with Ec2Cloud() as cloud, common.scratch_folder("bench-b-") as folder:
        setup_started = time.perf_counter()
        cloud.add_public_images(extra_images)
        setup_seconds = time.perf_counter() - setup_started
        public = cloud.boto3_client().describe_images(ExecutableUsers=["all"])["Images"]
        amis = sorted(
            image["ImageId"]
            for image in cloud.boto3_client().describe_images(Owners=["amazon"])["Images"]
        )

        app = common.make_app(
            f"sqlite:///{folder / 'bench.sqlite'}", CLOUD_FARM={"default": cloud.farm_entry()}
        )
        client = app.test_client()
        client.environ_base["HTTP_X_AUTH_TOKEN"] = common.agent_token(app)
        # Warm the app (token check, database, the driver) without touching images or moto.
        if client.put("/api/v1/test/start").status_code != 200:
            raise RuntimeError("the bench token does not work")

        def dispatcher_start(image_id: str, index: int) -> tuple[float, list[str]]:
            cloud.clear()
            started = time.perf_counter()
            response = client.post(
                "/api/v1/vm/start/default",
                json={"name": f"bench-{index}", "image": image_id, "size": SIZE},
            )
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"vm/start: {response.status_code} {response.data[:300]!r}")
            return elapsed, cloud.actions()

        first, second = [], []
        for index in range(dispatcher_reps):
            first.append(dispatcher_start(amis[index], index))
            second.append(dispatcher_start(amis[index], 100 + index))
        common.dispose(app)

        driver = cloud.driver()
        original = []
        for index in range(original_reps):
            cloud.clear()
            started = time.perf_counter()
            original_start(driver, f"original-{index}", amis[index], SIZE)
            original.append((time.perf_counter() - started, cloud.actions()))
        # What one unfiltered DescribeImages, and one by id, bring back (outside the counts).
        listing_bytes = len(
            driver.connection.request("/", params={"Action": "DescribeImages"}).body
        )
        by_id_bytes = len(
            driver.connection.request(
                "/", params={"Action": "DescribeImages", "ImageId.1": amis[0]}
            ).body
        )

    paths = {"original": original, "first": first, "second": second}
    figures = {
        name: {
            "median_s": common.median(seconds for seconds, _ in samples),
            "requests": requests_per_start(samples),
            "actions": samples[0][1],
            "repetitions": len(samples),
        }
        for name, samples in paths.items()
    }
    orig, disp1, disp2 = figures["original"], figures["first"], figures["second"]
    measured = (
        f"requests/start: original {orig['requests']}, dispatcher {disp1['requests']} "
        f"first, {disp2['requests']} cached; median {common.ms(orig['median_s'])} vs "
        f"{common.ms(disp1['median_s'])} / {common.ms(disp2['median_s'])} "
        f"({orig['median_s'] / disp1['median_s']:.0f}x / "
        f"{orig['median_s'] / disp2['median_s']:.0f}x faster)"
    )
    gaps = []
    if not disp1["requests"] <= orig["requests"] or disp2["requests"] >= orig["requests"]:
        gaps.append("more requests than the original")
    if not max(disp1["median_s"], disp2["median_s"]) < orig["median_s"]:
        gaps.append("not faster")
    details = [
        f"{len(public)} public images ({extra_images} registered by the bench in "
        f"{setup_seconds:.0f} s); an unfiltered DescribeImages answers {listing_bytes:,} "
        f"bytes, one by id {by_id_bytes:,}",
    ]
    labels = {
        "original": "original (list_images, list_sizes, create_node)",
        "first": "dispatcher, first start",
        "second": "dispatcher, image cached",
    }
    for name, figure in figures.items():
        details.append(
            f"{labels[name]}: {figure['requests']} request(s) "
            f"({', '.join(figure['actions'])}), median {common.ms(figure['median_s'])} "
            f"of {figure['repetitions']}"
        )
    return common.Result(
        key="b",
        title="(b) vm/start on EC2 (moto)",
        measured=measured,
        target="no more requests, faster",
        verdict="met" if not gaps else "missed: " + ", ".join(gaps),
        details=details,
        figures={
            "public_images": len(public),
            "describe_images_bytes": listing_bytes,
            "describe_image_by_id_bytes": by_id_bytes,
            **figures,
        },
    )


def requests_per_start(samples) -> int:
    """The upstream requests of one start; every repetition must have made the same."""
    counts = Counter(tuple(actions) for _, actions in samples)
    if len(counts) != 1:
        raise RuntimeError(f"the starts made different requests: {dict(counts)}")
    return len(samples[0][1])
