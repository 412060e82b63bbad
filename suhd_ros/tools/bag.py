"""suhd-bag: run the spiking detector over a rosbag2 file and write the results as a new bag.

Reads MCAP and SQLite3 bags (a bag folder, or a bare .mcap / .db3 file): sensor_msgs/Image in
every encoding the node decodes, and CompressedImage (JPEG, PNG). Writes OUT (MCAP unless
--storage sqlite3) with what the node publishes: <namespace>/detections, /label_info,
/overlay (--overlay raw|compressed) and /diagnostics with the energy figures, at the input's
bag times with the input's headers. No ROS needs to run. Needs requirements/bags.txt.

--tracker fills each detection's id with a track id (requirements/tracking.txt). Where the bag
has a depth image (aligned to the colour image, 16UC1 mm or 32FC1 m) and a camera_info topic
for a camera, named with --depth-topic / --camera-info-topic or found next to its image topic,
OUT also holds <namespace>/detections_3d and /markers, framed and stamped like the image.

Examples:
  suhd-bag recording/ -o detected/ --image-topic /camera/image_raw --overlay compressed
  suhd-bag recording.mcap -o detected/ --image-topic /camera/image_raw --copy-input
  suhd-bag --synthetic 100 -o scenes/                     # the synthetic camera, no ROS
  suhd-bag --synthetic 100 --motion -o moving/            # moving, with depth and camera_info
  suhd-bag moving/ -o tracked/ --image-topic /image --tracker bytetrack   # + ids and 3D
  suhd-bag scenes/ -o detected/ --image-topic /image --ground-truth /image/ground_truth

Ctrl-C stops after the current frame and leaves OUT complete with the frames done so far (a
second Ctrl-C abandons it). On bad input OUT is not created. Exit status: 0 done, 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from suhd_ros.detector import BACKENDS, ENGINES, Detector, DetectorError
from suhd_ros.ros.bag_detect import (
    OVERLAYS,
    BagDetection,
    BagSettings,
    BagSummary,
    check_topics,
    find_depth_topics,
    image_topics,
)
from suhd_ros.ros.bag_io import STORAGES, BagError, BagReader, BagWriter
from suhd_ros.ros.bag_synthetic import ENCODINGS, SyntheticSettings, write_synthetic
from suhd_ros.tracking import DEFAULT_TRACK_THRESHOLD, TRACKERS, TrackingError

PROG = "suhd-bag"
INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", type=Path, help="the bag to read (not with --synthetic)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the bag to write (new)")
    p.add_argument("--storage", choices=list(STORAGES), default="mcap")
    p.add_argument("--image-topic", action="append", default=[], metavar="TOPIC",
                   help="image topic to detect on (repeat for several cameras); default: the "
                   "bag's only image topic")
    p.add_argument("--ground-truth", action="append", default=[], metavar="TOPIC",
                   help="Detection2DArray topic of true boxes (the synthetic camera's "
                   "<image>/ground_truth): score the detections, paired by header")
    p.add_argument("--namespace", default="/suhd", help="of the output topics (the node's)")
    p.add_argument("--overlay", choices=OVERLAYS, default="none",
                   help="also write the overlay image, raw or JPEG (<namespace>/overlay"
                   "[/compressed])")
    p.add_argument("--copy-input", action="store_true", help="copy every input topic to OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    node = p.add_argument_group("the node's parameters")
    node.add_argument("--model", default="", help="model file (default: the embedded model)")
    node.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    node.add_argument("--engine", choices=ENGINES, default="fused")
    node.add_argument("--backend", choices=BACKENDS, default="torch",
                      help="torch, or the exported graph in onnxruntime / openvino")
    node.add_argument("--timesteps", "-T", type=int, help="override the model's T")
    node.add_argument("--compression", "--fc", type=int, help="override the model's f_c")
    node.add_argument("--threads", type=int, default=0,
                      help="CPU threads of inference; 0 = torch's default (all cores)")
    node.add_argument("--score-threshold", type=float, default=0.25)
    node.add_argument("--iou-threshold", type=float, default=0.45)
    node.add_argument("--max-detections", type=int, default=100)
    node.add_argument("--classes", type=int, nargs="*", default=[], help="class ids to keep")
    node.add_argument("--energy-every-n", type=int, default=10,
                      help="count spikes and energy on one frame in n (0 = never)")
    node.add_argument("--tracker", choices=list(TRACKERS), default="none",
                      help="track ids in Detection2D.id, the 3D detections and the markers")
    node.add_argument("--track-threshold", type=float, default=DEFAULT_TRACK_THRESHOLD,
                      help="least score that starts a track")
    node.add_argument("--track-per-class", action=argparse.BooleanOptionalAction, default=True,
                      help="each class tracked on its own (the node's track_per_class)")
    node.add_argument("--depth-topic", action="append", default=[], metavar="TOPIC",
                      help="aligned depth image of each --image-topic, in order (default: "
                      "found next to it)")
    node.add_argument("--camera-info-topic", action="append", default=[], metavar="TOPIC",
                      help="camera_info of each --image-topic, in order (default: found next "
                      "to it)")
    node.add_argument("--no-depth", action="store_true", help="no 3D even where depth is found")
    node.add_argument("--depth-window-ms", type=float, default=20.0,
                      help="largest stamp difference between a colour frame and its depth")
    camera = p.add_argument_group("--synthetic N: write the synthetic camera's N scenes and "
                                  "ground truth to OUT instead (image topic default /image)")
    camera.add_argument("--synthetic", type=int, metavar="N")
    camera.add_argument("--width", type=int, default=640)
    camera.add_argument("--height", type=int, default=480)
    camera.add_argument("--encoding", choices=ENCODINGS, default="rgb8",
                        help="jpeg / png: CompressedImage on <topic>/compressed")
    camera.add_argument("--rate", type=float, default=10.0, help="frames per second")
    camera.add_argument("--seed", type=int, default=SyntheticSettings.seed,
                        help="of the first scene (default: the camera's, %(default)s)")
    camera.add_argument("--motion", action="store_true",
                        help="one moving sequence with depth/image, camera_info, ids in the "
                        "truth and 3D truth (<topic>/ground_truth_3d)")
    return p


@contextmanager
def _first_interrupt_sets(stop: threading.Event) -> Iterator[None]:
    """The first SIGINT only asks the loop to stop after its frame; the second one is a plain
    KeyboardInterrupt again."""
    def handler(_signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _synthetic(args: argparse.Namespace) -> int:
    topic = args.image_topic[0] if args.image_topic else "/image"
    settings = SyntheticSettings(args.synthetic, topic, args.width, args.height, args.encoding,
                                 args.rate, args.seed, motion=args.motion)
    with tqdm(total=args.synthetic, unit="frame", disable=args.quiet) as bar, \
            BagWriter(args.output, args.storage) as writer:
        write_synthetic(writer, settings, bar.update)
    extra = (f", depth on {settings.depth_topic}, camera_info on "
             f"{settings.camera_info_topic}, 3D truth on {settings.truth_3d_topic}"
             if args.motion else "")
    print(f"{PROG}: {args.synthetic} {'frames' if args.motion else 'scenes'} on "
          f"{settings.image_topic}, ground truth on {settings.truth_topic}{extra} -> "
          f"{args.output}")
    return 0


def _settings(args: argparse.Namespace, reader: BagReader) -> BagSettings:
    topics = args.image_topic
    if not topics:
        found = image_topics(reader)
        if len(found) != 1:
            raise BagError(f"{reader.path}: holds {len(found)} image topics "
                           f"({', '.join(found) or 'none'}): choose with --image-topic")
        topics = found
    depth, infos = _depth_topics(args, reader, topics)
    settings = BagSettings(tuple(topics), tuple(args.ground_truth), args.namespace,
                           args.overlay, args.copy_input, args.score_threshold,
                           args.iou_threshold, args.max_detections, tuple(args.classes),
                           args.energy_every_n, args.tracker, args.track_threshold,
                           args.track_per_class, depth, infos, args.depth_window_ms)
    check_topics(reader, settings)  # before the model loads: bad input fails at once
    return settings


def _depth_topics(args: argparse.Namespace, reader: BagReader, topics: list[str]
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per image topic, its depth and camera_info topics: named, else found ("": no 3D)."""
    if args.no_depth:
        return (), ()
    for option, named in (("--depth-topic", args.depth_topic),
                          ("--camera-info-topic", args.camera_info_topic)):
        if named and len(named) != len(topics):
            raise BagError(f"{len(topics)} image topics but {len(named)} {option}: give one "
                           "per image topic, in the same order")
    if args.depth_topic and args.camera_info_topic:
        return tuple(args.depth_topic), tuple(args.camera_info_topic)
    found = [find_depth_topics(reader, t) for t in topics]
    return (tuple(args.depth_topic) or tuple(d for d, _ in found),
            tuple(args.camera_info_topic) or tuple(i for _, i in found))


def _report(summary: BagSummary, output: Path) -> None:
    print(f"{PROG}: {summary.frames} frames in {summary.wall_s:.1f} s ({summary.fps:.1f} fps): "
          f"the Detector {1e3 * summary.inference_s / max(summary.frames, 1):.1f} ms per frame, "
          f"the bag and messages {summary.overhead_ms:.1f} ms -> {output}")
    if summary.rejected:
        print(f"{PROG}: {summary.rejected} frames rejected, the last: {summary.last_reject}")
    if summary.not_copied:
        print(f"{PROG}: not copied (no definition or type hash in the input): "
              f"{', '.join(summary.not_copied)}")
    if summary.score is not None:
        print(f"{PROG}: mAP@0.5 {summary.score['map50']:.4f}, mAP@0.5:0.95 "
              f"{summary.score['map50_95']:.4f} on {summary.scored_frames} frames with ground "
              f"truth ({summary.unmatched_frames} detected frames without)")
    elif summary.frames and summary.scored_frames == 0 and summary.unmatched_frames:
        print(f"{PROG}: no frame's header matches a ground-truth message: nothing scored")


def _detect(args: argparse.Namespace) -> int:
    reader = BagReader(args.input)
    try:
        settings = _settings(args, reader)
        stop = threading.Event()
        with BagWriter(args.output, args.storage) as writer:  # refuses an existing OUT at once
            detector = Detector(args.model, args.device, args.engine, args.timesteps,
                                args.compression, threads=args.threads or torch.get_num_threads(),
                                backend=args.backend)
            run = BagDetection(reader, writer, detector, args.model, settings)
            with tqdm(total=run.summary.images, unit="frame", disable=args.quiet) as bar, \
                    _first_interrupt_sets(stop):
                summary = run.run(stop, bar.update)
    finally:
        reader.close()
    _report(summary, args.output)
    if summary.interrupted:
        print(f"{PROG}: interrupted: {args.output} holds the first {summary.frames} of "
              f"{summary.images} frames")
        return INTERRUPTED
    return 0


def _out_of_range(args: argparse.Namespace) -> str | None:
    """The node's parameter ranges, so a value the node refuses is refused here too."""
    for name in ("score_threshold", "iou_threshold"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            return f"--{name.replace('_', '-')} must be within [0, 1]"
    if not 0.0 <= args.track_threshold <= 1.0 or args.depth_window_ms < 0:
        return "--track-threshold must be within [0, 1], --depth-window-ms at least 0"
    if args.max_detections < 1 or args.energy_every_n < 0 or args.threads < 0:
        return "--max-detections must be at least 1, --energy-every-n and --threads at least 0"
    if any(k < 0 for k in args.classes):
        return "--classes must be class indices >= 0"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.synthetic is None) == (args.input is None):
        parser.error("give either a bag to read or --synthetic N")
    if problem := _out_of_range(args):
        parser.error(problem)
    try:
        return _synthetic(args) if args.synthetic is not None else _detect(args)
    except (BagError, DetectorError, TrackingError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before or after the frame loop, or a second Ctrl-C in it
        print(f"{PROG}: interrupted: {args.output} not written", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
