"""The /api face (api/compat) in-process: the envelope, the deployed market's codes, sessions,
and the bounds of chunked uploads. The reference client itself drives it end to end in
tests/test_reference_client.py."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile

import pytest
import yaml
from wharf.api.compat import uploads
from wharf.market.catalog import repo

from .test_api import SEMANTIC, make_api, zip_bytes

PACKAGE = zip_bytes(
    {
        "learnware.yaml": b"model: {kwargs: {input_shape: !!python/tuple [2]}}\n",
        "__init__.py": b"",
        "stat_spec.json": b"{}",
        "requirements.txt": b"numpy\n",
    }
)


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path)


def login(api, who="alice") -> dict[str, str]:
    r = api.post(
        "/api/auth/login_by_token", json={"email": f"{who}@localhost", "token": api.tokens[who]}
    )
    assert r.status_code == 200 and r.json()["code"] == 0, r.text
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


def upload(api, headers, data: bytes = PACKAGE, chunk: int = 100) -> str:
    md5 = hashlib.md5(data).hexdigest()
    for begin in range(0, len(data), chunk):
        r = api.post(
            "/api/user/chunked_upload",
            files={"chunk_file": data[begin : begin + chunk]},
            data={"file_hash": md5, "chunk_begin": begin},
            headers=headers,
        )
        assert r.json() == {"code": 0, "msg": "Request succeeded.", "data": {}}, r.text
    return md5


def add(api, headers, md5: str, spec: dict | None = None):
    body = {"file_hash": md5, "semantic_specification": json.dumps(spec or SEMANTIC)}
    return api.post("/api/user/add_learnware_uploaded", json=body, headers=headers)


def test_login_sessions_and_logout(api):
    assert api.post("/api/auth/login_by_token").json()["code"] == 21  # is_connected's probe
    wrong = {"email": "alice@localhost", "token": api.tokens["bob"]}
    r = api.post("/api/auth/login_by_token", json=wrong)
    assert r.json()["code"] == 53 and r.json()["data"] == {}
    headers = login(api)
    with api.catalog.session() as s:
        user, token = repo.find_token(s, headers["Authorization"].split()[1])
        assert user.name == "alice" and token.name == "learnware client session"
        assert 23 * 3600 < (token.expires_at - token.created_at).total_seconds() <= 24 * 3600
    assert api.post("/api/user/list_learnware", json={}, headers=headers).json()["code"] == 0
    assert api.post("/api/auth/logout", headers=headers).json()["code"] == 0
    r = api.post("/api/user/list_learnware", json={}, headers=headers)
    assert r.status_code == 401 and r.json()["code"] == 11
    assert api.post("/api/user/list_learnware", json={}).json()["code"] == 11
    # Logging out with an API token leaves that token alone.
    api_token = {"Authorization": f"Bearer {api.tokens['bob']}"}
    assert api.post("/api/auth/logout", headers=api_token).json()["code"] == 0
    assert api.post("/api/user/list_learnware", json={}, headers=api_token).json()["code"] == 0


def test_upload_list_info_download_update_delete(api):
    headers = login(api)
    md5 = upload(api, headers)
    bad = add(api, headers, md5, {"Data": 1})
    assert bad.json()["code"] == 41 and "semantic_spec.Data" in bad.json()["msg"]
    md5 = upload(api, headers)  # taken by the failed add: sent again
    r = add(api, headers, md5)
    assert r.json()["code"] == 0
    lid = r.json()["data"]["learnware_id"]
    assert len(lid) == 8 and lid.isdigit()
    listed = api.post("/api/user/list_learnware", json={"page": 0, "limit": 10000}, headers=headers)
    data = listed.json()["data"]
    assert (data["page"], data["limit"], data["total_pages"]) == (0, 10000, 1)
    (item,) = data["learnware_list"]
    assert item["learnware_id"] == lid and item["verify_status"] == "WAITING"
    assert item["semantic_specification"]["Model"] == {"Type": "Optional", "Values": ["Others"]}
    assert item["last_modify"].endswith(" UTC")
    # Not accepted yet: its owner sees it, others do not.
    anonymous = api.get("/api/engine/learnware_info", params={"learnware_id": lid})
    assert anonymous.status_code == 404 and anonymous.json()["code"] == 51
    info = api.get("/api/engine/learnware_info", params={"learnware_id": lid}, headers=headers)
    assert info.json()["data"]["learnware_info"]["verify_status"] == "WAITING"
    r = api.get("/api/engine/download_learnware", params={"learnware_id": lid}, headers=headers)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = yaml.safe_load(zf.read("learnware.yaml"))
    assert manifest["id"] == lid and manifest["model"]["kwargs"]["input_shape"] == [2]
    spec = json.loads(zf.read(manifest["semantic_specification"]["file_name"]))
    assert spec["Model"]["Values"] == ["Others"]
    # The same bytes again: the deployed market's duplicate code.
    assert add(api, headers, upload(api, headers)).json()["code"] == 61
    edited = json.loads(json.dumps(SEMANTIC))
    edited["Description"]["Values"] = "edited"
    form = {"learnware_id": lid, "semantic_specification": json.dumps(edited)}
    assert api.post("/api/user/update_learnware", data=form, headers=headers).json()["code"] == 0
    info = api.get("/api/engine/learnware_info", params={"learnware_id": lid}, headers=headers)
    assert info.json()["data"]["learnware_info"]["semantic_specification"]["Description"] == {
        "Type": "String",
        "Values": "edited",
    }
    unknown = {"learnware_id": "99999999", "semantic_specification": json.dumps(edited)}
    r = api.post("/api/user/update_learnware", data=unknown, headers=headers)
    assert r.json()["code"] == 71
    bob = login(api, "bob")
    r = api.post("/api/user/delete_learnware", json={"learnware_id": lid}, headers=bob)
    assert r.json()["code"] == 51  # not his, and not public: not found for him
    r = api.post("/api/user/delete_learnware", json={"learnware_id": lid}, headers=headers)
    assert r.json()["code"] == 0
    listed = api.post("/api/user/list_learnware", json={"page": 0, "limit": 10}, headers=headers)
    assert listed.json()["data"]["learnware_list"] == []


def test_vocabulary_has_the_0_4_keys(api):
    vocabulary = api.get("/api/engine/semantic_specification").json()["data"]
    spec = vocabulary["semantic_specification"]
    assert spec["Model"] == {
        "Values": ["Base Model", "Fine-tuned Model", "PEFT Model", "Others"],
        "Type": "Optional",
    }
    assert "Text Generation" in spec["Task"]["Values"]
    assert spec["Name"] == {"Values": None, "Type": "String"}
    assert api.get("/v1/vocabulary").json()["Model"] == spec["Model"]["Values"]


def test_chunked_uploads_are_bounded_and_checked(api):
    headers = login(api)
    md5 = hashlib.md5(PACKAGE).hexdigest()

    def chunk(data: bytes, begin: int, file_hash: str = md5):
        return api.post(
            "/api/user/chunked_upload",
            files={"chunk_file": data},
            data={"file_hash": file_hash, "chunk_begin": begin},
            headers=headers,
        ).json()

    assert chunk(PACKAGE[:10], 0, "../../etc/passwd")["code"] == 21
    assert chunk(PACKAGE[:10], 10)["code"] == 51  # no upload under way
    assert chunk(b"x" * (uploads.CHUNK_BYTES + 1), 0)["code"] == 21
    assert chunk(PACKAGE[:10], 0)["code"] == 0
    out_of_order = chunk(PACKAGE[20:30], 20)
    assert out_of_order["code"] == 21 and "must be 10" in out_of_order["msg"]
    assert chunk(PACKAGE[10:], 10)["code"] == 0
    # Over the market's package size: refused, and the upload is gone.
    big = b"\0" * 100_001
    assert chunk(big, 0, "0" * 32)["code"] == 0
    assert chunk(big, 100_001, "0" * 32)["code"] == 21  # over the test market's 200,000 bytes
    store = api.app.state.services.store
    assert not [k for k in store.list(uploads.PREFIX) if f"/{'0' * 32}." in k]
    # The bytes must have the hash they were sent under.
    assert chunk(PACKAGE, 0, "f" * 32)["code"] == 0
    assert add(api, headers, "f" * 32).json()["code"] == 21
    assert add(api, headers, "f" * 32).json()["code"] == 51  # the bad upload was dropped
    # At most MAX_UPLOADS_PER_USER under way (the first one above is complete, not added).
    for i in range(uploads.MAX_UPLOADS_PER_USER - 1):
        assert chunk(b"y", 0, f"{i:032x}")["code"] == 0
    refused = api.post(
        "/api/user/chunked_upload",
        files={"chunk_file": b"z"},
        data={"file_hash": "e" * 32, "chunk_begin": 0},
        headers=headers,
    )
    assert refused.status_code == 429 and refused.json()["code"] == 21
    # Another user's uploads are theirs alone, and an abandoned one goes after a while.
    assert add(api, login(api, "bob"), md5).json()["code"] == 51
    stale = int(time.time()) - uploads.STALE_AFTER_S - 1
    for key in store.list(uploads.PREFIX):
        if f"/{0:032x}." in key:
            store.put(key.replace(key.split("/")[2], f"{0:032x}.{stale}"), io.BytesIO(b"y"))
            store.delete(key)
    assert chunk(b"z", 0, "e" * 32)["code"] == 0  # room again: the stale upload was removed
    assert not [k for k in store.list(uploads.PREFIX) if f"/{0:032x}." in k]
    assert add(api, headers, md5).json()["code"] == 0


def test_every_error_under_api_is_an_envelope(api):
    r = api.get("/api/no/such/endpoint")
    assert r.status_code == 404 and r.json()["code"] == 51
    r = api.post("/api/user/list_learnware", content=b"x" * 100_000, headers=login(api))
    assert r.status_code == 413 and r.json()["code"] == 21
    r = api.get("/api/engine/learnware_info", params={"learnware_id": "nope"})
    assert r.json()["code"] == 51
    # /v1 keeps its problem documents.
    r = api.get("/v1/learnwares/nope")
    assert r.headers["content-type"] == "application/problem+json" and "code" not in r.json()
