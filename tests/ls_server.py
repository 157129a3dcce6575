"""A real Label Studio server for the tests: started on 127.0.0.1 with its own data folder
and local-files root, stopped after (only the process group the tests started).

The server comes from its own virtual environment, so that its pins do not constrain
rfengine's: ``$RFENGINE_LABEL_STUDIO`` (the ``label-studio`` executable), else
``.lsvenv/bin/label-studio`` in the repository (what ``.ci/run`` installs), else one on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EMAIL = "admin@example.com"
PASSWORD = "rfengine-test-pass"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
START_TIMEOUT = 240


def executable() -> str | None:
    """The ``label-studio`` to run, or None."""
    env = os.environ.get("RFENGINE_LABEL_STUDIO")
    if env:
        return env if Path(env).exists() else None
    local = REPO / ".lsvenv" / "bin" / "label-studio"
    return str(local) if local.exists() else shutil.which("label-studio")


def launch_args(server: Server, images: Path, campaign: Path) -> list[str]:
    """``rfengine campaign launch`` on ``server`` for ``images`` (under its local-files root)."""
    return [
        "campaign",
        "launch",
        "--frontend",
        "labelstudio",
        "--images",
        str(images),
        "--out",
        str(campaign),
        "--local-files-root",
        str(server.root),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    root: Path  # LOCAL_FILES_DOCUMENT_ROOT
    proc: subprocess.Popen
    log: Path

    token: str = TOKEN
    email: str = EMAIL
    password: str = PASSWORD

    def stop(self) -> None:
        """Stop the server's process group (it was started as its own session)."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def api(self, method: str, path: str, body=None):
        """One authenticated call (the tests' own, independent of rfengine's client)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the test process dies, so that a
    killed test run cannot leave its server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(folder: Path) -> Server:
    """Start a fresh server in ``folder`` and wait until it answers ``/health``."""
    exe = executable()
    assert exe is not None
    data, root = folder / "data", folder / "root"
    data.mkdir(parents=True)
    root.mkdir()
    port = _free_port()
    env = dict(
        os.environ,
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        LOCAL_FILES_SERVING_ENABLED="true",
        LOCAL_FILES_DOCUMENT_ROOT=str(root),
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
    )
    cmd = [
        exe,
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--username",
        EMAIL,
        "--password",
        PASSWORD,
        "--user-token",
        TOKEN,
        "--enable-legacy-api-token",
    ]
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            cwd=folder,
        )
    server = Server(f"http://127.0.0.1:{port}", root, proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"label-studio exited ({proc.returncode}):\n"
                + log.read_text(errors="replace")[-3000:]
            )
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=5) as resp:
                if b"UP" in resp.read():
                    return server
        except OSError:
            pass
        time.sleep(1)
    server.stop()
    raise RuntimeError(
        "label-studio did not answer /health within "
        f"{START_TIMEOUT} s:\n" + log.read_text(errors="replace")[-3000:]
    )


def sdk_call(code: str, payload: object) -> object:
    """Run ``code`` in Label Studio's own Python (its virtual environment, with
    ``label_studio_sdk``), ``payload`` as JSON in the name ``data``; returns what the code
    assigns to ``out``, through JSON. The tests compare rfengine with the SDK this way."""
    import subprocess

    exe = executable()
    assert exe is not None
    python = Path(exe).parent / "python"
    script = f"import json, sys\ndata = json.load(sys.stdin)\n{code}\njson.dump(out, sys.stdout)"
    done = subprocess.run(
        [str(python), "-c", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)
