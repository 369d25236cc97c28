"""The whole jobsub exception tree, documented in one place (the httpx model).

    JobsubError                     exit 1 unless stated
    ├── UsageError                  exit 2: the user asked for something malformed
    │   ├── InvalidURIError         not s3://bucket/key (or obs://), or a key that is unsafe
    │   ├── SourceNotFoundError     a local path to upload does not exist
    │   ├── ConfigError             a profile or config file that cannot be used
    │   ├── SpecError               a job spec / template / --set that does not validate
    │   └── ExecutorUnavailableError  no engine / image / scheduler / cluster where the profile points
    ├── StorageError                talking to the object store failed
    │   ├── CredentialsError        missing or rejected credentials (never carries the secret)
    │   ├── BucketNotFoundError
    │   ├── ObjectNotFoundError
    │   ├── UploadNotFoundError     a multipart upload id that the server no longer knows
    │   ├── ConditionalWriteUnsupported  the server ignores If-None-Match (claims fall back to a lease)
    │   ├── EndpointError           the endpoint cannot be reached (DNS, refused, timeout)
    │   │   └── EndpointTimeoutError    it accepted the connection but sent no reply in time (not retried)
    │   └── ChecksumUnsupportedError    the server rejected a flexible-checksum header (we fall back to MD5)
    ├── IntegrityError              bytes on the server differ from the bytes we sent / expected
    │   └── SourceChangedError      the local file changed while it was being uploaded
    ├── InsufficientSpaceError      the destination disk is full (says how much space is needed)
    ├── KeyConflictError            keys a local folder cannot hold together (`a` and `a/b`); nothing written
    ├── TransferInterrupted         Ctrl-C / SIGTERM: the transfer is resumable (exit 130)
    └── JobError                    a job id that does not exist, an executor that failed
        ├── JobNotFoundError
        ├── JobClaimedError         another runner already runs this job (exit 3)
        ├── JobTimeoutError         Job.wait(timeout=...) ran out before the job reached a final state
        └── RecordFormatError       a job record that is not one (bad JSON shape, a newer format version)
Every message is one line that says what to fix. Messages never include a secret.
"""

from __future__ import annotations


class JobsubError(Exception):
    exit_code = 1
    #: A transient error is worth retrying (log followers ride over these).
    transient = False


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
    pass


class CredentialsError(StorageError):
    pass


class BucketNotFoundError(StorageError):
    pass


class ObjectNotFoundError(StorageError):
    pass


class UploadNotFoundError(StorageError):
    pass


class ConditionalWriteUnsupported(StorageError):
    pass


class EndpointError(StorageError):
    transient = True


class EndpointTimeoutError(EndpointError):
    final = True


class ChecksumUnsupportedError(StorageError):
    pass


class IntegrityError(JobsubError):
    pass


class SourceChangedError(IntegrityError):
    """Never retried: sending the same file again while it is being written would only repeat the race."""


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
