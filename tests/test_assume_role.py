"""An AWS profile that assumes a role (role_arn + source_profile in ~/.aws/config) works end to end.

botocore's credential chain then makes an STS client from the same session as the S3 store's; the store's
own botocore start (storage/s3_client.py) must still know every service, not only S3. moto's server plays
STS (AWS_ENDPOINT_URL_STS points botocore at it) and S3 alike.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_env


def test_a_profile_that_assumes_a_role_uploads_and_lists(tmp_path: Path, moto_url: str) -> None:
    env = make_env(tmp_path, "s3", moto_url)
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text(
        "[profile base]\nregion = us-east-1\n"
        "[profile worker]\nrole_arn = arn:aws:iam::123456789012:role/jobsub-worker\n"
        "source_profile = base\nregion = us-east-1\n"
    )
    (aws / "credentials").write_text(
        f"[base]\naws_access_key_id = {env.vars['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {env.vars['AWS_SECRET_ACCESS_KEY']}\n"
    )
    extra = {
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "AWS_ENDPOINT_URL_STS": moto_url,
    }
    env.run(
        "profile", "add", "role", "--storage", "s3", "--endpoint-url", moto_url, "--addressing-style", "path",
        "--aws-profile", "worker", "--jobs-uri", f"s3://{env.bucket}/jobs/", "--use", check=True,
    )  # fmt: skip
    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 4096)
    uploaded = env.run("upload", str(source), f"s3://{env.bucket}/ckpt/weights.bin", extra_env=extra)
    assert uploaded.returncode == 0, uploaded.stderr
    listed = env.run("ls", f"s3://{env.bucket}/ckpt/", extra_env=extra)
    assert listed.returncode == 0 and "weights.bin" in listed.stdout, listed.stderr
    assert env.boto().get_object(Bucket=env.bucket, Key="ckpt/weights.bin")["Body"].read() == b"w" * 4096
