"""moto's standalone S3 server on 127.0.0.1: the object store of the tests (``LODE_TEST_S3``) and of
``bench/storage_bench.py``. It runs as a separate process, so Lode talks to it over HTTP exactly as
to AWS S3 or MinIO; nothing reaches beyond this machine."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

# moto accepts any credentials; these are set in the environment so botocore's default chain finds
# them, as it finds an operator's. The secret is distinctive so a test can look for it in errors.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "LODETESTKEYID0000000",
    "AWS_SECRET_ACCESS_KEY": "lode-test-secret-9f3b7c1e2d4a6b8c0e1f",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata address for a role
}
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log
        self._client: Any = None

    @classmethod
    def start(cls, timeout_s: float = 30.0) -> MotoServer:
        """A server on a free port, answering; RuntimeError (with its log) if none would start."""
        log = Path(tempfile.mkstemp(prefix="lode-moto-", suffix=".log")[1])
        problem = ""
        for _ in range(3):  # a port taken between choosing and binding it: choose another
            port = free_port()
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            server = cls(process, f"http://127.0.0.1:{port}", log)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with urllib.request.urlopen(f"{server.url}/moto-api/", timeout=1):
                        return server
                except OSError:
                    time.sleep(0.1)
            server.stop()
            problem = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"moto's S3 server did not start: {problem or 'no output'}")

    def client(self) -> Any:
        """A botocore S3 client on this server, for what a test checks behind Lode's back."""
        if self._client is None:
            self._client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.url,
                region_name=REGION,
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                config=Config(s3={"addressing_style": "path"}),
            )
        return self._client

    def bucket(self) -> str:
        """A fresh, empty bucket."""
        name = f"lode-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def everything(self, bucket: str) -> tuple[list[str], list[str]]:
        """Every key in ``bucket`` and every multipart upload still open in it."""
        client = self.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        open_uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
        return sorted(keys), sorted(open_uploads)

    def reset(self) -> None:
        """Forget every bucket (after a test: the server's memory stays small)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def store_env(server: MotoServer, bucket: str, prefix: str = "p") -> dict[str, str]:
    """The LODE_* settings that put a Lode's files in ``bucket`` on ``server``."""
    return {
        "LODE_STORAGE_URL": f"s3://{bucket}/{prefix}",
        "LODE_S3_ENDPOINT_URL": server.url,
        "LODE_S3_REGION": REGION,
        "LODE_S3_PATH_STYLE": "1",
    }
