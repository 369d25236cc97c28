"""The whole jobsub exception tree, documented in one place (the httpx model).

    JobsubError                     exit 1 unless stated                                        [final]
    ├── UsageError                  exit 2: the user asked for something malformed               [final]
    │   ├── InvalidURIError         not s3://bucket/key (or obs://), or a key that is unsafe
    │   ├── SourceNotFoundError     a local path to upload does not exist
    │   ├── ConfigError             a profile or config file that cannot be used
    │   ├── SpecError               a job spec / template / --set that does not validate
    │   └── ExecutorUnavailableError  no engine / image / scheduler / cluster where the profile points
    ├── StorageError                talking to the object store failed (5xx, reset, SlowDown)     [retried]
    │   ├── CredentialsError        missing or rejected credentials, HTTP 403 (never the secret)  [final]
    │   ├── BucketNotFoundError                                                                   [final]
    │   ├── ObjectNotFoundError     HTTP 404                                                      [final]
    │   ├── UploadNotFoundError     a multipart upload id that the server no longer knows         [final]
    │   ├── ConditionalWriteUnsupported  the server ignores If-None-Match (claims fall back to a lease) [final]
    │   ├── RequestRejectedError    any other 4xx: the same request gets the same answer          [final]
    │   ├── EndpointError           the endpoint cannot be reached (DNS, refused)                 [retried]
    │   │   └── EndpointTimeoutError    it accepted the connection but sent no reply in time      [final]
    │   └── ChecksumUnsupportedError    the server rejected a flexible-checksum header (MD5 fallback) [final]
    ├── IntegrityError              bytes on the server differ from the bytes we sent / expected  [retried]
    │   ├── SourceChangedError      the local file changed while it was being uploaded            [final]
    │   └── ObjectChangedError      the object was replaced on the server while it was downloaded [final]
    ├── InsufficientSpaceError      the destination disk is full (says how much space is needed)  [final]
    ├── KeyConflictError            keys a local folder cannot hold together (`a` and `a/b`); nothing written
    ├── TransferInterrupted         Ctrl-C / SIGTERM: the transfer is resumable (exit 130)        [final]
    └── JobError                    a job id that does not exist, an executor that failed         [final]
        ├── JobNotFoundError
        ├── JobClaimedError         another runner already runs this job (exit 3)
        ├── JobTimeoutError         Job.wait(timeout=...) ran out before the job reached a final state
        └── RecordFormatError       a job record that is not one (bad JSON shape, a newer format version)
[retried] / [final] is the class attribute ``retryable`` (subclasses inherit it unless marked): the one
answer to "is this retryable" for transfers (each part's attempts), log followers and every other caller.
An EndpointTimeoutError is final because a silent endpoint would cost attempts x read timeout.
Every message is one line that says what to fix. Messages never include a secret.
"""

from __future__ import annotations

from typing import ClassVar


class JobsubError(Exception):
    exit_code = 1
    #: Worth sending the same request again (see [retried] / [final] in the tree above). A class attribute,
    #: never set per instance: the class says what happened, so it says whether a retry can help.
    retryable: ClassVar[bool] = False


class UsageError(JobsubError):
    exit_code = 2


class InvalidURIError(UsageError):
    pass


class SourceNotFoundError(UsageError):
    pass


class ConfigError(UsageError):
    pass


class SpecError(UsageError):
    pass


class ExecutorUnavailableError(UsageError):
    """Raised by Executor.check() before anything is uploaded or recorded: says what is missing and how to fix it."""


class StorageError(JobsubError):
    retryable = True


class CredentialsError(StorageError):
    retryable = False


class BucketNotFoundError(StorageError):
    retryable = False


class ObjectNotFoundError(StorageError):
    retryable = False


class UploadNotFoundError(StorageError):
    retryable = False


class ConditionalWriteUnsupported(StorageError):
    retryable = False


class RequestRejectedError(StorageError):
    """A 4xx the tree has no class for (e.g. InvalidArgument): the same request would be refused again."""

    retryable = False


class EndpointError(StorageError):
    retryable = True


class EndpointTimeoutError(EndpointError):
    retryable = False


class ChecksumUnsupportedError(StorageError):
    retryable = False


class IntegrityError(JobsubError):
    retryable = True  # bytes changed on the way: sending them again is the fix


class SourceChangedError(IntegrityError):
    """Never retried: sending the same file again while it is being written would only repeat the race."""

    retryable = False


class ObjectChangedError(IntegrityError):
    """A ranged GET's If-Match failed (HTTP 412): the bytes already fetched belong to the old object, so the
    download drops them and a rerun starts over on the new one. Never retried: the ETag will not come back."""

    retryable = False


class InsufficientSpaceError(JobsubError):
    pass


class KeyConflictError(JobsubError):
    """Found while planning a download, before any byte moves: no part file is left behind."""


class TransferInterrupted(JobsubError):
    exit_code = 130


class JobError(JobsubError):
    pass


class JobNotFoundError(JobError):
    pass


class JobClaimedError(JobError):
    """A second runner for a job that already has one: it must not run the command again."""

    exit_code = 3


class JobTimeoutError(JobError):
    """A wait with a deadline ended before the job did; the job itself keeps running."""


class RecordFormatError(JobError):
    """A record in the bucket this jobsub cannot read: written by a newer jobsub, or not by jobsub at all."""
