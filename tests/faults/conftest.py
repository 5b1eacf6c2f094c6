"""Fault-injection helpers: a small real filesystem that can be filled (tmpfs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted for the test (needs root or CAP_SYS_ADMIN; skipped
    otherwise, saying so)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}): run as root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last block with one ballast file; returns it."""
    ballast = disk / "ballast"
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb", buffering=0) as f:  # unbuffered: no flush at close
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:  # the last partial block
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    assert os.statvfs(disk).f_bavail == 0
    return ballast


@pytest.fixture
def s3_server() -> Iterator[dict[str, str]]:
    """An S3-compatible server (moto's server mode) over HTTP on loopback, with one
    bucket; yields the environment that points boto/s3fs at it, plus ``url``."""
    import boto3
    from moto.server import ThreadedMotoServer

    from devtools.broker import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "strata-test",
        "AWS_SECRET_ACCESS_KEY": "strata-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
    }
    bucket = f"strata-{port}"
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).create_bucket(Bucket=bucket)
    try:
        yield {**env, "url": f"s3://{bucket}/snapshots"}
    finally:
        server.stop()
