"""A real S3-compatible server on 127.0.0.1: moto's server mode in a process of its own.

The Cortex tests and bench/scale.py point LanceDB at it through the variables an operator
would set (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), so the
code under test takes the same path as against AWS S3: HTTP requests, conditional PUTs of
manifests, multipart uploads. Nothing leaves the loopback interface.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

BUCKET = "psimem-cortex-test"
REGION = "us-east-1"
# moto accepts any credentials; these only have to be present and consistent.
KEY_ID, SECRET = "psimem-test-key", "psimem-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, bucket: str = BUCKET):
        self.bucket = bucket
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

    def start(self, timeout: float = 60.0) -> "S3Server":
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode} before accepting connections")
            try:
                self.client().create_bucket(Bucket=self.bucket)
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def new_uri(self, name: str = "cortex") -> str:
        """A Cortex URI of its own under the bucket."""
        return f"s3://{self.bucket}/{name}-{uuid.uuid4().hex[:12]}"

    def bytes_under(self, uri: str) -> int:
        """Total size of the objects under an s3:// URI of this bucket."""
        prefix = uri.split(f"s3://{self.bucket}/", 1)[1].rstrip("/") + "/"
        total = 0
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            total += sum(o["Size"] for o in page.get("Contents", []))
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
