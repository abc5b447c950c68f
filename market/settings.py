"""All configuration, read once from ``WHARF_*`` environment variables (and nothing else reads
the environment).

The defaults are the *embedded* market: a data directory holding a SQLite catalog, a local
object store and a broker that needs no server. Production sets the database, broker and S3
variables instead, and ``WHARF_ENV=production`` to refuse to start without them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from wharf.market.index.config import CoarseConfig, IndexConfig
from wharf.sandbox import limits as sandbox_defaults
from wharf.specification.limits import SpecLimits

MiB = 1024 * 1024

#: Credentials that ship in documentation, images and tutorials (compared case-insensitively):
#: production refuses them, since whoever reads the same page can use them.
WELL_KNOWN_SECRETS = frozenset(
    {
        "minioadmin",
        "minio",
        "minio123",
        "test",
        "testing",
        "admin",
        "password",
        "secret",
        "changeme",
        "change-me",
        "postgres",
        "akiaiosfodnn7example",  # the AWS documentation's example key pair
        "wjalrxutnfemi/k7mdeng/bpxrficyexamplekey",
        "wharf-test",  # this repository's test suite
        "wharf-test-secret",
    }
)
#: Celery brokers that run as a server of their own (the embedded file broker is not one).
NETWORK_BROKERS = ("redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "sqs")


class Settings(BaseSettings):
    # Errors name the problems, never echo the values: a bad setting may hold a password.
    model_config = SettingsConfigDict(
        env_prefix="WHARF_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Path("wharf-data")

    # "production" refuses to start on anything only fit for a trial: the embedded defaults,
    # well-known credentials, running submitted code unsandboxed, no rate limits
    # (:meth:`production_problems` lists them all at once).
    env: Literal["development", "production"] = "development"

    # A deployment sets this so a process missing its database, broker or S3 settings
    # refuses to start instead of quietly using the embedded defaults of its own.
    require_services: bool = False

    # Catalog: SQLite in the data directory unless a URL is given (postgresql+psycopg://…).
    database_url: str | None = None

    # Celery: a broker that needs no server (kombu's filesystem transport in the data
    # directory) unless a URL is given (redis://…).
    broker_url: str | None = None
    result_backend: str | None = None

    # Object store for packages: a local directory, or S3 (MinIO, AWS, Ceph).
    store: Literal["local", "s3"] = "local"
    store_dir: Path | None = None
    s3_bucket: str = "wharf"
    s3_endpoint_url: str | None = None
    # Where clients outside the deployment reach the store; download links are signed for it.
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_presign_seconds: int = 900
    s3_create_bucket: bool = False

    # Logs: readable text, or one JSON object per line for a log collector.
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    # API behaviour.
    migrate_on_start: bool = Field(
        default=True,
        description="the API migrates the catalog at start; turn off where a migration job "
        "does it and the API's database role may not change the schema",
    )
    public_read: bool = True
    max_upload_bytes: int = 256 * MiB
    max_spec_bytes: int = 64 * MiB
    # Statistical specs from submissions and searches (specification/limits.py): at most
    # spec_max_points points (image specs: spec_max_image_points), spec_max_numbers numbers
    # in all (the reference caps a reduced set at 1,310,720), coordinates within
    # ±spec_max_abs_value, γ within [spec_min_gamma, spec_max_gamma], β on the simplex.
    spec_max_points: int = Field(default=2_000, ge=1)
    spec_max_image_points: int = Field(default=200, ge=1)
    spec_max_numbers: int = Field(default=1_310_720, ge=1)
    spec_max_abs_value: float = Field(default=1e6, gt=0)
    spec_min_gamma: float = Field(default=1e-6, gt=0)
    spec_max_gamma: float = Field(default=1e6, gt=0)
    # API tokens live this many days at most, and this long when no expiry is asked for
    # (0: no limit, and tokens without an expiry never expire).
    token_max_days: int = Field(default=90, ge=0)

    # Rate limits (api/ratelimit.py): requests a minute per API token, or per client address
    # for requests without one; writes (POST, PUT, PATCH, DELETE) have their own budgets.
    rate_limit_enabled: bool = True
    # Where the counters live, shared by every API process: this Redis, else the broker when
    # it is Redis, else this process's memory (the embedded market's single API process).
    rate_limit_redis_url: SecretStr | None = None
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_writes_per_minute: int = Field(default=60, ge=1)
    rate_limit_anonymous_per_minute: int = Field(default=120, ge=1)
    rate_limit_anonymous_writes_per_minute: int = Field(default=20, ge=1)
    # Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client address.
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()

    # Accounts on the pages (api/web): sign-up "open" (active at once), "approval" (an admin
    # approves each new account) or "closed" (admins create users); a sign-in lasts
    # session_days; sign-ins are limited per client address and per email, a minute. The
    # session cookie is Secure when cookie_secure says so, or, left unset, when the request
    # came over HTTPS (the scheme uvicorn takes from a trusted proxy's X-Forwarded-Proto).
    signup: Literal["open", "approval", "closed"] = "approval"
    session_days: float = Field(default=14.0, gt=0, le=365)
    login_per_minute: int = Field(default=10, ge=1)
    login_per_account_per_minute: int = Field(default=5, ge=1)
    cookie_secure: bool | None = None

    # Slow clients get 408. A request's headers must be complete within
    # request_header_timeout_s of the connection's start or of its previous answer, however
    # they trickle in (a server run with `--http wharf.api.server:HttpProtocol`); a body gets
    # request_body_timeout_s, then must have averaged request_body_min_rate bytes a second.
    request_header_timeout_s: float = Field(default=20.0, gt=0)
    request_body_timeout_s: float = Field(default=60.0, gt=0)
    request_body_min_rate: int = Field(default=1024, ge=1)

    # Bulk imports (POST /v1/bulk-imports, admins): the largest bundle, both as uploaded and
    # unpacked, and the manifest lines each index task imports in one catalog transaction.
    bulk_max_bytes: int = Field(default=4096 * MiB, ge=1)
    bulk_batch_size: int = Field(default=1000, ge=1, le=10_000)
    # Bulk submissions (POST /v1/bulk-submissions, any user): a bundle of packages, each
    # checked in the sandbox like a single submission. At most bulk_submit_max_entries
    # entries an upload, and a user's checks queued or running (with the entries of their
    # bulk submissions still being unpacked) at most max_pending_checks, so one upload, or
    # many, cannot queue unbounded work.
    bulk_submit_max_entries: int = Field(default=1000, ge=1, le=10_000)
    max_pending_checks: int = Field(default=2000, ge=1)

    # Submission checks.
    check_soft_time_limit_s: int = 600
    check_time_limit_s: int = 660
    sandbox: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = Field(
        default=False,
        description="development only: run submitted code without bubblewrap when it is missing",
    )
    # A model run's limits; the defaults are the sandbox's own (wharf.sandbox.limits).
    model_time_limit_s: int = sandbox_defaults.TIME_S
    model_memory_bytes: int = sandbox_defaults.MEMORY_BYTES
    model_max_processes: int = sandbox_defaults.MAX_PROCESSES
    model_max_file_bytes: int = sandbox_defaults.MAX_FILE_BYTES
    # The most a model run may write in all: its /out is a tmpfs of this size and its
    # results reach the worker's disk through a channel carrying no more (default: twice
    # model_max_file_bytes).
    model_max_output_bytes: int | None = Field(default=None, ge=1)
    install_timeout_s: int = sandbox_defaults.INSTALL_TIMEOUT_S
    # Requirements resolve and download on the host from this index (default PyPI) and
    # these find-links (a folder or page of wheels), pip's configuration files ignored.
    pip_index_url: str | None = None
    pip_find_links: str | None = None
    # The most a requirements environment's wheels may hold unpacked, read from their zip
    # directories before anything installs; also the largest file the install may write.
    install_max_bytes: int = Field(default=sandbox_defaults.INSTALL_MAX_BYTES, ge=1)
    env_cache_dir: Path | None = None

    # Lost work: a running task refreshes its job's heartbeat every job_heartbeat_s; a job
    # silent for job_lost_after_s (or whose process is gone) is sent again by the workers'
    # reaper; a job whose workers died job_max_worker_losses times fails with the reason.
    job_heartbeat_s: float = Field(default=5.0, gt=0)
    job_lost_after_s: float = Field(default=30.0, gt=0)
    job_max_worker_losses: int = Field(default=3, ge=1)
    # Lost messages: a queued job whose broker message is gone (a broker restarted without
    # persistence) is sent again job_lost_after_s after it was sent, at most
    # job_max_worker_losses times; then it fails, saying so (workers/reconcile.py).
    # Scratch space: each worker process works in a folder of its own under scratch_dir
    # (default: wharf-scratch in the system temporary folder), removed when the process is
    # gone (workers/scratch.py). Partial uploads in a local store (.part files) whose writer
    # is gone are removed at once, others after store_partial_max_age_s; on S3, multipart
    # uploads left unfinished that long are aborted.
    scratch_dir: Path | None = None
    store_partial_max_age_s: float = Field(default=3600.0, gt=0)
    # A request may wait for a job to end (GET /v1/jobs/{id}?wait=S, POST /v1/searches?wait=S)
    # at most this many seconds; a longer wait asked for is cut to it. Reverse proxies must
    # allow a response this long in coming.
    job_wait_max_s: float = Field(default=30.0, ge=0, le=600)

    # Search.
    search_time_limit_s: int = 120
    # The search workers' index (market/index): partitions holding at most this many RKME
    # points are scanned exactly; larger ones go through FAISS, which proposes at least
    # this many candidates for exact re-ranking. A flat FAISS index up to index_flat_max
    # learnwares, IVF beyond (SQ8 codes past the memory budget), nprobe tuned for the recall.
    # The defaults are the index's own (market/index/config.py).
    index_exact_max_rows: int = Field(default=IndexConfig.exact_max_rows, ge=0)
    index_min_candidates: int = Field(default=IndexConfig.min_candidates, ge=1)
    index_embedding_size: int = Field(default=IndexConfig.embedding_size, ge=2)
    index_flat_max: int = Field(default=CoarseConfig.flat_max, ge=1)
    index_memory_budget_bytes: int = Field(default=CoarseConfig.memory_budget_bytes, ge=1)
    index_target_recall: float = Field(default=CoarseConfig.target_recall, gt=0, le=1)
    # Image partitions likewise, with their own thresholds: an NNGP kernel pair costs about a
    # thousand Gaussian ones.
    index_image_exact_max_rows: int = Field(default=IndexConfig.image_exact_max_rows, ge=0)
    index_image_min_candidates: int = Field(default=IndexConfig.image_min_candidates, ge=1)
    # Where image partitions run the NNGP kernel: "cpu", or "cuda"/"cuda:N" on a GPU worker.
    index_image_device: str = IndexConfig.image_device
    # A search worker writes a snapshot of its index to the store after this many changes
    # (0: never); new workers start from the newest snapshot and the change log after it.
    index_snapshot_every: int = Field(default=5_000, ge=0)

    # The heterogeneous market (market/hetero): the map is trained on the index queue, again
    # after this many new eligible acceptances since the newest map (0: only when an admin
    # asks); hetero_epochs passes over the eligible learnwares, each taking a few of every
    # RKME's points (one: a map starts from MiniLM's word vectors, and on the bundled-tables
    # experiment more passes find no more learnwares of the user's task); where training and
    # mapping run ("auto": CUDA when present).
    hetero_retrain_after: int = Field(default=100, ge=0)
    hetero_epochs: int = Field(default=1, ge=1, le=1000)
    hetero_seed: int = Field(default=0, ge=0)
    hetero_device: str = "auto"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _services_given(self) -> Settings:
        # Production checks these too, among the rest, so all its problems show at once.
        if self.require_services and self.env != "production":
            missing = [
                name
                for name, ok in (
                    ("WHARF_DATABASE_URL", self.database_url),
                    ("WHARF_BROKER_URL", self.broker_url),
                    ("WHARF_STORE=s3", self.store == "s3"),
                )
                if not ok
            ]
            if missing:
                raise ValueError(
                    "WHARF_REQUIRE_SERVICES is set, so the embedded defaults are not used; "
                    f"set {', '.join(missing)}"
                )
        return self

    @model_validator(mode="after")
    def _fit_for_production(self) -> Settings:
        if self.env == "production":
            problems = self.production_problems()
            if problems:
                raise ValueError(
                    "WHARF_ENV=production, but these settings are only fit for a trial:\n"
                    + "\n".join(f"  - {p}" for p in problems)
                    + "\n(fix them all, or set WHARF_ENV=development to try things out)"
                )
        return self

    def production_problems(self) -> list[str]:
        """Everything that keeps these settings from running a production market."""
        problems = []
        if not self.database_url or self.database_url.startswith("sqlite"):
            problems.append(
                "WHARF_DATABASE_URL must name a PostgreSQL database, not the embedded SQLite "
                "catalog"
            )
        scheme = (self.broker_url or "").partition("://")[0].partition("+")[0]
        if scheme not in NETWORK_BROKERS:
            problems.append(
                "WHARF_BROKER_URL must be a network broker (redis://, amqp://…), not "
                + (f"{scheme}://" if self.broker_url else "the embedded file broker")
            )
        for name, url in (
            ("WHARF_DATABASE_URL", self.database_url),
            ("WHARF_BROKER_URL", self.broker_url),
        ):
            if _is_well_known(_url_password(url)):
                problems.append(f"{name} holds a well-known password")
        if self.store != "s3":
            problems.append("WHARF_STORE must be s3: a local store lives on one machine's disk")
        for name, secret in (
            ("WHARF_S3_ACCESS_KEY_ID", self.s3_access_key_id),
            ("WHARF_S3_SECRET_ACCESS_KEY", self.s3_secret_access_key),
        ):
            value = secret.get_secret_value().strip() if secret else ""
            if not value:
                problems.append(f"{name} is not set")
            elif _is_well_known(value):
                problems.append(f"{name} is a well-known default credential: use your own")
        if self.allow_unsandboxed:
            problems.append("WHARF_ALLOW_UNSANDBOXED is on: submitted code could run unsandboxed")
        if self.sandbox == "none":
            problems.append("WHARF_SANDBOX=none runs submitted code without a sandbox")
        if not self.rate_limit_enabled:
            problems.append("WHARF_RATE_LIMIT_ENABLED is off")
        elif self.rate_limit_redis is None:
            problems.append(
                "rate limits need a Redis that every API process shares: set "
                "WHARF_RATE_LIMIT_REDIS_URL, or use a redis:// WHARF_BROKER_URL"
            )
        return problems

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def rate_limit_redis(self) -> str | None:
        """The Redis URL of the rate-limit counters, or ``None`` to count in process memory."""
        if self.rate_limit_redis_url is not None:
            return self.rate_limit_redis_url.get_secret_value()
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def job_ends_redis(self) -> str | None:
        """The Redis where workers announce the jobs they end (the broker, when it is Redis),
        or ``None``: requests waiting for a job then read the catalog now and then."""
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def results(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return f"file://{(self.data_dir / 'results').resolve()}"

    @property
    def objects_dir(self) -> Path:
        return (self.store_dir or self.data_dir / "objects").resolve()

    @property
    def model_output_limit_bytes(self) -> int:
        """The output limit of a model run (``model_max_output_bytes`` or its default)."""
        return self.model_max_output_bytes or 2 * self.model_max_file_bytes

    @property
    def envs_dir(self) -> Path:
        return (self.env_cache_dir or self.data_dir / "envs").resolve()

    @property
    def spec_limits(self) -> SpecLimits:
        """What a statistical spec from a developer or a user may hold."""
        return SpecLimits.for_market(
            max_points=self.spec_max_points,
            max_image_points=self.spec_max_image_points,
            max_numbers=self.spec_max_numbers,
            max_abs_value=self.spec_max_abs_value,
            gamma_range=(self.spec_min_gamma, self.spec_max_gamma),
        )


def _url_password(url: str | None) -> str | None:
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        return None
    return unquote(password) if password else None


def _is_well_known(secret: str | None) -> bool:
    return secret is not None and secret.strip().lower() in WELL_KNOWN_SECRETS


@lru_cache
def get_settings() -> Settings:
    return Settings()
