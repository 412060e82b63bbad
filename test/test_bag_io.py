"""bag_io: definitions and type hashes as ROS 2 Kilted writes them; a bag is complete or absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcap.reader import make_reader
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
)
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from std_msgs.msg import Header
from test_vision_msgs_hashes import GOLDEN, _share_dir

from suhd_ros.ros.bag_detect import (
    COMPRESSED_IMAGE,
    DETECTIONS,
    DIAGNOSTICS,
    IMAGE,
    LABEL_INFO,
)
from suhd_ros.ros.bag_io import (
    BagError,
    BagReader,
    BagWriter,
    copy_definition,
    decode,
    message_definition,
    qos,
    ros_time,
    type_hash,
)
from suhd_ros.ros.conversions import label_info, stamp_ns

WRITTEN_TYPES = (IMAGE, COMPRESSED_IMAGE, DETECTIONS, LABEL_INFO, DIAGNOSTICS)
DELIMITER = "\n" + "=" * 80 + "\n"


@pytest.mark.parametrize("msgtype", WRITTEN_TYPES)
def test_the_written_definition_hashes_to_the_installed_type_hash(msgtype: str) -> None:
    """rosbags computes RIHS01 from the text we write, independently of how we found the hash."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(message_definition(msgtype), msgtype))
    assert store.hash_rihs01(msgtype) == type_hash(msgtype)


def test_vision_msgs_hashes_are_upstreams() -> None:
    for name in ("Detection2DArray", "LabelInfo"):
        assert type_hash(f"vision_msgs/msg/{name}") == f"RIHS01_{GOLDEN[name]}"


def test_the_definition_is_the_installed_files_in_rosbag2s_layout() -> None:
    """The root .msg verbatim (comments too), then each type it needs once, after
    '=====...' and 'MSG: pkg/Type', each section the installed file verbatim."""
    sections = message_definition(DETECTIONS).split(DELIMITER)
    assert sections[0] == (_share_dir("vision_msgs") / "msg" / "Detection2DArray.msg").read_text()
    names = []
    for section in sections[1:]:
        header, text = section.split("\n", 1)
        assert header.startswith("MSG: ")
        package, name = header.removeprefix("MSG: ").split("/")
        assert text == (_share_dir(package) / "msg" / f"{name}.msg").read_text()
        names.append(f"{package}/{name}")
    assert len(names) == len(set(names))
    assert {"std_msgs/Header", "builtin_interfaces/Time", "vision_msgs/Detection2D",
            "vision_msgs/ObjectHypothesis", "geometry_msgs/PoseWithCovariance"} <= set(names)
    assert names[:2] == ["std_msgs/Header", "builtin_interfaces/Time"]  # sorted, depth first


def test_an_uninstalled_type_is_a_bag_error() -> None:
    with pytest.raises(BagError, match="no installed definition"):
        message_definition("no_such_msgs/msg/Thing")


def _write_labels(path: Path, storage: str = "mcap") -> None:
    with BagWriter(path, storage) as writer:
        writer.add_topic("/labels", LABEL_INFO, [qos(1, transient_local=True)])
        writer.write("/labels", 5_000_000_123, label_info(Header(stamp=ros_time(5_000_000_123)),
                                                          ["circle", "square"], 0.5))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_written_bag_reads_back_and_nothing_else_is_left(tmp_path: Path, storage: str) -> None:
    _write_labels(tmp_path / "bag", storage)
    assert [p.name for p in tmp_path.iterdir()] == ["bag"]  # the temporary folder is gone
    reader = BagReader(tmp_path / "bag")
    (connection,) = reader.connections
    assert (connection.topic, connection.msgtype) == ("/labels", LABEL_INFO)
    assert connection.digest == type_hash(LABEL_INFO)
    assert connection.msgdef.data == message_definition(LABEL_INFO)
    ((_, log_ns, data),) = list(reader.messages(["/labels"]))
    msg = decode(data, LABEL_INFO, "test")
    assert log_ns == stamp_ns(msg.header) == 5_000_000_123
    assert [c.class_name for c in msg.class_map] == ["circle", "square"]
    reader.close()


def test_mcap_channels_carry_schema_and_type_hash_as_rosbag2_writes_them(tmp_path: Path) -> None:
    _write_labels(tmp_path / "bag")
    with open(tmp_path / "bag" / "bag.mcap", "rb") as f:
        summary = make_reader(f).get_summary()
    (channel,) = summary.channels.values()
    schema = summary.schemas[channel.schema_id]
    assert (schema.name, schema.encoding) == (LABEL_INFO, "ros2msg")
    assert schema.data.decode() == message_definition(LABEL_INFO)
    assert channel.message_encoding == "cdr"
    assert channel.metadata["topic_type_hash"] == f"RIHS01_{GOLDEN['LabelInfo']}"
    assert "durability: transient_local" in channel.metadata["offered_qos_profiles"]


def test_a_write_that_fails_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/labels", LABEL_INFO)
        writer.write("/labels", 1, label_info(Header(), ["a"], 0.5))
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "bag")
    assert [p.name for p in tmp_path.iterdir()] == ["bag"]


def test_damaged_files_are_one_bag_error(tmp_path: Path) -> None:
    _write_labels(tmp_path / "bag")
    whole = (tmp_path / "bag" / "bag.mcap").read_bytes()
    (tmp_path / "truncated.mcap").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "noise.mcap").write_bytes(bytes(range(256)) * 8)
    for name in ("truncated.mcap", "noise.mcap", "missing"):
        with pytest.raises(BagError, match=f"{name}: cannot open as a rosbag2 bag"):
            BagReader(tmp_path / name)


def _connection(msgtype: str, msgdef: str, digest: str) -> Connection:
    return Connection(1, "/t", msgtype, MessageDefinition(MessageDefinitionFormat.MSG, msgdef),
                      digest, 0, ConnectionExtRosbag2("cdr", []), None)


def test_a_copied_topic_keeps_or_completes_its_definition() -> None:
    definition, digest = message_definition(IMAGE), type_hash(IMAGE)
    assert copy_definition(_connection(IMAGE, "int32 x\n", "RIHS01_x")) == ("int32 x\n",
                                                                             "RIHS01_x")
    # Humble wrote definitions without hashes: the hash is computed from the bag's definition
    assert copy_definition(_connection(IMAGE, definition, "")) == (definition, digest)
    assert copy_definition(_connection("my_msgs/msg/Point", "int32 x\n", ""))[1] != digest
    # no definition at all (Humble's SQLite3): the installed type's
    assert copy_definition(_connection(IMAGE, "", "")) == (definition, digest)
    assert copy_definition(_connection("my_msgs/msg/Unknown", "", "")) is None
