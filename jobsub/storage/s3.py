"""S3Store: any S3-compatible endpoint (AWS S3, Huawei OBS, MinIO, Ceph, moto) through boto3.

Settings are the conservative ones that S3-compatible servers accept: checksums only when an operation
requires them, path-style addressing when asked, botocore's standard retry mode with a bounded count and a
connection pool sized to the transfer concurrency. Integrity is checked by jobsub itself (part ETag vs our MD5,
SHA-256 in object metadata), because some servers accept a wrong Content-MD5.
"""

from __future__ import annotations

import builtins
import io
from collections.abc import Callable, Iterator
from typing import Any

from jobsub.errors import (
    BucketNotFoundError,
    ConditionalWriteUnsupported,
    CredentialsError,
    EndpointError,
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    UploadNotFoundError,
)
from jobsub.storage.base import FileRange, ListResult, ObjectInfo, PartData, PartInfo, ProgressCallback, UploadInfo

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
    "403",
    "Forbidden",
}


class _ProgressBody(io.RawIOBase):
    """A seekable view of bytes or of a FileRange that reports what botocore reads, and rewinds the count
    when a retry seeks back. A FileRange is read from the file as botocore asks, never held whole."""

    def __init__(self, data: PartData, progress: ProgressCallback | None) -> None:
        self._source = data
        self._view = memoryview(data) if isinstance(data, bytes) else None
        self._length = len(data)
        self._pos = 0
        self._reported = 0
        self._progress = progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._length

    def read(self, size: int | None = -1) -> bytes:
        end = self._length if size is None or size < 0 else min(self._length, self._pos + size)
        if self._view is not None:
            chunk = bytes(self._view[self._pos : end])
        else:
            assert isinstance(self._source, FileRange)
            chunk = self._source.read(self._pos, end - self._pos)
            end = self._pos + len(chunk)
        self._pos = end
        if self._progress and self._pos > self._reported:
            self._progress(self._pos - self._reported)
            self._reported = self._pos
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        if self._progress and self._pos < self._reported:
            self._progress(self._pos - self._reported)
            self._reported = self._pos
        return self._pos

    def tell(self) -> int:
        return self._pos


class S3Store:
    def __init__(
        self,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        aws_profile: str | None = None,
        max_pool_connections: int = 16,
        max_attempts: int = 5,
        connect_timeout: float = 10,
        read_timeout: float = 60,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.description = endpoint_url or "AWS S3"
        try:
            self._session = boto3.session.Session(profile_name=aws_profile)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound
            raise CredentialsError(f"AWS profile {aws_profile!r} not found in ~/.aws: {type(exc).__name__}") from None
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = region or self._session.region_name or "us-east-1"
        self._client = self._session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        from jobsub.redact import track_credentials

        track_credentials(self._session, self._client)  # whatever botocore resolved is redacted everywhere

    # -- error translation -------------------------------------------------------------------------------
    def _key_hint(self) -> str:
        try:
            creds = self._session.get_credentials()
        except Exception:
            return ""
        key_id = getattr(creds, "access_key", None) if creds else None
        return f" (access key id ...{key_id[-4:]})" if key_id and len(key_id) >= 8 else ""

    def _translate(self, exc: Exception, bucket: str = "", key: str = "", upload_id: str = "") -> Exception:
        from botocore import exceptions as bex

        where = f"s3://{bucket}/{key}" if bucket else self.description
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return CredentialsError(
                f"no S3 credentials found for {self.description}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, use ~/.aws/credentials, or name an aws_profile in the jobsub profile"
            )
        if isinstance(
            exc,
            bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ReadTimeoutError | bex.ConnectionClosedError,
        ):
            return EndpointError(f"cannot reach {self.description}: {type(exc).__name__}; check the endpoint URL")
        if isinstance(exc, bex.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            message = str(error.get("Message") or "")  # Ceph RGW sends no Message: botocore gives None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "QuotaExceeded":  # Ceph answers 403 for a full bucket or user quota: not a credentials problem
                return StorageError(
                    f"{self.description} refused {where}: the quota of the bucket or user is exceeded "
                    "(QuotaExceeded); delete objects or ask for a larger quota"
                )
            if code in _CREDENTIAL_CODES or status == 403:
                return CredentialsError(
                    f"{self.description} rejected the credentials{self._key_hint()} ({code or status}) "
                    f"for {where}: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the aws_profile"
                )
            if code == "NoSuchBucket":
                return BucketNotFoundError(
                    f"bucket {bucket!r} does not exist at {self.description}: create it or fix the URI"
                )
            if code == "NoSuchUpload" or (code == "NoSuchKey" and upload_id):  # Ceph: ListParts after abort
                return UploadNotFoundError(f"multipart upload {upload_id} for {where} no longer exists")
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFoundError(f"no object {where}")
            if code in ("BadDigest", "XAmzContentSHA256Mismatch"):  # Ceph checks both (SHA-256: signed HTTP)
                what = "Content-MD5" if code == "BadDigest" else "signed SHA-256"
                return IntegrityError(
                    f"{self.description} refused the bytes sent for {where}: they did not match their {what} "
                    f"({code}), so they were changed on the way"
                )
            if code in ("InvalidDigest", "InvalidPart"):
                return IntegrityError(f"{self.description} reported {code} for {where}")
            detail = f": {message}" if message else ""
            err = StorageError(f"{self.description} answered {code or 'an error'} (HTTP {status}) for {where}{detail}")
            err.transient = status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError")
            return err
        if isinstance(exc, bex.BotoCoreError):
            err = StorageError(f"request to {self.description} failed for {where}: {type(exc).__name__}")
            err.transient = True
            return err
        return exc

    def _call(self, method: str, *, _ctx: tuple[str, str, str] = ("", "", ""), **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(**kwargs)
        except Exception as exc:
            translated = self._translate(exc, *_ctx)
            if translated is exc:
                raise
            raise translated from None

    # -- objects -----------------------------------------------------------------------------------------
    def check_bucket(self, bucket: str) -> None:
        """Fail early with a clear message when the bucket is missing or the credentials are wrong."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404:
                raise BucketNotFoundError(
                    f"bucket {bucket!r} does not exist at {self.description}: create it or fix the URI"
                ) from None
            raise self._translate(exc, bucket) from None
        except Exception as exc:
            translated = self._translate(exc, bucket)
            if translated is exc:
                raise
            raise translated from None

    def list_buckets(self) -> list[str]:
        response = self._call("list_buckets")
        return sorted(b["Name"] for b in response.get("Buckets", []))

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            response = self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404:
                return None
            raise self._translate(exc, bucket, key) from None
        except Exception as exc:
            translated = self._translate(exc, bucket, key)
            if translated is exc:
                raise
            raise translated from None
        return ObjectInfo(
            key,
            response["ContentLength"],
            response.get("ETag", "").strip('"'),
            response.get("LastModified"),
            {k.lower(): v for k, v in response.get("Metadata", {}).items()},
        )

    def get_range(
        self, bucket: str, key: str, start: int, length: int, progress: ProgressCallback | None = None
    ) -> bytes:
        if length <= 0:
            return b""
        response = self._call(
            "get_object", _ctx=(bucket, key, ""), Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
        )
        chunks = []
        try:
            for chunk in response["Body"].iter_chunks(1 << 20):
                chunks.append(chunk)
                if progress:
                    progress(len(chunk))
        except Exception as exc:
            if progress:
                progress(-sum(len(c) for c in chunks))
            translated = self._translate(exc, bucket, key)
            raise (
                translated if translated is not exc else StorageError(f"reading s3://{bucket}/{key}: {exc}")
            ) from None
        return b"".join(chunks)

    def get_range_to(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        write: Callable[[int, bytes], None],
        progress: ProgressCallback | None = None,
    ) -> int:
        """Like get_range, but each chunk goes to `write(offset, chunk)` as it arrives (downloads write it to
        the file), so no part is ever held whole: memory is one chunk per worker. Returns the bytes written."""
        if length <= 0:
            return 0
        response = self._call(
            "get_object", _ctx=(bucket, key, ""), Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
        )
        written = 0
        try:
            for chunk in response["Body"].iter_chunks(1 << 20):
                write(start + written, chunk)
                written += len(chunk)
                if progress:
                    progress(len(chunk))
        except OSError:
            if progress:
                progress(-written)
            raise  # a local write failed (full disk): not the server's fault
        except Exception as exc:
            if progress:
                progress(-written)
            translated = self._translate(exc, bucket, key)
            raise (
                translated if translated is not exc else StorageError(f"reading s3://{bucket}/{key}: {exc}")
            ) from None
        return written

    def get(self, bucket: str, key: str) -> bytes:
        response = self._call("get_object", _ctx=(bucket, key, ""), Bucket=bucket, Key=key)
        try:
            return response["Body"].read()
        except Exception as exc:
            translated = self._translate(exc, bucket, key)
            raise (
                translated if translated is not exc else StorageError(f"reading s3://{bucket}/{key}: {exc}")
            ) from None

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        metadata: dict[str, str] | None = None,
        content_md5: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": _ProgressBody(data, progress)}
        if metadata:
            kwargs["Metadata"] = metadata
        if content_md5:
            kwargs["ContentMD5"] = content_md5
        response = self._call("put_object", _ctx=(bucket, key, ""), **kwargs)
        return response.get("ETag", "").strip('"')

    def put_if_absent(self, bucket: str, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "PreconditionFailed" or status == 412:
                return False
            if code == "ConditionalRequestConflict" or status == 409:
                return False  # another writer is creating it at this very moment
            if code == "NotImplemented" or status == 501:
                raise ConditionalWriteUnsupported(
                    f"{self.description} does not support conditional writes (If-None-Match)"
                ) from None
            raise self._translate(exc, bucket, key) from None
        except Exception as exc:
            translated = self._translate(exc, bucket, key)
            if translated is exc:
                raise
            raise translated from None

    def iter_objects(self, bucket: str, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            response = self._call("list_objects_v2", _ctx=(bucket, prefix, ""), **kwargs)
            for item in response.get("Contents", []):
                yield ObjectInfo(item["Key"], item["Size"], item.get("ETag", "").strip('"'), item.get("LastModified"))
            if not response.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = response["NextContinuationToken"]
            kwargs.pop("StartAfter", None)

    def list(self, bucket: str, prefix: str = "", delimiter: str = "/") -> ListResult:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": delimiter}
        objects: builtins.list[ObjectInfo] = []
        prefixes: builtins.list[str] = []
        while True:
            response = self._call("list_objects_v2", _ctx=(bucket, prefix, ""), **kwargs)
            for item in response.get("Contents", []):
                objects.append(
                    ObjectInfo(item["Key"], item["Size"], item.get("ETag", "").strip('"'), item.get("LastModified"))
                )
            prefixes.extend(p["Prefix"] for p in response.get("CommonPrefixes", []))
            if not response.get("IsTruncated"):
                return ListResult(objects, prefixes)
            kwargs["ContinuationToken"] = response["NextContinuationToken"]

    def delete(self, bucket: str, key: str) -> None:
        self._call("delete_object", _ctx=(bucket, key, ""), Bucket=bucket, Key=key)

    # -- multipart ---------------------------------------------------------------------------------------
    def create_multipart(self, bucket: str, key: str, metadata: dict[str, str] | None = None) -> str:
        response = self._call(
            "create_multipart_upload", _ctx=(bucket, key, ""), Bucket=bucket, Key=key, Metadata=metadata or {}
        )
        return response["UploadId"]

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: PartData,
        content_md5: str,
        progress: ProgressCallback | None = None,
    ) -> str:
        response = self._call(
            "upload_part",
            _ctx=(bucket, key, upload_id),
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=_ProgressBody(data, progress),
            ContentMD5=content_md5,
        )
        return response.get("ETag", "").strip('"')

    def list_parts(self, bucket: str, key: str, upload_id: str) -> builtins.list[PartInfo]:
        parts: builtins.list[PartInfo] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        while True:
            response = self._call("list_parts", _ctx=(bucket, key, upload_id), **kwargs)
            for item in response.get("Parts", []):
                parts.append(PartInfo(item["PartNumber"], item["Size"], item["ETag"].strip('"')))
            if not response.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = response["NextPartNumberMarker"]

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]) -> str:
        response = self._call(
            "complete_multipart_upload",
            _ctx=(bucket, key, upload_id),
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{e}"'} for n, e in parts]},
        )
        return response.get("ETag", "").strip('"')

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self._call("abort_multipart_upload", _ctx=(bucket, key, upload_id), Bucket=bucket, Key=key, UploadId=upload_id)

    def list_uploads(self, bucket: str, prefix: str = "") -> builtins.list[UploadInfo]:
        uploads: builtins.list[UploadInfo] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            response = self._call("list_multipart_uploads", _ctx=(bucket, prefix, ""), **kwargs)
            for item in response.get("Uploads", []):
                uploads.append(UploadInfo(item["Key"], item["UploadId"], item.get("Initiated")))
            if not response.get("IsTruncated"):
                return uploads
            kwargs["KeyMarker"] = response["NextKeyMarker"]
            kwargs["UploadIdMarker"] = response["NextUploadIdMarker"]
