"""S3Store: any S3-compatible endpoint (AWS S3, Huawei OBS, MinIO, Ceph, moto) through boto3.

Settings are the conservative ones that S3-compatible servers accept: path-style addressing when asked,
botocore's standard retry mode with a bounded count and a connection pool sized to the transfer concurrency.
Integrity is checked by jobsub itself (part ETag vs our MD5, or the flexible checksum the server echoes; SHA-256
in object metadata), because some servers accept a wrong Content-MD5.

Checksums: the algorithm is resolved once from the profile (storage.checksums.profile_algorithm) and carried
in the transfer options; the transfer engine computes each part's checksum and passes the Checksum object, so
botocore sends it instead of computing it again. MD5 goes as Content-MD5; `crc32|crc32c|crc64nvme|sha256` as
x-amz-checksum-* (and the algorithm is declared at CreateMultipartUpload). A server that rejects the checksum
headers (InvalidArgument / NotImplemented / InvalidRequest naming a checksum) raises ChecksumUnsupportedError,
and the uploader falls back to MD5 for the rest of the run, with a message.

Timeouts: connect 10 s, read 60 s (profile `read_timeout`, `--read-timeout`). A request that gets no reply in
time is not retried by botocore: it fails at once with `endpoint not answering: URL (no reply in N s)`, so a
silent endpoint costs one read timeout, not attempts x timeout.
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from jobsub.config import strip_userinfo
from jobsub.errors import (
    BucketNotFoundError,
    ChecksumUnsupportedError,
    ConditionalWriteUnsupported,
    ConfigError,
    CredentialsError,
    EndpointError,
    EndpointTimeoutError,
    InsufficientSpaceError,
    IntegrityError,
    JobsubError,
    ObjectChangedError,
    ObjectNotFoundError,
    RequestRejectedError,
    StorageError,
    UploadNotFoundError,
)
from jobsub.storage.base import FileRange, ListResult, ObjectInfo, PartData, PartInfo, ProgressCallback, UploadInfo

if TYPE_CHECKING:
    from jobsub.storage.checksums import Checksum

#: botocore parameter / response member per flexible checksum algorithm
CHECKSUM_MEMBERS = {
    "crc32": "ChecksumCRC32",
    "crc32c": "ChecksumCRC32C",
    "crc64nvme": "ChecksumCRC64NVME",
    "sha256": "ChecksumSHA256",
}


#: A parameter jobsub adds to PutObject/UploadPart for a precomputed payload hash: taken out again before
#: botocore validates the parameters (``provide-client-params``) and kept in the request context for the signer.
_PAYLOAD_PARAM = "JobsubPayloadSha256"
_PAYLOAD_CONTEXT = "jobsub_payload_sha256"
#: The signer (in botocore's AUTH_TYPE_MAPS) for a request whose payload hash jobsub computed already.
_PRECOMPUTED_SIGNER = "jobsub-s3v4-precomputed-payload"
#: Where the signed-payload probe writes (refused on a verifying server; deleted at once on any other).
PROBE_PREFIX = ".jobsub/probe/"


def _checksum_params(checksum: Checksum | None) -> dict[str, str]:
    """botocore parameters for one checksum: ContentMD5 for MD5, the precomputed signed payload hash for a
    signed SHA-256, the algorithm and its member otherwise."""
    if checksum is None:
        return {}
    if checksum.is_md5:
        return {"ContentMD5": checksum.value}
    if checksum.is_signed:
        return {_PAYLOAD_PARAM: checksum.hex}
    if checksum.algorithm in CHECKSUM_MEMBERS:
        return {"ChecksumAlgorithm": checksum.algorithm.upper(), CHECKSUM_MEMBERS[checksum.algorithm]: checksum.value}
    return {}


def _register_precomputed_signer() -> None:
    """Add jobsub's signer to botocore's table (once per process; a new name, botocore's own are untouched).

    botocore's S3 signers always hash the body themselves (``CrtS3SigV4Auth._get_existing_sha256`` returns
    None, ``S3SigV4Auth`` overwrites X-Amz-Content-SHA256 with ``payload()``) and, over HTTPS, sign
    UNSIGNED-PAYLOAD for a streamed body. This one signs the SHA-256 jobsub computed in its hash pass, over
    HTTP and HTTPS alike, so the body is hashed once and the server checks it.
    """
    import botocore.auth

    if _PRECOMPUTED_SIGNER in botocore.auth.AUTH_TYPE_MAPS:
        return

    class PrecomputedPayloadS3Auth(botocore.auth.S3SigV4Auth):
        def payload(self, request: Any) -> str:
            value = request.context.get(_PAYLOAD_CONTEXT)
            return str(value) if value else str(super().payload(request))

    botocore.auth.AUTH_TYPE_MAPS[_PRECOMPUTED_SIGNER] = PrecomputedPayloadS3Auth


class _NoReply(Exception):
    """Raised from botocore's retry hook when a request timed out: a silent endpoint is not retried."""


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

    def readinto(self, buffer: Any) -> int:
        """awscrt (botocore's CRT signer) reads bodies with readinto."""
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        if self._progress and self._pos < self._reported:
            self._progress(self._pos - self._reported)
            self._reported = self._pos
        return self._pos

    def tell(self) -> int:
        return self._pos


#: bytes read from the socket per chunk of a download (one buffer per part worker)
_READ_BUFFER = 1 << 20


class _ReadError(OSError):
    """A socket error while reading a body (its cause), told apart from an error of the local write."""


class _ShortBody(Exception):
    """The connection closed before the body's Content-Length was read (the count of missing bytes)."""


def _check_content_range(response: dict[str, Any], bucket: str, key: str, start: int, length: int) -> None:
    """Refuse a ranged GET's answer that is not the range asked for, before any of its bytes is written: a
    server that ignores Range (200 with the whole object) or answers another range would put bytes at the
    wrong offsets. A 200 is accepted only where the range asked for is the whole object."""
    got = str(response.get("ContentRange") or "")
    want = f"bytes {start}-{start + length - 1}/"
    if got.startswith(want):
        return
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if not got and status == 200 and start == 0 and response.get("ContentLength") == length:
        return
    body = response.get("Body")
    if body is not None:
        body.close()
    shown = got[:80] or f"HTTP {status} without a Content-Range"
    raise RequestRejectedError(
        f"s3://{bucket}/{key}: the server answered the ranged GET of bytes {start}-{start + length - 1} with "
        f"{shown}; refused (it does not serve byte ranges as S3 does)"
    )


def _readinto_stream(body: Any, size: int) -> Iterator[memoryview]:
    """The body of a GetObject as views of one reused buffer, read straight from the socket.

    botocore's StreamingBody wraps a urllib3 response (decode_content off) over an http.client response;
    http.client's readinto fills our buffer from the socket and keeps the Content-Length (or chunked)
    accounting: a body that ends before its Content-Length raises _ShortBody (a retryable StorageError for
    the caller), as urllib3 did. Where the layers are not the expected ones (another botocore, or a body
    already partly read through urllib3), iter_chunks is used instead.
    """
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    already_read: int = getattr(raw, "_fp_bytes_read", 0) if raw is not None else 0
    if raw is None or fp is None or not hasattr(fp, "readinto") or already_read:
        for data in body.iter_chunks(size):
            yield memoryview(data)
        return
    buffer = bytearray(size)
    view = memoryview(buffer)
    clean = False
    try:
        while True:
            try:
                n = fp.readinto(view)
            except OSError as exc:
                raise _ReadError(str(exc)) from exc
            if not n:
                break
            yield view[:n]
        missing = getattr(fp, "length", None)  # http.client counts down the Content-Length
        if missing:
            raise _ShortBody(missing)
        clean = True
    finally:
        if not clean:
            raw.close()  # a half-read body: the connection cannot be reused
        if fp.isclosed():
            raw.release_conn()  # back to the pool (closed ones reconnect on their next use)


#: botocore's attempts per request, the first one included (the first try and 4 retries), unless
#: AWS_MAX_ATTEMPTS or the AWS profile's max_attempts says otherwise; jobsub's own part retries
#: (TransferOptions.part_attempts) come on top.
DEFAULT_MAX_ATTEMPTS = 5
MAX_MAX_ATTEMPTS = 20


def _max_attempts(session: Any) -> int:
    """AWS_MAX_ATTEMPTS (or `max_attempts` in the AWS profile), as the AWS CLI and SDKs read it, else 5.

    A value that is not a whole number from 1 to 20 is a one-line ConfigError naming where it came from."""
    try:
        raw = session.get_config_variable("max_attempts")
    except ValueError:  # botocore converts the value itself and refuses one that is not a number
        raw = os.environ.get("AWS_MAX_ATTEMPTS", "?")
    if raw is None or str(raw).strip() == "":
        return DEFAULT_MAX_ATTEMPTS
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_MAX_ATTEMPTS:
        raise ConfigError(
            f"max_attempts {str(raw)[:40]!r} (AWS_MAX_ATTEMPTS or the AWS profile's max_attempts): give a whole "
            f"number from 1 to {MAX_MAX_ATTEMPTS}"
        )
    return value


class S3Store:
    def __init__(
        self,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        aws_profile: str | None = None,
        max_pool_connections: int = 16,
        max_attempts: int | None = None,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        checksum_algorithm: str = "md5",
    ) -> None:
        """``checksum_algorithm``: what the profile resolved to (profile_algorithm), never "auto"."""
        from botocore.config import Config

        from jobsub.storage.s3_client import new_session

        self.endpoint_url = endpoint_url
        self.description = strip_userinfo(endpoint_url) if endpoint_url else "AWS S3"
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.checksum_algorithm = checksum_algorithm
        try:  # botocore's own session, on data parsed once per process (storage/s3_client.py has why)
            self._session = new_session(aws_profile)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound
            named = aws_profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
            source = "" if aws_profile else " (named by AWS_PROFILE in the environment)"
            raise CredentialsError(
                f"AWS profile {named!r}{source} not found in ~/.aws: {type(exc).__name__}; fix the name or add it "
                "with `aws configure --profile NAME`"
            ) from None
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            # total_max_attempts counts the first request (Config's "max_attempts" would count only retries)
            retries={"mode": "standard", "total_max_attempts": max_attempts or _max_attempts(self._session)},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",  # we pass the values we computed ourselves
            response_checksum_validation="when_required",
        )
        region = region or self._session.get_config_variable("region") or "us-east-1"
        self._client = self._session.create_client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        self._client.meta.events.register_first("needs-retry.s3", self._no_retry_on_timeout)
        # a body sent with Content-MD5 over plain HTTP is not hashed a second time for the signature: the
        # server checks the MD5 (Ceph: BadDigest) and jobsub compares the ETag with it (moto, which does not)
        s3_settings = {**(self._client.meta.config.s3 or {}), "payload_signing_enabled": False}
        self._unsigned_config = self._client.meta.config.merge(Config(s3=s3_settings))
        _register_precomputed_signer()
        events = self._client.meta.events
        for operation in ("PutObject", "UploadPart"):
            events.register(f"before-sign.s3.{operation}", self._unsigned_when_md5)
            events.register_first(f"provide-client-params.s3.{operation}", self._take_payload_hash)
            events.register_first(f"choose-signer.s3.{operation}", self._precomputed_signer)
        from jobsub.redact import track_credentials

        track_credentials(self._session, self._client)  # whatever botocore resolved is redacted everywhere

    def _unsigned_when_md5(self, request: Any = None, **kwargs: Any) -> None:
        """UNSIGNED-PAYLOAD instead of a SHA-256 of the body when Content-MD5 covers it (botocore signs the
        payload over HTTP whatever checksum is sent; over HTTPS with Content-MD5 it already does not). A body
        with only a flexible checksum keeps its signed SHA-256: Ceph and moto ignore a wrong CRC."""
        if request is not None and "Content-MD5" in request.headers:
            request.context["client_config"] = self._unsigned_config

    @staticmethod
    def _take_payload_hash(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        """Move jobsub's precomputed payload hash from the parameters (botocore would refuse an unknown one)
        into the request context, where _precomputed_signer and the signer find it (a retry re-signs from
        the same context and resends the same body: the server checks the same hash again)."""
        value = params.pop(_PAYLOAD_PARAM, None)
        if value is not None:
            context[_PAYLOAD_CONTEXT] = value

    @staticmethod
    def _precomputed_signer(context: dict[str, Any] | None = None, signature_version: Any = None, **kwargs: Any) -> Any:
        """jobsub's signer for a request that carries a precomputed payload hash (SigV4 only: anything else,
        e.g. an anonymous client, is left to botocore, and the request goes without the hash)."""
        if not (context and context.get(_PAYLOAD_CONTEXT)):
            return None
        if signature_version in ("s3v4", "v4"):
            return _PRECOMPUTED_SIGNER
        # never send a part whose only check was to be the signature without that signature: the upload
        # falls back to MD5 + Content-MD5 for the run (Uploader._upload_file)
        raise ChecksumUnsupportedError(f"signature {signature_version} cannot carry a part's signed SHA-256")

    def probe_signed_payload(self, bucket: str) -> bool | None:
        """Does this server refuse a body that does not match its signed SHA-256? One tiny PutObject whose
        signed payload hash is that of other bytes: refused with XAmzContentSHA256Mismatch (or BadDigest)
        -> True, and nothing was stored; stored -> False, and the probe object is deleted at once (under
        PROBE_PREFIX); any other answer (no permission, an outage) -> None: unknown, not to be remembered.
        Never raises: the caller keeps MD5 + Content-MD5 when the answer is not True."""
        import hashlib
        import uuid

        from botocore.exceptions import ClientError

        key = f"{PROBE_PREFIX}signed-payload-{uuid.uuid4().hex}"
        body = b"jobsub probe: does this server check the signed payload hash? (safe to delete)\n"
        wrong = hashlib.sha256(body + b"?").hexdigest()
        try:
            stored = self._client.put_object(Bucket=bucket, Key=key, Body=body, **{_PAYLOAD_PARAM: wrong})
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            return True if code in ("XAmzContentSHA256Mismatch", "BadDigest") else None
        except Exception:
            return None
        version = {"VersionId": stored["VersionId"]} if stored.get("VersionId") else {}
        try:  # that very version on a versioned bucket (a plain delete would leave it behind a delete marker)
            self._client.delete_object(Bucket=bucket, Key=key, **version)
        except Exception:
            pass  # the probe stays under PROBE_PREFIX; the answer (the server checks nothing) stands
        return False

    @staticmethod
    def _no_retry_on_timeout(caught_exception: Exception | None = None, **kwargs: Any) -> None:
        from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

        if isinstance(caught_exception, ReadTimeoutError | ConnectTimeoutError):
            raise _NoReply(type(caught_exception).__name__) from caught_exception
        return None

    def _timeout_error(self, exc: Exception) -> EndpointTimeoutError:
        connect = "Connect" in str(exc) or "Connect" in type(exc).__name__
        seconds = self.connect_timeout if connect else self.read_timeout
        what = "no connection" if connect else "no reply"
        return EndpointTimeoutError(
            f"endpoint not answering: {self.description} ({what} in {seconds:g} s); check the endpoint, "
            "or raise --read-timeout / the profile's read_timeout for a slow link"
        )

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
        if isinstance(exc, _NoReply | bex.ReadTimeoutError | bex.ConnectTimeoutError):
            return self._timeout_error(exc)
        if type(exc).__name__ in ("ReadTimeoutError", "TimeoutError") or isinstance(exc, TimeoutError):
            return self._timeout_error(exc)  # urllib3's own, while a body streams
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
                return RequestRejectedError(
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
            if code == "PreconditionFailed" or status == 412:  # a GET with If-Match: the object was replaced
                return ObjectChangedError(
                    f"{where} changed on {self.description} while it was read (its ETag no longer matches); "
                    "run the command again"
                )
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
            if code in ("InvalidArgument", "NotImplemented", "InvalidRequest") and "checksum" in message.lower():
                return ChecksumUnsupportedError(f"{self.description} rejected the checksum header: {message}")
            detail = f": {message}" if message else ""
            busy = status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError")
            cls = StorageError if busy or not 400 <= status < 500 else RequestRejectedError
            return cls(f"{self.description} answered {code or 'an error'} (HTTP {status}) for {where}{detail}")
        if isinstance(exc, bex.BotoCoreError):
            return StorageError(f"request to {self.description} failed for {where}: {type(exc).__name__}")
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
            response = self._client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
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
            checksums={a: response[m] for a, m in CHECKSUM_MEMBERS.items() if response.get(m)},
            checksum_type=response.get("ChecksumType", ""),
        )

    def part_size_of(self, bucket: str, key: str, part_number: int = 1) -> int | None:
        """The size of part N of a multipart object (HEAD with partNumber), or None when the server cannot say."""
        try:
            response = self._client.head_object(Bucket=bucket, Key=key, PartNumber=part_number)
        except Exception:
            return None
        return int(response["ContentLength"]) if response.get("PartsCount") else None

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
        write: Callable[[int, memoryview], None],
        progress: ProgressCallback | None = None,
        if_match: str | None = None,
    ) -> int:
        """Like get_range, but each chunk goes to `write(offset, chunk)` as it arrives (downloads write it to
        the file), so no part is ever held whole: memory is one buffer per worker. Returns the bytes written.

        The socket is read straight into one preallocated buffer (`_readinto_stream`), so each byte is copied
        once in this process (into the buffer) and once more by the write: urllib3's read() made a new bytes
        object per chunk, twice over. `write` must not keep the view: the buffer is reused for the next chunk.
        """
        if length <= 0:
            return 0
        extra = {"IfMatch": f'"{if_match}"'} if if_match else {}  # a replaced object is refused, never spliced
        response = self._call(
            "get_object",
            _ctx=(bucket, key, ""),
            Bucket=bucket,
            Key=key,
            Range=f"bytes={start}-{start + length - 1}",
            **extra,
        )
        _check_content_range(response, bucket, key, start, length)
        written = 0
        try:
            for chunk in _readinto_stream(response["Body"], min(length, _READ_BUFFER)):
                write(start + written, chunk)
                written += len(chunk)
                if progress:
                    progress(len(chunk))
        except (OSError, InsufficientSpaceError) as exc:
            if progress:
                progress(-written)
            if isinstance(exc, _ReadError):
                raise self._read_failure(exc.__cause__ or exc, bucket, key) from None
            raise  # a local write failed (full disk): not the server's fault
        except JobsubError:  # the write refused the chunk (e.g. outside the range): its message says why
            if progress:
                progress(-written)
            raise
        except Exception as exc:
            if progress:
                progress(-written)
            raise self._read_failure(exc, bucket, key) from None
        return written

    def _read_failure(self, exc: BaseException, bucket: str, key: str) -> Exception:
        if isinstance(exc, _ShortBody):
            return StorageError(f"reading s3://{bucket}/{key}: the connection closed {exc} bytes before the end")
        translated = self._translate(exc, bucket, key) if isinstance(exc, Exception) else exc
        if translated is not exc and isinstance(translated, Exception):
            return translated
        return StorageError(f"reading s3://{bucket}/{key}: {type(exc).__name__}: {exc}")

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
        progress: ProgressCallback | None = None,
        checksum: Checksum | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": _ProgressBody(data, progress)}
        if metadata:
            kwargs["Metadata"] = metadata
        kwargs.update(_checksum_params(checksum))
        response = self._call("put_object", _ctx=(bucket, key, ""), **kwargs)
        self._check_echo(response, checksum, f"s3://{bucket}/{key}")
        return response.get("ETag", "").strip('"')

    @staticmethod
    def _check_echo(response: dict, checksum: Checksum | None, where: str) -> None:
        """A server that echoes a flexible checksum must echo ours: a different value means other bytes."""
        if checksum is None or checksum.algorithm not in CHECKSUM_MEMBERS:
            return
        echoed = response.get(CHECKSUM_MEMBERS[checksum.algorithm])
        if echoed and echoed.split("-")[0] != checksum.value:
            raise IntegrityError(f"{where} was stored with {checksum.algorithm} {echoed}, not ours ({checksum.value})")

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

    def presigned_get_url(self, bucket: str, key: str, seconds: int) -> str | None:
        """Signed by botocore from the key pair: the URL holds the key id and a signature, never the secret."""
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
        )
        return url

    # -- multipart ---------------------------------------------------------------------------------------
    def create_multipart(
        self, bucket: str, key: str, metadata: dict[str, str] | None = None, checksum_algorithm: str | None = None
    ) -> str:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Metadata": metadata or {}}
        if checksum_algorithm in CHECKSUM_MEMBERS:
            kwargs["ChecksumAlgorithm"] = checksum_algorithm.upper()  # type: ignore[union-attr]
        response = self._call("create_multipart_upload", _ctx=(bucket, key, ""), **kwargs)
        return response["UploadId"]

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: PartData,
        checksum: Checksum,
        progress: ProgressCallback | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": _ProgressBody(data, progress),
        }
        kwargs.update(_checksum_params(checksum))
        response = self._call("upload_part", _ctx=(bucket, key, upload_id), **kwargs)
        self._check_echo(response, checksum, f"part {number} of s3://{bucket}/{key}")
        return response.get("ETag", "").strip('"')

    def list_parts(self, bucket: str, key: str, upload_id: str) -> builtins.list[PartInfo]:
        parts: builtins.list[PartInfo] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        while True:
            response = self._call("list_parts", _ctx=(bucket, key, upload_id), **kwargs)
            for item in response.get("Parts", []):
                sums = {a: item[m] for a, m in CHECKSUM_MEMBERS.items() if item.get(m)}
                parts.append(PartInfo(item["PartNumber"], item["Size"], item["ETag"].strip('"'), sums))
            if not response.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = response["NextPartNumberMarker"]

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: builtins.list[tuple[int, str]],
        checksums: dict[int, Checksum] | None = None,
    ) -> str:
        listed: builtins.list[dict[str, Any]] = []
        for number, etag in parts:
            entry: dict[str, Any] = {"PartNumber": number, "ETag": f'"{etag}"'}
            checksum = (checksums or {}).get(number)
            if checksum is not None and checksum.algorithm in CHECKSUM_MEMBERS:
                entry[CHECKSUM_MEMBERS[checksum.algorithm]] = checksum.value
            listed.append(entry)
        response = self._call(
            "complete_multipart_upload",
            _ctx=(bucket, key, upload_id),
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": listed},
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
