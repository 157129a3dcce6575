"""Label Studio's REST API over plain HTTP (the standard library's urllib).

Why not ``label-studio-sdk``: it pulls in pydantic, httpx, pandas, lxml, nltk and more, for
a dozen documented endpoints that JSON over HTTP reaches as well; the extra
``rfengine[labelstudio]`` therefore installs nothing. Both kinds of key work: a legacy token
(``Authorization: Token ...``) and a personal access token of recent versions (a JWT refresh
token, exchanged at ``/api/token/refresh/`` for a short-lived access token, renewed on 401).
The key is held in memory only: no message, log or file here ever contains it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from rfengine.errors import InputError

URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"
#: seconds to wait for one request (an export of a large project takes a while)
TIMEOUT = 300.0


class LabelStudioError(InputError):
    """A request Label Studio refused or could not answer: one line, without the key."""


def _is_jwt(key: str) -> bool:
    """A personal access token is a JWT (three base64url parts); a legacy token is hex."""
    return key.count(".") == 2


class LabelStudio:
    """A session with one Label Studio server: ``url`` and an API ``key``."""

    def __init__(self, url: str, key: str, timeout: float = TIMEOUT):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(f"{URL_ENV}: expected http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self._key = key
        self._access: str | None = None
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"LabelStudio({self.url!r})"

    @classmethod
    def from_env(cls) -> LabelStudio:
        """The server of ``LABEL_STUDIO_URL`` with the key of ``LABEL_STUDIO_API_KEY``."""
        url, key = os.environ.get(URL_ENV), os.environ.get(KEY_ENV)
        if not url or not key:
            missing = [n for n, v in ((URL_ENV, url), (KEY_ENV, key)) if not v]
            raise InputError(
                f"set {' and '.join(missing)}: the Label Studio server (e.g. "
                "http://127.0.0.1:8080) and an API key (Account & Settings > Access Token; "
                "a legacy token or a personal access token)"
            )
        return cls(url, key)

    def _auth(self, renew: bool = False) -> str:
        if not _is_jwt(self._key):
            return f"Token {self._key}"
        if self._access is None or renew:
            got = self._send("POST", "/api/token/refresh/", {"refresh": self._key}, auth=None)
            if not isinstance(got, dict) or not isinstance(got.get("access"), str):
                raise LabelStudioError(f"{self.url}: the token refresh gave no access token")
            self._access = got["access"]
        return f"Bearer {self._access}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method path`` with a JSON ``body``; the decoded JSON answer (None if empty)."""
        try:
            return self._send(method, path, body, self._auth())
        except _Unauthorised:
            if not _is_jwt(self._key):
                raise self._refused() from None
        try:  # an access token expired: renew it once
            return self._send(method, path, body, self._auth(renew=True))
        except _Unauthorised:
            raise self._refused() from None

    def _refused(self) -> LabelStudioError:
        return LabelStudioError(
            f"{self.url}: the API key in {KEY_ENV} was refused (wrong key, or a legacy token "
            "on a server where legacy tokens are disabled: use a personal access token, or "
            "enable legacy tokens in the organisation's settings)"
        )

    def _send(self, method: str, path: str, body: Any, auth: str | None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth is not None:
            req.add_header("Authorization", auth)
        what = f"{method} {self.url}{path.split('?')[0]}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code == 401 and auth is not None:
                raise _Unauthorised() from None
            if exc.code == 401:
                raise LabelStudioError(
                    f"{self.url}: the personal access token in {KEY_ENV} was refused{detail}"
                ) from None
            if exc.code == 404:
                raise LabelStudioError(f"{what}: not found (deleted?){detail}") from None
            raise LabelStudioError(f"{what}: HTTP {exc.code}{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} ({reason}); is the server running "
                f"and {URL_ENV} right?"
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise LabelStudioError(f"{what}: the answer is not JSON (not Label Studio?)") from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    # the few endpoints rfengine uses
    def project(self, project_id: int) -> dict[str, Any]:
        return self.get(f"/api/projects/{int(project_id)}/")

    def create_project(self, title: str, label_config: str, description: str) -> dict[str, Any]:
        body = {"title": title, "label_config": label_config, "description": description}
        return self.post("/api/projects/", body)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return self.post(f"/api/projects/{int(project_id)}/import", tasks)

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its annotations (Label Studio's JSON export)."""
        q = "exportType=JSON&download_all_tasks=true"
        got = self.get(f"/api/projects/{int(project_id)}/export?{q}")
        if not isinstance(got, list):
            raise LabelStudioError(f"{self.url}: project {project_id}'s export is not a list")
        return got


class _Unauthorised(Exception):
    pass


def _detail(exc: urllib.error.HTTPError) -> str:
    """The server's short reason (its JSON ``detail``), if it gives one."""
    try:
        doc = json.loads(exc.read() or b"null")
    except (ValueError, OSError):
        return ""
    if not isinstance(doc, dict):
        return ""
    text = doc.get("detail") if isinstance(doc.get("detail"), str) else ""
    if isinstance(doc.get("validation_errors"), dict):
        text += " " + json.dumps(doc["validation_errors"])[:400]
    text = text.strip()
    return f": {text}" if isinstance(text, str) and text else ""
