"""A small synchronous client for the ``/v1`` API.

client = WharfClient("http://127.0.0.1:8000", token="wharf_…")
sub = client.submit("model.zip", semantic_spec)
job = client.wait(sub["job_id"])
results = client.search(spec=my_rkme, semantic={...}, top=5)

Waiting for a job is a long poll: the market answers each request as soon as the job ends
(``?wait=``), so a search that takes 20 ms is one request of about that long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from .errors import JobFailed, WharfError

#: The longest a request of :meth:`WharfClient.wait` and :meth:`WharfClient.search` asks the
#: market to wait for a job (``?wait=``); the market's own limit may be shorter.
LONG_POLL_S = 30.0
ENDED = ("succeeded", "failed", "cancelled")
#: The largest heterogeneous map file :meth:`WharfClient.download_hetero_map` writes (the
#: market's own bound on a stored map; the default map is about 17 MB).
MAX_HETERO_MAP_BYTES = 512 * 1024 * 1024


def _succeeded(job: dict[str, Any]) -> dict[str, Any]:
    """The ended ``job``; :class:`JobFailed` if it failed or was cancelled."""
    if job["state"] in ("failed", "cancelled"):
        said = "failed" if job["state"] == "failed" else "was cancelled"
        raise JobFailed(200, {"detail": f"job {job['id']} {said}: {job.get('error')}"})
    return job


def _too_large(version: int, max_bytes: int) -> WharfError:
    return WharfError(
        200, {"detail": f"map version {version} is larger than max_bytes ({max_bytes} bytes)"}
    )


class WharfClient:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WharfClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- learnwares --------------------------------------------------------------------
    def submit(self, package: str | Path, semantic_spec: dict[str, Any]) -> dict[str, Any]:
        with open(package, "rb") as fh:
            files = {"package": (Path(package).name, fh, "application/zip")}
            data = {"semantic_spec": json.dumps(semantic_spec)}
            return self._json(self.http.post("/v1/learnwares", files=files, data=data))

    def learnware(self, learnware_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/learnwares/{learnware_id}"))

    def learnwares(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json(self.http.get("/v1/learnwares", params=params))

    def log(self, learnware_id: str) -> str:
        response = self.http.get(f"/v1/learnwares/{learnware_id}/log")
        self._raise(response)
        return response.text

    def update(
        self,
        learnware_id: str,
        *,
        semantic_spec: dict[str, Any] | None = None,
        package: str | Path | None = None,
    ) -> dict[str, Any]:
        data = {"semantic_spec": json.dumps(semantic_spec)} if semantic_spec is not None else {}
        if package is None:
            return self._json(self.http.patch(f"/v1/learnwares/{learnware_id}", data=data))
        with open(package, "rb") as fh:
            files = {"package": (Path(package).name, fh, "application/zip")}
            return self._json(
                self.http.patch(f"/v1/learnwares/{learnware_id}", data=data, files=files)
            )

    def delete(self, learnware_id: str) -> None:
        self._raise(self.http.delete(f"/v1/learnwares/{learnware_id}"))

    def download(self, learnware_id: str, path: str | Path, *, original: bool = False) -> Path:
        """Stream the package to ``path`` (following a presigned-URL redirect): in the layout
        the ``learnware`` package's loader reads, or with ``original`` the bytes as uploaded."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        params = {"original": "true"} if original else None
        with self.http.stream(
            "GET",
            f"/v1/learnwares/{learnware_id}/package",
            params=params,
            follow_redirects=True,
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._raise(response)
            with tmp.open("wb") as fh:
                for chunk in response.iter_bytes(1 << 20):
                    fh.write(chunk)
        tmp.replace(path)
        return path

    def bulk_import(
        self, bundle: str | Path | BinaryIO, *, trusted: bool, read_timeout: float = 3600.0
    ) -> dict[str, Any]:
        """Upload a bundle (a .tar or .tar.gz of an export directory) for a trusted import
        (admins); returns ``job_id``, ``status_url``, ``entries`` and ``batches``. The market
        checks and splits the bundle before answering, hence the long ``read_timeout``."""
        data = {"trusted": "true" if trusted else "false"}
        return self._upload_bundle("/v1/bulk-imports", bundle, data, read_timeout)

    def bulk_submit(
        self, bundle: str | Path | BinaryIO, *, read_timeout: float = 3600.0
    ) -> dict[str, Any]:
        """Upload a submission bundle for checking (any user): a .tar or .tar.gz holding
        ``manifest.jsonl``, one line per package (``package``, its path in the tar, and
        ``semantic_spec``), and the packages. Returns ``job_id``, ``status_url``, ``entries``
        and ``batches``; the job ends when every check has, its result listing each entry's
        outcome (``accepted``, ``rejected``, ``refused``, ``duplicate``, ``failed``)."""
        return self._upload_bundle("/v1/bulk-submissions", bundle, {}, read_timeout)

    def _upload_bundle(
        self, path: str, bundle: str | Path | BinaryIO, data: dict[str, str], read_timeout: float
    ) -> dict[str, Any]:
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        if isinstance(bundle, str | Path):
            with open(bundle, "rb") as fh:
                files = {"bundle": (Path(bundle).name, fh, "application/x-tar")}
                response = self.http.post(path, data=data, files=files, timeout=timeout)
        else:
            files = {"bundle": ("bundle.tar", bundle, "application/x-tar")}
            response = self.http.post(path, data=data, files=files, timeout=timeout)
        return self._json(response)

    # -- jobs and searches ----------------------------------------------------------------
    def job(self, job_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        """The job; with ``wait``, the market answers when it ends or after ``wait`` seconds
        (at most its own limit, 30 s by default), whichever comes first."""
        if wait <= 0:
            return self._json(self.http.get(f"/v1/jobs/{job_id}"))
        return self._json(
            self.http.get(
                f"/v1/jobs/{job_id}", params={"wait": f"{wait:g}"}, timeout=self._timeout(wait)
            )
        )

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (yours, or any for an admin); returns the job, now
        ``cancelled``. A check's learnware becomes ``rejected``, saying so in its log."""
        return self._json(self.http.delete(f"/v1/jobs/{job_id}"))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 600.0,
        poll: float = 0.05,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait until a job ends; raises :class:`JobFailed` if it failed.

        Each request asks the market to answer when the job ends (a long poll of up to
        :data:`LONG_POLL_S`, or 1 s with ``on_progress``, so that progress shows). A market
        that answers at once is asked again after ``poll`` seconds, growing to 1 s.
        """
        deadline = time.monotonic() + timeout
        while True:
            asked = max(0.0, min(deadline - time.monotonic(), 1.0 if on_progress else LONG_POLL_S))
            sent = time.monotonic()
            job = self.job(job_id, wait=asked)
            if on_progress:
                on_progress(job)
            if job["state"] in ENDED:
                return _succeeded(job)
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            if time.monotonic() - sent < min(asked, 1.0) / 2:  # the market did not wait
                time.sleep(poll)
                poll = min(poll * 1.5, 1.0)

    def start_search(
        self,
        *,
        spec: Any = None,
        semantic: dict[str, Any] | None = None,
        top: int | None = None,
        max_search_num: int = 5,
        hetero: bool | None = None,
    ) -> str:
        """Queue a search; ``spec`` is an RKME, a spec file path, or spec JSON text/bytes;
        ``hetero`` as for :meth:`search`."""
        return self._post_search(spec, semantic, top, max_search_num, hetero, wait=0.0)["job_id"]

    def search(
        self,
        *,
        spec: Any = None,
        semantic: dict[str, Any] | None = None,
        top: int | None = None,
        max_search_num: int = 5,
        timeout: float = 300.0,
        hetero: bool | None = None,
    ) -> dict[str, Any]:
        """Search and wait for the result: one request when the search ends within
        :data:`LONG_POLL_S`; raises :class:`JobFailed` if it failed.

        ``hetero=True`` searches the learnwares whose columns differ from the table's,
        through the market's map (``semantic`` describes every column of ``spec``:
        ``Input.Dimension`` and ``Input.Description``), ``False`` never does; ``None`` lets
        the market choose (heterogeneous when no learnware has these columns and every one
        is described). A heterogeneous result has ``result["hetero"]["map_version"]``; the
        market answers 409 (:class:`WharfError`) when it has no map yet, 422 naming the
        field when the columns are not all described.
        """
        deadline = time.monotonic() + timeout
        answer = self._post_search(
            spec, semantic, top, max_search_num, hetero, wait=min(timeout, LONG_POLL_S)
        )
        job = answer.get("job")  # None from a market that does not wait
        if job is not None and job["state"] in ENDED:
            return _succeeded(job)["result"]
        left = max(0.0, deadline - time.monotonic())
        return self.wait(answer["job_id"], timeout=left)["result"]

    def _post_search(
        self,
        spec: Any,
        semantic: dict[str, Any] | None,
        top: int | None,
        max_search_num: int,
        hetero: bool | None,
        *,
        wait: float,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"max_search_num": str(max_search_num)}
        if semantic is not None:
            data["semantic_spec"] = json.dumps(semantic)
        if top is not None:
            data["top"] = str(top)
        if hetero is not None:
            data["hetero"] = "true" if hetero else "false"
        files = None
        if spec is not None:
            if isinstance(spec, Path) or (isinstance(spec, str) and not spec.lstrip()[:1] == "{"):
                body = Path(spec).read_bytes()  # a path; JSON text starts with '{'
            elif isinstance(spec, bytes | str):
                body = spec.encode() if isinstance(spec, str) else spec
            else:
                from wharf.specification.files import dumps_spec  # numpy: only for an RKME

                body = dumps_spec(spec).encode()
            files = {"stat_spec": ("spec.json", body, "application/json")}
        if wait <= 0:
            return self._json(self.http.post("/v1/searches", data=data, files=files))
        return self._json(
            self.http.post(
                "/v1/searches",
                params={"wait": f"{wait:g}"},
                data=data,
                files=files,
                timeout=self._timeout(wait),
            )
        )

    # -- the heterogeneous market's map ----------------------------------------------------
    def hetero_maps(self) -> dict[str, Any]:
        """The map version searches use (``current``, ``None`` before the first is ready) and
        the latest versions (``versions``), newest first."""
        return self._json(self.http.get("/v1/hetero/maps"))

    def download_hetero_map(
        self, version: int, path: str | Path, *, max_bytes: int = MAX_HETERO_MAP_BYTES
    ) -> Path:
        """Stream map ``version`` (what a heterogeneous result's ``map_version`` names) to
        ``path``, written whole or not at all; load it with ``HeteroMap.from_bytes``. A file
        over ``max_bytes`` is refused (:class:`WharfError`) and nothing is left behind."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        with self.http.stream("GET", f"/v1/hetero/maps/{int(version)}/file") as response:
            if response.status_code >= 400:
                response.read()
                self._raise(response)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(version, max_bytes)
            written = 0
            try:
                with tmp.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise _too_large(version, max_bytes)
                        fh.write(chunk)
                tmp.replace(path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return path

    def _timeout(self, wait: float) -> httpx.Timeout:
        """The client's timeouts, with ``wait`` more seconds to read the answer."""
        t = self.http.timeout
        read = None if t.read is None else t.read + wait
        return httpx.Timeout(connect=t.connect, read=read, write=t.write, pool=t.pool)

    # -- tokens -------------------------------------------------------------------------
    def create_token(
        self,
        name: str,
        *,
        user: str | None = None,
        role: str | None = None,
        expires_in_days: int | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "user": user, "role": role, "expires_in_days": expires_in_days}
        if email is not None:
            body["email"] = email  # a new user's; markets before emails do not take the field
        return self._json(self.http.post("/v1/tokens", json=body))

    def revoke_token(self, token_id: int) -> None:
        self._raise(self.http.delete(f"/v1/tokens/{token_id}"))

    # -- plumbing -----------------------------------------------------------------------
    def _json(self, response: httpx.Response) -> Any:
        self._raise(response)
        return response.json()

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:500]}
        retry_after = response.headers.get("Retry-After", "")
        raise WharfError(
            response.status_code,
            problem if isinstance(problem, dict) else {},
            retry_after=float(retry_after) if retry_after.isdigit() else None,
        )
