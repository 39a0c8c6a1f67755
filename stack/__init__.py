"""The local stack: real components the project starts itself for tests and ``citywatch demo``.

S3 (SeaweedFS, `s3`), RTSP (GStreamer + ffmpeg, `rtsp`), PostgreSQL (`postgres`), a simulated ONVIF PTZ
camera (`ptz_sim`), and the child-process supervision under them all (`processes`).

Everything binds 127.0.0.1 on free ports and runs as child processes in their own process groups,
stopped on ``stop()`` or at interpreter exit.
"""

from citywatch.stack.processes import ManagedProcess, StackError, free_port
from citywatch.stack.rtsp import RtspServer, rtsp_available
from citywatch.stack.s3 import S3Endpoint, S3Server

__all__ = [
    "ManagedProcess",
    "RtspServer",
    "S3Endpoint",
    "S3Server",
    "StackError",
    "free_port",
    "rtsp_available",
]
