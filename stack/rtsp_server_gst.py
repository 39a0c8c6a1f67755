"""RTSP server for tests and the demo: GStreamer's gst-rtsp-server, one path per RTP/UDP input.

Run by Debian's /usr/bin/python3 (python3-gi lives there, not in a virtualenv), as its own process:

    /usr/bin/python3 rtsp_server_gst.py --port 8554 --stream cam1=40001 --stream cam2=40003

Each ``--stream NAME=UDP_PORT`` serves rtsp://127.0.0.1:PORT/NAME from H.264 RTP packets arriving
on 127.0.0.1:UDP_PORT (an ffmpeg publisher sends them). Nothing is re-encoded.
Standalone on purpose: it must not import citywatch or anything outside the standard library and gi.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys

import gi  # type: ignore[import-not-found,unused-ignore]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

ADDRESS = "127.0.0.1"
# The default pool let only 3 of 50 clients in, and a path whose first preroll failed stayed broken.
MAX_THREADS = 16
RTP_CAPS = "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def launch_line(udp_port: int) -> str:
    """The media pipeline for one path: depayload, re-parse (SPS/PPS on every IDR), re-payload."""
    return (
        f'( udpsrc address={ADDRESS} port={udp_port} caps="{RTP_CAPS}" '
        "! rtpjitterbuffer latency=50 ! rtph264depay ! h264parse config-interval=-1 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def parse_stream(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not _NAME_RE.fullmatch(name) or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=UDP_PORT, got {text!r}")
    return name, int(port)


class MediaPinner:
    """Keeps each shared media prepared after its first client, for the life of the server.

    Otherwise the last client's TEARDOWN unprepares the media, and a client that connects while it
    is still unpreparing gets "503 Service Unavailable" (1 open in 6 failed when a reader closed and
    reopened at once, which is what patrol visits and reconnecting readers do). One extra prepare()
    reference stops that, and also keeps the pipeline PLAYING between clients, so a new client gets
    live frames rather than a burst of packets queued in the UDP socket while the pipeline was paused.
    """

    def __init__(self) -> None:
        self.pinned: list[GstRtspServer.RTSPMedia] = []

    def on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        media.connect("prepared", self.on_prepared)

    def on_prepared(self, media: GstRtspServer.RTSPMedia) -> None:
        # Emitted on a media thread that may hold the media's state lock: pin from the main loop.
        GLib.idle_add(self.pin, media)

    def pin(self, media: GstRtspServer.RTSPMedia) -> bool:
        # prepare() on a PREPARED media only counts one more user. If the media started
        # unpreparing meanwhile it fails, and the next client gets (and pins) a new media.
        if media not in self.pinned and media.prepare(None):
            self.pinned.append(media)
        return False  # GLib.SOURCE_REMOVE: run once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve RTP/UDP H.264 inputs as RTSP paths on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True, help="RTSP TCP port on 127.0.0.1")
    parser.add_argument("--stream", type=parse_stream, action="append", required=True, help="NAME=UDP_PORT")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(ADDRESS)
    server.set_service(str(args.port))
    server.get_thread_pool().set_max_threads(MAX_THREADS)
    mounts = server.get_mount_points()
    pinner = MediaPinner()
    for name, udp_port in args.stream:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(udp_port))
        # Shared: one udpsrc per path however many clients; a second udpsrc on the port would
        # split the packets between them.
        factory.set_shared(True)
        factory.connect("media-configure", pinner.on_media_configure)
        mounts.add_factory(f"/{name}", factory)

    # attach() returns 0 when the port is taken; without this check the server runs deaf.
    if server.attach(None) == 0:
        print(f"rtsp_server_gst: cannot listen on {ADDRESS}:{args.port} (port in use?)", file=sys.stderr)
        return 2

    loop = GLib.MainLoop()

    def quit_loop() -> bool:
        loop.quit()
        return False  # GLib.SOURCE_REMOVE: the handler is not needed again

    # A bare MainLoop.run() ignores SIGTERM; route both signals through GLib so the loop ends.
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, quit_loop)
    paths = ", ".join(f"/{name} <- udp {udp_port}" for name, udp_port in args.stream)
    print(f"rtsp_server_gst: serving rtsp://{ADDRESS}:{args.port} ({paths})", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
