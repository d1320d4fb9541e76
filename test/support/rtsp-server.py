#!/usr/bin/python3
"""A real RTSP camera for tests.

The RTSP server is GStreamer's GstRtspServer (via python3-gi); this file only
wires up a live test-pattern H.264 pipeline and the mount points.

Usage:
  /usr/bin/python3 rtsp-server.py [--port 8554] [--path /cam ...] [--fps 25]
                                  [--size 640x360] [--gop N]

Prints "READY rtsp://127.0.0.1:PORT/path" (one line per mount, flushed) once
the server is attached and listening on 127.0.0.1. Exits cleanly on SIGTERM
or SIGINT.
"""

import argparse
import signal
import sys
from fractions import Fraction

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def parse_fps(text):
    try:
        fps = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError("invalid --fps %r (use 25 or 30000/1001)" % text)
    if fps <= 0:
        raise argparse.ArgumentTypeError("--fps must be positive")
    return fps


def parse_size(text):
    try:
        w, h = text.lower().split("x", 1)
        w, h = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError("invalid --size %r (use WIDTHxHEIGHT)" % text)
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError("--size must be positive even numbers")
    return w, h


def parse_path(text):
    if not text.startswith("/"):
        text = "/" + text
    if text == "/":
        raise argparse.ArgumentTypeError("--path must not be empty")
    return text


def main():
    ap = argparse.ArgumentParser(description="GStreamer RTSP test camera")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", action="append", type=parse_path, dest="paths")
    ap.add_argument("--fps", type=parse_fps, default=Fraction(25))
    ap.add_argument("--size", type=parse_size, default=(640, 360))
    ap.add_argument("--gop", type=int, default=None,
                    help="keyframe interval in frames (default: 1 second)")
    args = ap.parse_args()

    paths = args.paths or ["/cam"]
    fps = args.fps
    width, height = args.size
    gop = args.gop if args.gop and args.gop > 0 else max(1, round(float(fps)))

    Gst.init(None)

    launch = (
        "( videotestsrc is-live=true pattern=smpte "
        "! video/x-raw,width={w},height={h},framerate={n}/{d} "
        "! timeoverlay font-desc=\"Sans 24\" "
        "! videoconvert "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800 "
        "! video/x-h264,profile=baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    ).format(w=width, h=height, n=fps.numerator, d=fps.denominator, gop=gop)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    for p in paths:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        # One pipeline shared by all clients: every client gets the same frames.
        factory.set_shared(True)
        # Keep the shared media usable after clients go away, so later clients
        # can still connect (no suspend / no EOS on shutdown).
        factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
        factory.set_eos_shutdown(False)
        factory.set_stop_on_disconnect(False)
        mounts.add_factory(p, factory)

    loop = GLib.MainLoop()
    source_id = server.attach(None)
    if source_id == 0:
        sys.stderr.write("rtsp-server: failed to attach on 127.0.0.1:%d\n" % args.port)
        sys.stderr.flush()
        return 2

    # Double check that the port is really bound (server.attach binds it).
    bound = server.get_bound_port()
    if bound <= 0:
        sys.stderr.write("rtsp-server: not listening on port %d\n" % args.port)
        sys.stderr.flush()
        return 2

    def stop(*_):
        loop.quit()
        return GLib.SOURCE_REMOVE

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, stop)

    for p in paths:
        sys.stdout.write("READY rtsp://127.0.0.1:%d%s\n" % (bound, p))
    sys.stdout.flush()

    try:
        loop.run()
    finally:
        GLib.source_remove(source_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
