"""Request and response shapes: the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator
from wharf.market.catalog.storable import UNSTORABLE_TEXT, storable_text


class SpecSummary(BaseModel):
    type: str
    shape: list[int]
    gamma: float
    points: int = Field(description="reduced-set size K")
    num_points: int = Field(description="rows of the data the spec was fitted on")


class LearnwareOut(BaseModel):
    id: str
    owner: str
    status: str = Field(description="pending | checking | accepted | rejected")
    name: str
    description: str
    semantic_spec: dict[str, Any]
    spec: SpecSummary | None
    content_sha256: str
    package_size: int
    created_at: datetime
    updated_at: datetime
    checked_at: datetime | None


class LearnwarePage(BaseModel):
    items: list[LearnwareOut]
    total: int
    limit: int
    offset: int


class Submission(BaseModel):
    learnware_id: str
    job_id: str = Field(description="the check's job; empty when nothing is checked again")
    status: str
    resubmitted: bool = Field(
        default=False,
        description="the package is the caller's own rejected learnware: checked again under "
        "its id, with the semantic spec sent",
    )


class JobOut(BaseModel):
    id: str
    kind: str
    state: str = Field(description="queued | running | succeeded | failed")
    stage: str | None
    progress: float
    learnware_id: str | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SearchAccepted(BaseModel):
    job_id: str
    status_url: str
    job: JobOut | None = Field(
        default=None,
        description="with ?wait=S: the job, ended (the answer is then 200) or still queued or "
        "running when the wait was up (202)",
    )


class BulkImportAccepted(BaseModel):
    job_id: str
    status_url: str
    entries: int = Field(description="manifest lines to import")
    batches: int = Field(description="index tasks the import runs as")


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    user: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"\S",
        description="admin only: create for this user (1 to 100 characters, not blank)",
    )
    role: str | None = Field(default=None, description="admin only: role of a new user")
    email: str | None = Field(
        default=None,
        max_length=254,
        description="admin only: email of a new user (default USER@localhost), what the "
        "learnware client logs in with",
    )
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="days until it expires; default and maximum: the market's token lifetime",
    )

    @field_validator("name", "user")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and not storable_text(value):
            raise ValueError(UNSTORABLE_TEXT)
        return value


class TokenOut(BaseModel):
    id: int
    name: str
    user: str
    token: str | None = Field(default=None, description="shown once, at creation")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
