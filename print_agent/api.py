"""The few calls the agent makes to the chenpi-trace API, over HTTP(S) with `requests`.

Failures are sorted into what the agent does about them: `Unavailable` (no connection, a timeout,
5xx, 429: retry with backoff), `Unauthorized` (401/403: a bad or revoked token, stop) and
`Rejected` (any other 4xx: the server's `reason` says why)."""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from . import __version__

PRINT_JOBS = "/api/v1/labels/print-jobs"
CHUNK = 64 * 1024


class ApiError(Exception):
    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


class Unavailable(ApiError):
    """The API could not be reached or answered 5xx/429; try again later."""


class Unauthorized(ApiError):
    """401/403: the token is wrong, revoked or not an agent's."""


class Rejected(ApiError):
    """Another 4xx; `reason` is the server's stable reason (e.g. labels.lease_invalid)."""


@dataclass
class Download:
    path: Path
    sha256: str
    size: int
    complete: bool  # False: the server sent more bytes than the job's size (stopped reading)


def _describe(exc: requests.RequestException) -> str:
    """A short cause for a failed request: "[Errno 111] Connection refused", "Read timed out", …"""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if errno:
        return errno.group(0).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"


def lease_seconds_left(job: dict, response: requests.Response) -> float | None:
    """How long the lease in a lease/renew answer has left, by the server's clock: its
    `lease_seconds_left`, else `lease_expires_at` minus the answer's Date header (less a second for
    the header's whole seconds); None when neither says. The local wall clock is never compared
    with the server's."""
    left = job.get("lease_seconds_left")
    if isinstance(left, (int, float)) and not isinstance(left, bool):
        return float(left)
    try:
        expires = datetime.fromisoformat(str(job["lease_expires_at"]))
        now = parsedate_to_datetime(response.headers["Date"])
        if expires.tzinfo is None or now.tzinfo is None:
            return None
        return (expires - now).total_seconds() - 1.0
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _error_from(response: requests.Response) -> ApiError:
    reason = message = None
    try:
        body = response.json()
        if isinstance(body, dict):
            reason = body.get("reason")
            message = body.get("message")
            if body.get("errors"):
                message = f"{message}: {body['errors']}"
    except ValueError:
        pass
    text = f"{response.request.method} {urlsplit(response.url).path} answered {response.status_code}"
    if reason or message:
        text += f" ({reason or ''}{': ' if reason and message else ''}{message or ''})"
    status = response.status_code
    if status >= 500 or status == 429:
        return Unavailable(text, status, reason)
    if status in (401, 403):
        return Unauthorized(text, status, reason)
    if 300 <= status < 400:
        where = response.headers.get("Location", "?")
        return Rejected(f"{text}: redirected to {where}; give that URL as --api", status, reason)
    return Rejected(text, status, reason)


class Api:
    def __init__(self, base: str, token: str, timeout: float = 30.0):
        self.base = base
        self.timeout = (min(10.0, timeout), timeout)  # (connect, read)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc credentials picked up behind our back
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json",
                                     "User-Agent": f"chenpi-print-agent/{__version__}"})

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise Unavailable(f"{method} {urlsplit(url).path}: {_describe(exc)}") from exc
        if response.status_code >= 300:
            error = _error_from(response)
            response.close()
            raise error
        return response

    def url(self, path: str) -> str:
        """An API path (or the pdf_url of a job) as a URL on the configured service. A URL on another
        host is refused: the agent's token goes only to the service it was given."""
        url = urljoin(self.base + "/", path)
        mine, theirs = urlsplit(self.base), urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (mine.scheme, mine.netloc):
            raise Rejected(f"{path!r} is not on {self.base}; the agent sends its token nowhere else")
        return url

    def _leased_job(self, what: str, url: str, body: dict) -> dict | None:
        """POST a lease or a renewal; the job it answers with, its `_lease_seconds` (how long the
        lease had left as the server answered, or None) and `_lease_deadline` (time.monotonic() by
        which it runs out, counted from before the request was sent, so never late)."""
        sent = time.monotonic()
        response = self._request("POST", url, json=body)
        if response.status_code == 204:
            return None
        try:
            job = response.json()
        except ValueError:
            raise Unavailable(f"{what} answered {response.status_code} without JSON") from None
        if not isinstance(job, dict):
            raise Unavailable(f"{what} answered {response.status_code} with {type(job).__name__}, not a job")
        left = lease_seconds_left(job, response)
        return {**job, "_lease_seconds": left, "_lease_deadline": None if left is None else sent + left}

    def lease(self, printer: str) -> dict | None:
        """The next print job of this agent's operator (leased to us), or None when none waits."""
        return self._leased_job("lease", self.url(f"{PRINT_JOBS}/lease"), {"printer": printer})

    def renew(self, job_id: int, lease_token: str) -> dict:
        """Extend our lease (PRINT_LEASE_SECONDS from now); Rejected (labels.lease_invalid) once the
        token no longer holds: the job was leased again, acknowledged or cancelled."""
        job = self._leased_job("renew", self.url(f"{PRINT_JOBS}/{job_id}/renew"), {"lease_token": lease_token})
        if job is None:
            raise Unavailable(f"renew of job {job_id} answered 204")
        return job

    def download(self, pdf_url: str, dest: Path, max_size: int) -> Download:
        """Stream the PDF into `dest` (fsynced), hashing it on the way; stops reading past max_size."""
        response = self._request("GET", self.url(pdf_url), stream=True, headers={"Accept": "application/pdf"})
        digest, size, complete = hashlib.sha256(), 0, True
        try:
            with open(dest, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_size:
                        complete = False
                        break
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except requests.RequestException as exc:
            raise Unavailable(f"downloading {urlsplit(pdf_url).path}: {_describe(exc)}") from exc
        finally:
            response.close()
        return Download(dest, digest.hexdigest(), size, complete)

    def ack(self, job_id: int, lease_token: str, outcome: str, answer: str) -> dict:
        response = self._request("POST", self.url(f"{PRINT_JOBS}/{job_id}/ack"),
                                 json={"lease_token": lease_token, "outcome": outcome, "printer_answer": answer})
        try:
            return response.json()
        except ValueError:
            return {}
