"""Where evidence, the latest frames and the case database are kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator

from citywatch.vision.params import PositiveDuration, Strict


class EvidenceStorageConfig(Strict):
    endpoint: str = Field(description="S3 endpoint host:port (MinIO in production, SeaweedFS in tests)")
    bucket: str = Field("citywatch-evidence", description="Bucket that holds evidence objects")
    access_key: str = Field(description="S3 access key; write ${ENV_VAR}, never the key itself")
    secret_key: str = Field(description="S3 secret key; write ${ENV_VAR}, never the key itself")
    secure: bool = Field(False, description="Use HTTPS to reach the object store")
    jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG quality of evidence images")


class LiveFramesConfig(Strict):
    """Each preset's latest frame, for the cameras page (same endpoint and keys as `evidence`)."""

    enabled: bool = Field(True, description="Keep each preset's latest frame for the cameras page")
    bucket: str = Field(
        "citywatch-live", description="Bucket of latest frames (overwritten; keep it apart from the evidence bucket)"
    )
    every: PositiveDuration = Field(timedelta(seconds=30), description="At most one stored frame per preset this often")
    width: int = Field(640, ge=160, le=3840, description="Width of a stored frame in pixels (height keeps the aspect)")
    jpeg_quality: int = Field(70, ge=30, le=100, description="JPEG quality of stored frames")


class StorageConfig(Strict):
    evidence: EvidenceStorageConfig
    live: LiveFramesConfig = Field(default_factory=LiveFramesConfig, description="Latest frames for the cameras page")
    database: str = Field("sqlite:///var/citywatch.db", description="SQLAlchemy URL of the case database")
    spool_dir: Path = Field(Path("var/spool"), description="Evidence waits here while the object store is down")

    @model_validator(mode="after")
    def _separate_buckets(self) -> StorageConfig:
        if self.live.enabled and self.live.bucket == self.evidence.bucket:
            raise ValueError(
                f"live.bucket: {self.live.bucket!r} is the evidence bucket; latest frames are overwritten all day "
                "and must not pile up under evidence retention: name another bucket"
            )
        return self
