"""The catalog on SQLite and PostgreSQL: schema, ids, state transitions, filters, tokens, jobs."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from wharf.market.catalog import (
    ApiToken,
    Base,
    Catalog,
    CatalogUnavailable,
    DuplicateContent,
    EmailTaken,
    Job,
    JobKind,
    JobState,
    LearnwareNotFound,
    LearnwareStatus,
    NameTaken,
    Role,
    format_id,
    parse_id,
    repo,
    upgrade,
)
from wharf.specification.semantic import generate_semantic_spec

SPEC_META = {
    "type": "RKMETableSpecification",
    "shape": [8],
    "gamma": 0.1,
    "points": 5,
    "num_points": 100,
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def semantic(name: str = "model", **kwargs) -> dict:
    kwargs.setdefault("data_type", "Table")
    kwargs.setdefault("task_type", "Classification")
    kwargs.setdefault("library_type", "Scikit-learn")
    kwargs.setdefault("scenarios", ["Business"])
    kwargs.setdefault("license", "MIT")
    kwargs.setdefault("description", f"the {name} learnware")
    return generate_semantic_spec(name=name, **kwargs)


@pytest.fixture
def owner(catalog: Catalog) -> int:
    with catalog.session() as s:
        return repo.create_user(s, "alice").id


def add(catalog: Catalog, owner: int, name: str, **spec) -> int:
    with catalog.session() as s:
        lw = repo.create_learnware(s, owner, semantic(name, **spec), sha(name), f"p/{name}", 10)
        return lw.id


# -- schema and ids -------------------------------------------------------------------------


def test_migrations_create_exactly_the_model_schema(database_url: str):
    catalog = Catalog.create(database_url)
    try:
        upgrade(database_url)  # a second run is a no-op
        with catalog.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == "0009"
            tables = set(inspect(conn).get_table_names())
        assert {"users", "api_tokens", "learnwares", "learnware_scenarios", "jobs"} <= tables
        catalog.check()
    finally:
        catalog.dispose()


def test_check_reports_an_unreachable_database(closed_port: int, tmp_path):
    down = Catalog.create(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/x", migrate=False)
    with pytest.raises(CatalogUnavailable, match="does not answer"):
        down.check()
    fresh = Catalog(f"sqlite:///{tmp_path / 'new' / 'dir' / 'c.db'}")  # makes the folder
    fresh.check()
    assert "c.db" in repr(fresh)
    memory = Catalog.create("sqlite://")
    with memory.session() as s:
        assert repo.create_user(s, "solo").id == 1


def test_ids_are_never_reused(catalog: Catalog, owner: int):
    ids = [add(catalog, owner, f"lw{i}") for i in range(3)]
    assert ids == sorted(ids)
    with catalog.session() as s:
        deleted = repo.delete_learnware(s, ids[-1])
        assert deleted is not None and deleted.package_key == "p/lw2"
    new = add(catalog, owner, "lw3")
    assert new > ids[-1]
    with catalog.session() as s:
        assert repo.get_learnware(s, ids[-1]) is None
        assert repo.delete_learnware(s, ids[-1]) is None
    assert format_id(new) == f"{new:08d}" and parse_id(format_id(new)) == new


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "0",
        "00000000",
        "1e3",
        "12a",
        "１２",
        "²",
        "99999999999",
        "2147483648",
    ],
)
def test_parse_id_refuses_anything_but_a_positive_digit_string(text: str):
    with pytest.raises(ValueError, match="learnware id"):
        parse_id(text)


def test_parse_and_format_ids():
    assert parse_id("00000042") == 42 == parse_id("42")
    assert format_id(42) == "00000042"
    assert parse_id("2147483647") == 2**31 - 1
    with pytest.raises(ValueError):
        format_id(0)
    with pytest.raises(TypeError):
        format_id("42")  # type: ignore[arg-type]


# -- learnwares -----------------------------------------------------------------------------


def test_duplicate_content_names_the_existing_learnware(catalog: Catalog, owner: int):
    first = add(catalog, owner, "a")
    second = add(catalog, owner, "b")
    with catalog.session() as s, pytest.raises(DuplicateContent) as info:
        repo.create_learnware(s, owner, semantic("again"), sha("a"), "p/other", 1)
    assert info.value.existing_id == first
    assert format_id(first) in str(info.value)
    with catalog.session() as s, pytest.raises(DuplicateContent) as info:
        repo.replace_package(s, second, sha("a"), "p/x", 1)
    assert info.value.existing_id == first
    with catalog.session() as s:
        assert repo.get_learnware(s, second).content_sha256 == sha("b")


def test_concurrent_submissions_of_the_same_content(catalog: Catalog, owner: int):
    """The loser of a race past the pre-check still gets DuplicateContent, not a 500."""
    outcome: list[object] = []

    def submit() -> None:
        try:
            with catalog.session() as s:
                repo.create_learnware(s, owner, semantic("b"), sha("same"), "p/b", 1)
            outcome.append("created")
        except DuplicateContent as exc:
            outcome.append(exc.existing_id)

    with catalog.session() as s:
        first = repo.create_learnware(s, owner, semantic("a"), sha("same"), "p/a", 1).id
        other = threading.Thread(target=submit)
        other.start()
        time.sleep(0.3)  # the other insert now waits for this transaction
    other.join(timeout=30)
    assert outcome == [first]


def test_claim_for_check_is_atomic(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "contested")
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            with catalog.session() as s:
                wins.append(repo.claim_for_check(s, lw))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(wins) == [False] * 7 + [True]
    with catalog.session() as s:
        assert repo.get_learnware(s, lw).status == LearnwareStatus.checking
        assert not repo.claim_for_check(s, lw)


def test_check_lifecycle(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "checked")
    with catalog.session() as s:
        assert not repo.finish_check(
            s, lw, accepted=True, log="", spec_meta=None, stat_spec_json=None
        )
        assert repo.claim_for_check(s, lw)
        assert repo.get_learnware(s, lw).status == LearnwareStatus.checking
    with catalog.session() as s:  # the worker died: another one starts over
        assert repo.reset_to_pending(s, lw)
        assert not repo.reset_to_pending(s, lw)
        assert repo.claim_for_check(s, lw)
    with catalog.session() as s:  # a stale result for other content is dropped
        assert not repo.finish_check(
            s,
            lw,
            accepted=True,
            log="x",
            spec_meta=SPEC_META,
            stat_spec_json="{}",
            sha256=sha("other"),
        )
        assert repo.finish_check(
            s,
            lw,
            accepted=True,
            log="all good",
            spec_meta=SPEC_META,
            stat_spec_json='{"z": []}',
            sha256=sha("checked"),
        )
    with catalog.session() as s:
        row = repo.get_learnware(s, lw)
        assert row.status == LearnwareStatus.accepted and row.check_log == "all good"
        assert (row.spec_type, row.spec_shape, row.spec_gamma) == (
            "RKMETableSpecification",
            [8],
            0.1,
        )
        assert (row.spec_points, row.num_points, row.stat_spec) == (5, 100, '{"z": []}')
        assert row.checked_at is not None and row.checked_at.tzinfo is not None
        assert not repo.finish_check(
            s, lw, accepted=False, log="late", spec_meta=None, stat_spec_json=None
        )
        assert repo.accepted_count(s) == 1


def test_finish_check_validates_spec_meta(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "m")
    with catalog.session() as s:
        repo.claim_for_check(s, lw)
        for bad in (
            {**SPEC_META, "gamma": float("nan")},
            {"type": "x"},
            {**SPEC_META, "shape": [0]},
            {**SPEC_META, "points": True},
        ):
            with pytest.raises(ValueError, match="spec_meta"):
                repo.finish_check(s, lw, accepted=True, log="", spec_meta=bad, stat_spec_json="")


def test_accepted_specs_stream_one_partition(catalog: Catalog, owner: int):
    def accept(name: str, **meta) -> int:
        lw = add(catalog, owner, name)
        with catalog.session() as s:
            repo.claim_for_check(s, lw)
            repo.finish_check(
                s,
                lw,
                accepted=True,
                log="",
                spec_meta={**SPEC_META, **meta},
                stat_spec_json=f'"{name}"',
            )
        return lw

    a = accept("a")
    b = accept("b", points=50)  # another K: same partition
    accept("other-dim", shape=[9])
    accept("other-gamma", gamma=0.2)
    accept("other-type", type="RKMEImageSpecification")
    add(catalog, owner, "pending")
    with catalog.session(read_only=True) as s:
        rows = list(
            repo.accepted_specs(
                s, spec_type="RKMETableSpecification", spec_shape=(8,), spec_gamma=0.1
            )
        )
        assert [(i, stat) for i, _, stat in rows] == [(a, '"a"'), (b, '"b"')]
        assert rows[0][1]["Name"]["Values"] == "a"
        assert repo.accepted_count(s) == 5
        versions = dict(repo.accepted_versions(s))
        assert len(versions) == 5 and a in versions and b in versions
        loaded = repo.get_learnwares(s, [b, a, 10**6, a])
        assert [(lw.id, lw.stat_spec) for lw in loaded] == [(a, '"a"'), (b, '"b"')]
    with catalog.session() as s:
        repo.update_semantic(s, a, semantic("renamed"))
    with catalog.session(read_only=True) as s:
        changed = dict(repo.accepted_versions(s))
        assert changed[a] > versions[a] and changed[b] == versions[b]


def test_metadata_edit_keeps_status_and_refreshes_filters(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "old", scenarios=["Business", "Health"])
    with catalog.session() as s:
        repo.claim_for_check(s, lw)
        before = repo.get_learnware(s, lw).updated_at
    with catalog.session() as s:
        row = repo.update_semantic(
            s, lw, semantic("new", data_type="Image", scenarios=["Health", "Nature"])
        )
        assert row.status == LearnwareStatus.checking
        assert (row.name, row.data_type, row.scenarios) == ("new", "Image", ["Health", "Nature"])
        assert row.updated_at > before
    with catalog.session() as s:
        assert repo.list_learnwares(s, scenario="Business")[1] == 0
        assert repo.list_learnwares(s, scenario="Nature")[1] == 1
        with pytest.raises(LearnwareNotFound):
            repo.update_semantic(s, 10**6, semantic("x"))


def test_replace_package_resets_the_check(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "v1")
    with catalog.session() as s:
        repo.claim_for_check(s, lw)
        repo.finish_check(s, lw, accepted=True, log="ok", spec_meta=SPEC_META, stat_spec_json="{}")
    with catalog.session() as s:
        row, *previous = repo.replace_package(s, lw, sha("v2"), "p/v2", 20)
        assert previous == ["p/v1", None]
    with catalog.session() as s:
        row = repo.get_learnware(s, lw)
        assert row.status == LearnwareStatus.pending
        assert (row.package_key, row.package_size, row.content_sha256) == ("p/v2", 20, sha("v2"))
        assert row.stat_spec is None and row.spec_type is None and row.check_log is None
        assert repo.find_by_sha256(s, sha("v1")) is None


def test_list_filters_and_pages(catalog: Catalog, owner: int):
    with catalog.session() as s:
        bob = repo.create_user(s, "bob").id
    add(catalog, owner, "Iris table", scenarios=["Nature"])
    add(catalog, owner, "Cat pictures", data_type="Image", task_type="Classification")
    add(catalog, owner, "House prices", task_type="Regression", scenarios=["Business"])
    add(catalog, owner, "100% accurate", description="honest", scenarios=["Health"])
    add(catalog, bob, "snake_case model", library_type="PyTorch", license="Apache-2.0")
    accepted = add(catalog, bob, "accepted one", scenarios=["Education"])
    with catalog.session() as s:
        repo.claim_for_check(s, accepted)
        repo.finish_check(s, accepted, accepted=True, log="", spec_meta=None, stat_spec_json=None)

    def names(**filters) -> list[str]:
        with catalog.session(read_only=True) as s:
            items, total = repo.list_learnwares(s, **filters)
            assert total == len(items)
            return sorted(lw.name for lw in items)

    assert names(data_type="Image") == ["Cat pictures"]
    assert names(task_type="Regression") == ["House prices"]
    assert names(library="PyTorch", license="Apache-2.0") == ["snake_case model"]
    assert names(scenario=["Nature", "Health"]) == ["100% accurate", "Iris table"]
    assert names(scenario=[]) == names()
    assert names(status=LearnwareStatus.accepted) == ["accepted one"]
    assert names(status=["pending", "accepted"], owner_id=bob) == [
        "accepted one",
        "snake_case model",
    ]
    assert names(name="IRIS") == ["Iris table"]
    assert names(name="HONEST") == ["100% accurate"]  # the description counts too
    assert names(name="%") == ["100% accurate"]  # a literal percent sign, not a wildcard
    assert names(name="e_c") == ["snake_case model"]  # a literal underscore
    assert names(name="/") == []
    assert names(restricted=True) == ["accepted one"]
    assert len(names(restricted=True, viewer_id=bob)) == 2
    assert len(names(restricted=True, viewer_id=owner)) == 5

    with catalog.session(read_only=True) as s:
        pages = [repo.list_learnwares(s, limit=4, offset=o) for o in (0, 4, 8)]
        assert [total for _, total in pages] == [6, 6, 6]
        ids = [lw.id for items, _ in pages for lw in items]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6  # newest first
        with pytest.raises(ValueError):
            repo.list_learnwares(s, limit=0)
        with pytest.raises(ValueError):
            repo.list_learnwares(s, offset=-1)


# -- users and tokens -----------------------------------------------------------------------


def test_token_authentication(catalog: Catalog):
    now = datetime.now(UTC)
    with catalog.session() as s:
        alice = repo.create_user(s, "alice", Role.admin)
        valid, row = repo.create_token(s, alice.id, "laptop")
        revoked, revoked_row = repo.create_token(s, alice.id, "old")
        expired, _ = repo.create_token(s, alice.id, "gone", expires_at=now - timedelta(seconds=1))
        later, _ = repo.create_token(s, alice.id, "later", expires_at=now + timedelta(days=1))
        assert valid.startswith("wharf_") and len(valid) > 40
        assert row.token_hash == hashlib.sha256(valid.encode()).hexdigest()
        assert repo.revoke_token(s, revoked_row.id, user_id=alice.id + 1) is None
        assert repo.revoke_token(s, revoked_row.id).revoked_at is not None
    with catalog.session() as s:
        user = repo.authenticate(s, valid)
        assert user is not None and (user.name, user.role) == ("alice", Role.admin)
        assert repo.authenticate(s, later).name == "alice"
        for refused in (revoked, expired, "wharf_unknown", "", "x" * 10_000):
            assert repo.authenticate(s, refused) is None
    with catalog.session() as s:
        tokens = repo.list_tokens(s, alice.id)
        assert [t.name for t in tokens] == ["laptop", "old", "gone", "later"]
        assert tokens[0].last_used_at is not None and tokens[2].last_used_at is None
        assert [t.name for t in repo.list_tokens(s, alice.id, include_revoked=False)] == [
            "laptop",
            "gone",
            "later",
        ]
        stored = [t.token_hash for t in s.scalars(select(ApiToken))]
        assert valid not in stored  # only the hash is kept
    with catalog.session(read_only=True) as s:  # why a token is refused
        states = {
            secret: repo.token_state(repo.find_token(s, secret)[1])
            for secret in (valid, revoked, expired, later)
        }
        assert list(states.values()) == ["active", "revoked", "expired", "active"]
        assert repo.find_token(s, "wharf_unknown") is None
        assert repo.lookup_token(s, expired) is None and repo.lookup_token(s, valid)


def test_token_lifetime_policy():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert repo.token_expiry(None, 90, now=now) == now + timedelta(days=90)  # the default
    assert repo.token_expiry(7, 90, now=now) == now + timedelta(days=7)
    assert repo.token_expiry(90, 90, now=now) == now + timedelta(days=90)
    with pytest.raises(ValueError, match="at most 90 days, not 91"):
        repo.token_expiry(91, 90, now=now)
    with pytest.raises(ValueError, match="at least 1 day"):
        repo.token_expiry(0, 90, now=now)
    assert repo.token_expiry(None, 0, now=now) is None  # no limit: no expiry unless asked
    assert repo.token_expiry(3650, 0, now=now) == now + timedelta(days=3650)


def test_user_names_are_unique(catalog: Catalog):
    with catalog.session() as s:
        repo.create_user(s, "alice")
    with catalog.session() as s:
        with pytest.raises(NameTaken):
            repo.create_user(s, "alice")
        assert repo.create_user(s, "bob").role == Role.user  # the session is still usable
        assert repo.get_user_by_name(s, "alice").name == "alice"
        assert repo.get_user_by_name(s, "carol") is None


def test_migrations_0006_and_0007_fill_in_emails_and_models(database_url: str):
    """Users and learnwares that exist before the columns get NAME@localhost and Others."""
    from sqlalchemy import text
    from wharf.market.catalog import make_engine
    from wharf.market.catalog.models import utcnow

    upgrade(database_url, "0005")
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (name, role, created_at) VALUES ('Old Timer', 'user', :t)"),
                {"t": utcnow().replace(tzinfo=None)},
            )
            user_id = conn.execute(text("SELECT id FROM users")).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO learnwares (owner_id, status, semantic_spec, scenarios, "
                    "content_sha256, package_key, package_size, created_at, updated_at) VALUES "
                    "(:u, 'accepted', '{}', '[]', :sha, 'packages/x.zip', 1, :t, :t)"
                ),
                {"u": user_id, "sha": "a" * 64, "t": utcnow().replace(tzinfo=None)},
            )
        upgrade(database_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT email FROM users")).scalar_one() == (
                "old timer@localhost"
            )
            assert conn.execute(text("SELECT model_type FROM learnwares")).scalar_one() == "Others"
    finally:
        engine.dispose()


def test_users_have_an_email_unique_in_any_case(catalog: Catalog):
    with catalog.session() as s:
        assert repo.create_user(s, "Alice").email == "alice@localhost"
        assert repo.create_user(s, "bob", email=" Bob@Example.org ").email == "bob@example.org"
    with catalog.session() as s:
        with pytest.raises(EmailTaken):
            repo.create_user(s, "robert", email="BOB@example.org")
        with pytest.raises(ValueError, match="one address"):
            repo.create_user(s, "carol", email="carol")
        assert repo.get_user_by_email(s, "BOB@EXAMPLE.ORG").name == "bob"
        assert repo.get_user_by_email(s, "not an email") is None


# -- jobs -----------------------------------------------------------------------------------


def test_job_lifecycle_and_idempotent_start(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "jobbed")
    with catalog.session() as s:
        job = repo.create_job(
            s, JobKind.check, owner_id=owner, learnware_id=lw, request={"learnware": lw}
        )
        job_id = job.id
        assert len(job_id) == 32 and job.state == JobState.queued and job.attempts == 0
        assert not repo.set_progress(s, job_id, 0.5, "not started")
    with catalog.session() as s:
        started = repo.start_job(s, job_id, "host:1")
        assert started.state == JobState.running and started.attempts == 1
        assert (started.worker, started.worker_losses) == ("host:1", 0)
        assert repo.start_job(s, job_id, "host:2") is None  # held: a duplicate does not start
        assert started.started_at.tzinfo is not None
        assert repo.set_progress(s, job_id, 0.25, "unpacking")
        with pytest.raises(ValueError):
            repo.set_progress(s, job_id, 1.5, "too far")
    with catalog.session() as s:  # redelivered after a worker died
        assert repo.take_over_job(s, job_id, "host:3", holder="host:2") is None  # not its holder
        again = repo.take_over_job(s, job_id, "host:3", holder="host:1")
        assert (again.attempts, again.worker_losses, again.worker) == (2, 1, "host:3")
        assert repo.beat(s, job_id, "host:3") and not repo.beat(s, job_id, "host:1")
        assert repo.finish_job(s, job_id, {"accepted": True})
    with catalog.session() as s:
        job = repo.get_job(s, job_id)
        assert (job.state, job.progress, job.result, job.stage) == (
            JobState.succeeded,
            1.0,
            {"accepted": True},
            "unpacking",
        )
        assert job.finished_at >= job.started_at >= job.created_at
        assert repo.start_job(s, job_id) is None  # finished: a late redelivery does nothing
        assert not repo.fail_job(s, job_id, "late")
        assert not repo.finish_job(s, job_id, {})
        assert repo.get_job(s, job_id).attempts == 2
        assert repo.start_job(s, "0" * 32) is None and repo.get_job(s, "0" * 32) is None


def test_failed_jobs_and_latest_job(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "twice")
    with catalog.session() as s:
        first = repo.create_job(s, JobKind.check, learnware_id=lw).id
        repo.create_job(s, JobKind.index, learnware_id=lw)
    with catalog.session() as s:
        second = repo.create_job(s, "check", learnware_id=lw).id
        assert repo.fail_job(s, first, "the package is not a zip")
    with catalog.session() as s:
        assert repo.latest_job_for(s, lw, JobKind.check).id == second
        failed = repo.get_job(s, first)
        assert failed.state == JobState.failed and failed.error == "the package is not a zip"
        assert failed.result is None
        repo.delete_learnware(s, lw)
    with catalog.session() as s:  # jobs outlive their learnware, unlinked
        assert s.get(Job, second).learnware_id is None
        assert repo.latest_job_for(s, lw, JobKind.check) is None


def test_timestamps_are_aware_utc(catalog: Catalog, owner: int):
    lw = add(catalog, owner, "clock")
    with catalog.session() as s:
        row = repo.get_learnware(s, lw)
        for value in (row.created_at, row.updated_at):
            assert value.utcoffset() == timedelta(0)
            assert abs(datetime.now(UTC) - value) < timedelta(minutes=1)
        with pytest.raises(ValueError, match="timezone-aware"):
            repo.create_token(s, owner, "naive", expires_at=datetime(2030, 1, 1))
