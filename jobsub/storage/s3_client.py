"""Starting botocore for the S3 store: botocore alone, its data parsed once per process and without the slow path.

A job waits on three fresh interpreters that each open an S3 store (the `submit`, the runtime in the
container or batch job, and `logs -f` beside it), so the client's start is on the path to the job's first
log line two or three times. Where that start went (py-spy, botocore 1.44 on the 2-core machine):

- ``import boto3`` pulls in s3transfer and boto3's resource machinery, which jobsub never uses: the store
  talks to botocore directly (its own transfer engine is jobsub.transfer), so botocore's Session is used.
- botocore parses its JSON data (the S3 service model, 1.4 MB, and endpoints.json, 1.3 MB) with
  ``object_pairs_hook=OrderedDict``, which makes ``json.loads`` ~10x slower than plain dicts (ordered
  since Python 3.7; botocore only reads them); and it lists every service folder it ships (400+ ``listdir``
  calls) only to check that "s3" is one of them. Both are replaced here, in a Loader of our own.

The Loader (and so the parsed data) is made once per process and shared by every session: a second store
or the submit's credential hand-over (jobs/service.py) costs a session and a client class, not a parse.
Each store still gets a session of its own, so credentials are resolved per store as boto3 did.
``prepare()`` starts the imports and the parse on a thread, for a caller with other start-up work to do
beside it (disk, network and subprocess waits release the GIL).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

_lock = threading.Lock()
_loader: Any = None
_preparing: threading.Thread | None = None


def _make_loader() -> Any:
    """botocore's Loader with plain-dict JSON parsing and no full listing of the services it ships."""
    from botocore import loaders

    class PlainJSONFileLoader(loaders.JSONFileLoader):
        def _load_file(self, full_path: str, open_method: Any) -> Any:
            if not os.path.isfile(full_path):
                return None
            with open_method(full_path, "rb") as handle:
                return json.loads(handle.read().decode("utf-8"))

    asking = threading.local()  # the service whose model this thread is loading

    class Loader(loaders.Loader):
        def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
            asking.name = service_name
            try:
                return super().load_service_model(service_name, type_name, api_version)
            finally:
                asking.name = None

        def list_available_services(self, type_name: str) -> list[str]:
            # botocore lists every service only to check that the one it loads exists: answer from that
            # service's own folder (s3; sts or sso when the credential chain assumes a role)
            wanted = getattr(asking, "name", None)
            if wanted and self.list_api_versions(wanted, type_name):
                return [wanted]
            return list(super().list_available_services(type_name))

    extra = os.environ.get("AWS_DATA_PATH")  # what botocore's own create_loader honours
    paths = [os.path.expanduser(p) for p in extra.split(os.pathsep)] if extra else []
    return Loader(extra_search_paths=paths, file_loader=PlainJSONFileLoader())


def shared_loader() -> Any:
    """This process's data loader (made on first use; waits for a `prepare()` under way)."""
    global _loader
    waiting = _preparing
    if waiting is not None and waiting is not threading.current_thread():
        waiting.join()
    with _lock:
        if _loader is None:
            _loader = _make_loader()
        return _loader


def new_session(aws_profile: str | None = None) -> Any:
    """A botocore session for `aws_profile` on the shared loader. Raises botocore's ProfileNotFound at once
    for a profile ~/.aws does not have (as boto3.Session did), so the caller can word it."""
    import botocore.session

    made = botocore.session.Session(profile=aws_profile)
    made.get_scoped_config()  # also for AWS_PROFILE from the environment: a missing one fails here, in words
    made.register_component("data_loader", shared_loader())
    return made


def prepare() -> None:
    """Start importing botocore and parsing the S3 data on a thread; the next `new_session` waits for it.
    Anything that fails there is met again, and worded, by the store's own start."""
    global _preparing

    def work() -> None:
        try:
            loader = shared_loader()
            loader.load_service_model("s3", "service-2")
            loader.load_data("endpoints")
            import botocore.client  # noqa: F401  (the rest of what a client needs)
        except Exception:  # the store's own start raises it again, in words
            pass

    with _lock:
        if _loader is not None or _preparing is not None:
            return
        # not a daemon: a process that ends while this runs (a submit refused for a bad --set) waits for it
        # (a fraction of a second) before the interpreter finalizes. A daemon thread still importing or reading
        # botocore's data at finalization is stopped inside C code, which can crash the exit with SIGSEGV on
        # CPython < 3.14 (bpo-42969): seen once in CI as a submit that printed its error and died with -11.
        _preparing = threading.Thread(target=work, name="s3-client-start", daemon=False)
        _preparing.start()  # under the lock: no other thread can see it (and join it) before it started
