"""Build the job image without network inside the build: wheels are prepared here, the Dockerfile installs them.

`jobsub image build` (and the test fixtures) call `build_image`:

1. ``pip wheel`` jobsub (from this source tree) and its dependencies into ``<context>/wheels`` on this
   machine, with torch pinned for the training image; pip here uses this machine's indexes and proxies.
2. ``docker build`` of docker/Dockerfile on the engine, with that folder as the context: the Dockerfile
   installs with ``pip install --no-index --find-links``, so the build needs no network at all. That is
   also how images are built for air-gapped clusters.

Every step is announced through ``say`` before it runs, with the exact command.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobsub.errors import ExecutorUnavailableError, UsageError

#: torch is pinned wherever it is installed (an unpinned torch pulls several GB of CUDA wheels)
TORCH_VERSION = "2.13.0"
DEFAULT_BASE = "python:3.11-slim"
DEFAULT_TAG = "jobsub-train:latest"


@dataclass
class ImagePlan:
    tag: str
    base: str
    #: "train" for the BERT image (torch, transformers); "" for the runtime alone (python-script jobs)
    extras: str = "train"
    gpu: bool = False
    torch_index: str | None = None

    def requirements(self, source: Path) -> list[str]:
        target = f"{source}[{self.extras}]" if self.extras else str(source)
        return [target] + ([f"torch=={TORCH_VERSION}"] if self.extras == "train" else [])


def source_tree() -> Path:
    """The jobsub source tree this command runs from (it holds pyproject.toml and docker/Dockerfile)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file() or not (root / "docker" / "Dockerfile").is_file():
        raise UsageError(
            f"no jobsub source tree at {root}: run `jobsub image build` from a checkout (git clone + pip install -e .)"
        )
    return root


def wheel_command(plan: ImagePlan, source: Path, wheels: Path) -> list[str]:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels)]
    if plan.torch_index:
        command += ["--extra-index-url", plan.torch_index]
    return command + plan.requirements(source)


def prepare_context(plan: ImagePlan, context: Path, say: Callable[[str], None] = print) -> Path:
    """Fill `context` with the Dockerfile and the wheels it installs; returns the context."""
    source = source_tree()
    wheels = context / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "docker" / "Dockerfile", context / "Dockerfile")
    command = wheel_command(plan, source, wheels)
    say("preparing wheels on this machine (the build itself has no network): " + " ".join(command))
    # pip builds jobsub's own wheel in a copy of the tree; keep the .venv and caches out of it
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise UsageError(f"pip wheel failed: {tail[0]}")
    say(f"{len(list(wheels.glob('*.whl')))} wheels in {wheels}")
    return context


def build_args(plan: ImagePlan) -> dict[str, str]:
    return {"BASE_IMAGE": plan.base, "JOBSUB_EXTRAS": plan.extras}


def build_image(client: Any, plan: ImagePlan, say: Callable[[str], None] = print, context: Path | None = None) -> str:
    """Prepare the wheels, build the image on the engine behind `client`, return its id."""
    import docker

    try:
        client.images.get(plan.base)
    except docker.errors.ImageNotFound:
        raise ExecutorUnavailableError(
            f"base image {plan.base} is not on the engine: `docker pull {plan.base}`, or pass --base with a local "
            "image that has python3 and its venv module (see docs/architecture.md: building without Docker Hub)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="jobsub-image-") as tmp:
        folder = prepare_context(plan, context or Path(tmp), say)
        args = build_args(plan)
        say(
            f"docker build -t {plan.tag} "
            + " ".join(f"--build-arg {k}={v}" for k, v in args.items())
            + f" {folder}   (pip install --no-index --find-links wheels/)"
        )
        image_id = None
        for chunk in client.api.build(path=str(folder), tag=plan.tag, buildargs=args, rm=True, decode=True):
            if "error" in chunk:
                raise UsageError(f"docker build failed: {' '.join(str(chunk['error']).split())}")
            line = str(chunk.get("stream", "")).rstrip()
            if line.startswith("Step "):
                say("  " + line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        image = client.images.get(plan.tag)
        say(f"built {plan.tag} ({image.short_id}, {image.attrs.get('Size', 0) / 1e6:.0f} MB)")
        return str(image_id or image.id)
