"""What `pip install .` puts in site-packages: the dispatcher package and nothing else."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path, PurePosixPath

import requests

from harness.gunicorn_server import GunicornServer
from harness.ports import free_port


def test_the_distribution_installs_only_the_dispatcher_package():
    """No top-level module beside `dispatcher` (no `config` or `wsgi` to collide with)."""
    # The installed one, not the egg-info a build leaves in the checkout (on sys.path).
    site_packages = sysconfig.get_paths()["purelib"]
    (distribution,) = importlib.metadata.distributions(name="dispatcher", path=[site_packages])
    assert distribution.read_text("top_level.txt").split() == ["dispatcher"]
    installed = {PurePosixPath(str(path)).parts[0] for path in distribution.files}
    # Beside the package: its metadata, the console script (../bin) and, in an
    # editable install, setuptools' path hook (the package itself stays in the checkout).
    others = {
        part
        for part in installed
        if not part.endswith(".dist-info")
        and part not in ("..", "__pycache__")
        and not part.startswith("__editable__")
    }
    assert others <= {"dispatcher"}


CHECKOUT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_the_package_and_not_the_checkouts_config_py(tmp_path):
    """A wheel built from the checkout holds dispatcher/ (its own config.py among it) and
    its metadata, never the checkout's top-level config.py or wsgi.py."""
    assert (CHECKOUT / "config.py").is_file()
    source = tmp_path / "source"
    left_out = (".git", ".venv", "venv", "instance", "build", "dist", "*.egg-info")
    left_out += ("__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(CHECKOUT, source, ignore=shutil.ignore_patterns(*left_out))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
         str(tmp_path / "wheels"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = (tmp_path / "wheels").glob("dispatcher-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "dispatcher",
        next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA")),
    }
    assert "dispatcher/config.py" in names
    assert not {"config.py", "wsgi.py", "gunicorn.conf.py"} & set(names)


def test_gunicorn_serves_the_installed_app_from_anywhere(tmp_path):
    """`gunicorn dispatcher.wsgi:app` serves from a folder that holds no checkout."""
    port = free_port()
    # Without the dispatcher's settings gunicorn opens its control socket in the user's
    # runtime folder or home, where every other gunicorn of the user would find it: here,
    # those of the test.
    (tmp_path / "run").mkdir()
    env = {
        **os.environ,
        "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
        "GUNICORN_CMD_ARGS": "",
        "HOME": str(tmp_path / "home"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
    }
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with GunicornServer(
        [*args, "dispatcher.wsgi:app"], env, tmp_path / "gunicorn.log", port, cwd=tmp_path
    ):
        answer = requests.get(f"http://127.0.0.1:{port}/api/v1/", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_the_app_runs_on_sqlite_without_the_postgresql_extra():
    """psycopg comes with the `postgresql` extra only: without it the app still starts
    and answers on SQLite (only a PostgreSQL process listens for a revocation)."""
    code = (
        "import sys; sys.modules['psycopg'] = None\n"  # as if it were not installed
        "from dispatcher import auth, create_app\n"
        "app = create_app({'TESTING': True, 'SQLALCHEMY_DATABASE_URI': 'sqlite://'})\n"
        "auth.serve(app, single_process=True)\n"
        "print(app.test_client().get('/api/v1/').json)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "{'status': 'ok'}"
