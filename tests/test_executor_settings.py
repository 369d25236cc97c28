"""The profile options of the built-in executors live with the executors (executors/<kind>_settings.py), not
in config.py, and profiles read and write exactly as before they moved.

In-process and fast (no daemon). OLD_TOML is what `save_config` of the code before the move wrote for a
profile with every built-in section set and for a profile with none (all four written with defaults): it
must load unchanged and save back byte for byte. The hostile cases are config files a user mistyped: each
is one line naming `profiles.X.<kind>.<key>`, at load time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict

from jobsub.config import EXECUTORS, Config, Profile, Registered, load_config, save_config
from jobsub.errors import ConfigError
from jobsub.executors import executor_class
from jobsub.executors.base import BaseExecutor, BaseHandle, LaunchRequest, Observation
from jobsub.executors.docker_settings import DockerSettings
from jobsub.executors.modelarts_settings import ModelArtsSettings
from jobsub.executors.ray_settings import RaySettings
from jobsub.executors.slurm_settings import SlurmSettings

#: written by save_config before the settings left config.py (git show main:jobsub/config.py, 2026-11-30)
OLD_TOML = """\
current = "gpu"

[profiles.gpu]
storage = "s3"
endpoint_url = "http://127.0.0.1:9000"
addressing_style = "auto"
jobs_uri = "s3://jobsub/jobs/"
checksum = "auto"
read_timeout = 60.0
connect_timeout = 10.0
shared_store = false
executor = "docker"

[profiles.gpu.docker]
host = "unix:///var/run/docker.sock"
image = "img:1"
keep = false
shm_size = "2GiB"

[profiles.gpu.slurm]
partition = "gpu"
sbatch_args = [
    "--exclusive",
]
setup = [
    "module load cuda",
]
python = "python3"

[profiles.gpu.ray]
address = "http://head:8265"
ship_jobsub = true
pip = [
    "boto3",
]

[profiles.gpu.ray.headers_env]
Authorization = "RAY_TOKEN"

[profiles.gpu.modelarts]
region = "cn-north-4"
flavor = "modelarts.vm.cpu.2u"
credentials_ttl_seconds = 21600
keep_jobs = true

[profiles.gpu.prices]
table = "none"
source = ""
currency = "USD"
cpu_core_hour = 0.0
memory_gib_hour = 0.0
gpu_hour = 0.0
storage_gib_month = 0.0
requests_per_1000 = 0.0
egress_gib = 0.0

[profiles.gpu.prices.flavors]

[profiles.plain]
storage = "local"
addressing_style = "auto"
jobs_uri = "s3://jobsub/jobs/"
checksum = "auto"
read_timeout = 60.0
connect_timeout = 10.0
shared_store = false
executor = "local"

[profiles.plain.docker]
keep = false

[profiles.plain.slurm]
sbatch_args = []
setup = []
python = "python3"

[profiles.plain.ray]
ship_jobsub = true
pip = []

[profiles.plain.ray.headers_env]

[profiles.plain.modelarts]
credentials_ttl_seconds = 21600
keep_jobs = true

[profiles.plain.prices]
table = "none"
source = ""
currency = "USD"
cpu_core_hour = 0.0
memory_gib_hour = 0.0
gpu_hour = 0.0
storage_gib_month = 0.0
requests_per_1000 = 0.0
egress_gib = 0.0

[profiles.plain.prices.flavors]
"""


@pytest.fixture
def old_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(OLD_TOML)
    return path


def test_a_profile_saved_before_the_move_loads_unchanged_and_saves_back_the_same(
    old_config: Path, tmp_path: Path
) -> None:
    gpu = load_config(old_config).profiles["gpu"]
    assert gpu.section("docker", DockerSettings) == DockerSettings(
        host="unix:///var/run/docker.sock", image="img:1", shm_size="2GiB"
    )
    assert gpu.section("slurm", SlurmSettings).sbatch_args == ["--exclusive"]
    assert gpu.section("ray", RaySettings).headers_env == {"Authorization": "RAY_TOKEN"}
    assert gpu.section("modelarts", ModelArtsSettings).flavor == "modelarts.vm.cpu.2u"
    again = save_config(load_config(old_config), tmp_path / "again.toml")
    assert again.read_text() == OLD_TOML  # byte for byte: the sections where the fields were, in that order


def test_each_executor_reads_its_own_settings_from_the_profile(old_config: Path) -> None:
    gpu = load_config(old_config).profiles["gpu"]
    slurm = executor_class("slurm")(gpu)
    assert slurm.settings.partition == "gpu" and slurm.settings.setup == ["module load cuda"]
    ray = executor_class("ray")(gpu)
    assert ray.settings.address == "http://head:8265"
    # a profile without a section: the executor gets its model's defaults
    assert executor_class("slurm")(Profile()).settings == SlurmSettings()


def test_the_profile_the_runner_reads_round_trips_through_json(old_config: Path) -> None:
    """JOBSUB_PROFILE_JSON (LaunchRequest.profile_json) is what every runner loads its profile from."""
    gpu = load_config(old_config).profiles["gpu"]
    raw = LaunchRequest(job_id="j", job_uri="s3://b/jobs/j/", profile=gpu).profile_json()
    data = json.loads(raw)
    assert list(data)[list(data).index("executor") + 1 :][:4] == ["docker", "slurm", "ray", "modelarts"]
    assert data["docker"]["shm_size"] == "2GiB" and data["ray"]["pip"] == ["boto3"]
    back = Profile.model_validate_json(raw)
    assert back == gpu and back.section("ray", RaySettings) == gpu.section("ray", RaySettings)


@pytest.mark.parametrize(
    ("section", "expect"),
    [
        ('[profiles.w.docker]\nhots = "x"\n', "profiles.w.docker.hots: Extra inputs are not permitted"),
        ('[profiles.w.slurm]\npartiton = "gpu"\n', "profiles.w.slurm.partiton: Extra inputs are not permitted"),
        ('[profiles.w.ray]\nadress = "h:8265"\n', "profiles.w.ray.adress: Extra inputs are not permitted"),
        ('[profiles.w.modelarts]\nregoin = "x"\n', "profiles.w.modelarts.regoin: Extra inputs are not permitted"),
        ('[profiles.w.slurm]\nsbatch_args = "--x"\n', "profiles.w.slurm.sbatch_args: Input should be a valid list"),
        ('[profiles.w.docker]\nhost = "tcp://u:pw@h:2376"\n', "profiles.w.docker.host: Value error, tcp://h:2376"),
        ('[profiles.w.ray]\naddress = "ray://h:10001"\n', "profiles.w.ray.address: Value error, ray://h:10001 is"),
        ('[profiles.w.dokcer]\nhost = "x"\n', "profiles.w.dokcer: Extra inputs are not permitted"),
    ],
    ids=["docker", "slurm", "ray", "modelarts", "wrong type", "password in host", "ray client", "misspelt section"],
)
def test_a_mistake_in_a_section_is_one_line_naming_the_key_at_load(tmp_path: Path, section: str, expect: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(section)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    said = str(caught.value)
    assert said.startswith(f"config {path}: {expect}") and "\n" not in said, said
    assert "pw" not in said  # the password of a refused host is not echoed


def test_loading_a_profile_imports_no_executor_module(old_config: Path) -> None:
    """Every CLI command and every runner loads a profile: its sections cost the light settings modules
    only, never the executors (ray.py imports requests; docker.py its local-store helpers)."""
    code = (
        "import sys, json\nfrom pathlib import Path\nfrom jobsub.config import load_config\n"
        f"load_config(Path({str(old_config)!r}))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('jobsub.executors') or m == 'requests')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == sorted(
        ["jobsub.executors", "jobsub.executors.base"]
        + [f"jobsub.executors.{k}_settings" for k in EXECUTORS if k != "local"]
    )


def test_with_section_replaces_one_section_in_a_copy(old_config: Path) -> None:
    """`jobsub image build --docker-host` builds on another engine than the profile's, for that run only."""
    gpu = load_config(old_config).profiles["gpu"]
    moved = gpu.section("docker", DockerSettings).model_copy(update={"host": "ssh://me@box"})
    other = gpu.with_section("docker", moved)
    assert (
        other.section("docker", DockerSettings).host == "ssh://me@box"
        and other.section("docker", DockerSettings).image == "img:1"
    )
    assert gpu.section("docker", DockerSettings).host == "unix:///var/run/docker.sock"  # the original is unchanged
    assert other.section("ray", RaySettings) == gpu.section("ray", RaySettings)
    with pytest.raises(ConfigError, match="executor 'ray' has no profile section of type DockerSettings"):
        gpu.with_section("ray", moved)
    with pytest.raises(ConfigError, match="is a DockerSettings, not RaySettings"):
        gpu.section("docker", RaySettings)


# -- an executor added later: one module and one registry line ------------------------------------------------
class TallSettings(BaseModel):
    """The [profiles.X.tall] section of a test executor, in a module config.py does not know."""

    model_config = ConfigDict(extra="forbid")
    height: int = 2


class TallHandle(BaseHandle):
    kind: Literal["tall"] = "tall"


class TallExecutor(BaseExecutor[TallHandle]):
    kind = "tall"
    handle_model = TallHandle
    settings_model = TallSettings

    def submit(self, request: LaunchRequest) -> TallHandle:
        return TallHandle()

    def poll(self, handle: TallHandle) -> Observation:
        return Observation("unknown")

    def cancel(self, handle: TallHandle) -> None:
        return None

    def describe(self, handle: TallHandle) -> str:
        return f"tall {self.profile.section('tall', TallSettings).height}"


def test_an_executor_with_its_settings_in_a_module_of_their_own_needs_one_registry_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(EXECUTORS, "tall", Registered(f"{__name__}:TallExecutor", f"{__name__}:TallSettings"))
    path = tmp_path / "config.toml"
    path.write_text('[profiles.t]\nexecutor = "tall"\n\n[profiles.t.tall]\nheight = 9\n')
    profile = load_config(path).profiles["t"]
    assert executor_class("tall")(profile).describe(TallHandle()) == "tall 9"
    save_config(load_config(path), path)
    assert "[profiles.t.tall]\nheight = 9\n" in path.read_text()
    path.write_text("[profiles.t.tall]\nheigth = 9\n")
    with pytest.raises(ConfigError, match=r"profiles\.t\.tall\.heigth: Extra inputs are not permitted"):
        load_config(path)


def test_a_registry_line_and_a_class_that_disagree_on_the_settings_fail_when_the_class_is_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        EXECUTORS, "tall", Registered(f"{__name__}:TallExecutor", "jobsub.executors.ray_settings:RaySettings")
    )
    with pytest.raises(ConfigError, match="name different settings models"):
        executor_class("tall")


# -- the CLI options still build the sections -------------------------------------------------------------------
def test_profile_add_with_executor_options_writes_the_sections_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobsub.cli import cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("JOBSUB_PROFILE", raising=False)
    runner = CliRunner()
    add = ["profile", "add", "--storage", "local", "--root", str(tmp_path / "store")]
    for extra in (
        ["d", "--executor", "docker", "--docker-host", "ssh://me@box", "--docker-image", "img:2"],
        ["s", "--executor", "slurm", "--partition", "gpu"],
        ["r", "--executor", "ray", "--ray-address", "head:8265"],
        ["m", "--executor", "modelarts", "--modelarts-region", "cn-north-4"],
    ):
        result = runner.invoke(cli, [*add, *extra])
        assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "cfg" / "jobsub" / "config.toml")
    assert config.profiles["d"].section("docker", DockerSettings).host == "ssh://me@box"
    assert config.profiles["s"].section("slurm", SlurmSettings).partition == "gpu"
    assert config.profiles["r"].section("ray", RaySettings).address == "http://head:8265"
    assert config.profiles["m"].section("modelarts", ModelArtsSettings).region == "cn-north-4"
    text = (tmp_path / "cfg" / "jobsub" / "config.toml").read_text()
    assert '[profiles.d.docker]\nhost = "ssh://me@box"\nimage = "img:2"\nkeep = false\n\n[profiles.d.slurm]' in text
    shown = runner.invoke(cli, ["profile", "show", "r", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["ray"]["address"] == "http://head:8265"
    wrong = runner.invoke(cli, [*add, "x", "--executor", "docker", "--partition", "gpu"])  # main() prints it
    assert isinstance(wrong.exception, ConfigError) and wrong.exception.exit_code == 2
    assert "--partition only apply to --executor slurm" in str(wrong.exception)


def test_config_names_no_executor_option() -> None:
    """The acceptance line of issue 19 item 3: config.py holds the registry, not the executors' options."""
    source = (Path(__file__).parents[1] / "jobsub" / "config.py").read_text()
    for name in ("class DockerSettings", "class SlurmSettings", "shm_size", "sbatch_args", "headers_env", "pool_id"):
        assert name not in source, name
    assert Config().model_dump() == {"current": "default", "profiles": {}}
