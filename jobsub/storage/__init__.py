"""Object stores: one protocol (base.ObjectStore), a folder backend and an S3-compatible backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobsub.storage.base import SHA256_META, ListResult, ObjectInfo, ObjectStore, PartInfo, UploadInfo

if TYPE_CHECKING:
    from jobsub.config import Profile

__all__ = ["SHA256_META", "ListResult", "ObjectInfo", "ObjectStore", "PartInfo", "UploadInfo", "open_store"]


def open_store(profile: Profile, concurrency: int = 8, read_timeout: float | None = None) -> ObjectStore:
    """The store a profile names; boto3 is imported only when an S3 profile is used."""
    if profile.storage == "local":
        from jobsub.storage.local import LocalStore

        return LocalStore(profile.local_root(), shared=profile.shared_store)
    from jobsub.storage.checksums import profile_algorithm
    from jobsub.storage.s3 import S3Store

    return S3Store(
        endpoint_url=profile.effective_endpoint(),
        region=profile.region,
        addressing_style=profile.addressing_style,
        aws_profile=profile.aws_profile,
        max_pool_connections=max(10, concurrency + 4),
        connect_timeout=profile.connect_timeout,
        read_timeout=read_timeout or profile.read_timeout,
        checksum_algorithm=profile_algorithm(profile),
    )
