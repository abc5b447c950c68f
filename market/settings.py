"""All configuration, read once from ``WHARF_*`` environment variables (and nothing else reads
the environment).

The defaults are the *embedded* market: a data directory holding a SQLite catalog, a local
object store and a broker that needs no server. Production sets the database, broker and S3
variables instead.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHARF_", extra="ignore")

    data_dir: Path = Path("wharf-data")

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

    # Submission checks.
    check_soft_time_limit_s: int = 600
    check_time_limit_s: int = 660
    sandbox: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = Field(
        default=False,
        description="development only: run submitted code without bubblewrap when it is missing",
    )
    model_time_limit_s: int = 60
    model_memory_bytes: int = 2048 * MiB
    model_max_processes: int = 64
    model_max_file_bytes: int = 64 * MiB
    install_timeout_s: int = 300
    env_cache_dir: Path | None = None

    # Search.
    search_time_limit_s: int = 120
    # The search workers' index (market/index): partitions holding at most this many RKME
    # points are scanned exactly; larger ones go through FAISS, which proposes at least
    # this many candidates for exact re-ranking. A flat FAISS index up to index_flat_max
    # learnwares, IVF beyond (SQ8 codes past the memory budget), nprobe tuned for the recall.
    index_exact_max_rows: int = Field(default=100_000, ge=0)
    index_min_candidates: int = Field(default=200, ge=1)
    index_embedding_size: int = Field(default=256, ge=2)
    index_flat_max: int = Field(default=50_000, ge=1)
    index_memory_budget_bytes: int = Field(default=3 * 1024 * MiB, ge=1)
    index_target_recall: float = Field(default=0.99, gt=0, le=1)
    # A search worker writes a snapshot of its index to the store after this many changes
    # (0: never); new workers start from the newest snapshot and the change log after it.
    index_snapshot_every: int = Field(default=5_000, ge=0)

    @model_validator(mode="after")
    def _services_given(self) -> Settings:
        if self.require_services:
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

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

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
    def envs_dir(self) -> Path:
        return (self.env_cache_dir or self.data_dir / "envs").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
