"""The package as a user installs it: a wheel built from the repository, installed in a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import setuptools

from tests.conftest import REPO


def test_the_explicit_package_list_covers_every_package_in_the_tree() -> None:
    """pyproject.toml lists packages by hand (templates live outside jobsub/, demo data has no __init__.py)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(setuptools.find_packages(str(REPO), include=["jobsub*", "train_entry*"]))
    assert found | {"jobsub.job_templates", "jobsub.demo_data"} == listed, f"add to packages: {found - listed}"


def test_a_wheel_installed_in_a_fresh_venv_lists_the_templates(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("jobsub-*.whl")
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # the dependencies come from this test's environment (a .pth adds its site-packages, whose own .pth files,
    # such as the editable install of this checkout, are not processed); jobsub itself only from the wheel
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(purelib), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    where = subprocess.run(
        [python, "-c", "import jobsub; print(jobsub.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the checkout: `python -c` puts the working folder first on sys.path
    ).stdout
    assert where.startswith(str(purelib)), where  # the installed wheel, not this checkout
    listing = subprocess.run(
        [python, "-m", "jobsub", "templates", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    names = {t["name"] for t in __import__("json").loads(listing.stdout)}
    assert {"bert-finetune", "bert-evaluate", "bert-pretrain", "python-script"} <= names
