"""rosbag2 files (MCAP, SQLite3) in and out, through rosbags, as ROS 2 Kilted writes them.

Messages are rclpy messages serialised by rclpy (the CDR a live publisher sends), so the nodes'
conversions build them. What a reader that was not written for us needs, we write as rosbag2
does: each topic's message definition is the installed .msg files concatenated the way
rosbag2's LocalMessageDefinitionSource concatenates them, its type hash is the RIHS01 hash the
installed interface's type description holds, and an MCAP channel carries that hash under
``topic_type_hash`` (rosbags leaves it out; rosbag2 reads it back as the topic's hash).

A bag is written under a temporary name beside its destination and renamed when it is closed,
so the destination is complete or absent.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from functools import cache
from io import BytesIO
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9  # the rosbag2 metadata version Jazzy and Kilted write
_INFINITE = QosTime(9223372036, 854775807)  # RMW_DURATION_INFINITE as rosbag2 writes it
_PRIMITIVES = frozenset((
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string"))
# a field's type at the start of a .msg line ("vision_msgs/Detection2D[] detections"); the same
# pattern rosbag2 uses to find a definition's dependencies
_FIELD_TYPE = re.compile(r"(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+")
_DELIMITER = "=" * 80 + "\n"


class BagError(Exception):
    """A bag that cannot be read or written as asked; the message names the file and why."""


def qos(depth: int, transient_local: bool = False) -> Qos:
    """A reliable keep-last profile (volatile or transient local), as rosbag2 records a
    publisher's offered QoS."""
    durability = QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, _INFINITE,
               _INFINITE, QosLiveliness.AUTOMATIC, _INFINITE, False)


def ros_time(ns: int) -> Time:
    """builtin_interfaces/Time of a time in nanoseconds (the inverse of conversions.stamp_ns)."""
    sec, nanosec = divmod(ns, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def _interface_file(type_name: str, suffix: str) -> Path:
    """share/<package>/msg/<Type><suffix> of an installed interface ("pkg/Type" or
    "pkg/msg/Type"), through the ament index where one is set up, else this Python's prefix."""
    package, *_, name = type_name.split("/")
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError, ValueError):  # OSError: no AMENT_PREFIX_PATH
        share = Path(sys.prefix) / "share" / package
    path = share / "msg" / f"{name}{suffix}"
    if not path.is_file():
        raise BagError(f"{path}: no installed definition of {type_name}")
    return path


def _dependencies(text: str, package: str) -> list[str]:
    """The message types a .msg text's fields use, sorted ("pkg/Type"), as rosbag2 finds them."""
    found = set()
    for name in _FIELD_TYPE.findall(text):
        if name not in _PRIMITIVES:
            found.add(name if "/" in name else f"{package}/{name}")
    return sorted(found)


@cache
def message_definition(msgtype: str) -> str:
    """The full ``ros2msg`` text of an installed type ("pkg/msg/Type"): its .msg file, then
    each type it uses once, depth first, after a delimiter line pair, as rosbag2 writes it."""
    seen: set[str] = set()

    def text_of(type_name: str) -> str:
        text = _interface_file(type_name, ".msg").read_text()
        for dependency in _dependencies(text, type_name.split("/")[0]):
            if dependency not in seen:
                seen.add(dependency)
                text += f"\n{_DELIMITER}MSG: {dependency}\n{text_of(dependency)}"
        return text

    return text_of(msgtype)


@cache
def type_hash(msgtype: str) -> str:
    """The RIHS01 type hash of an installed type, from its type description (what a live
    publisher of it announces)."""
    path = _interface_file(msgtype, ".json")
    for entry in json.loads(path.read_text())["type_hashes"]:
        if entry["type_name"] == msgtype:
            return entry["hash_string"]
    raise BagError(f"{path}: no type hash of {msgtype}")


def copy_definition(connection: Connection) -> tuple[str, str] | None:
    """(definition, type hash) to write a copied topic with: the input's own; the hash of its
    own .msg definition where it has none (Humble recorded none); else the installed type's;
    None when there is neither."""
    msgdef, msgtype = connection.msgdef.data, connection.msgtype
    if msgdef and connection.digest:
        return msgdef, connection.digest
    try:
        if not msgdef:
            return message_definition(msgtype), type_hash(msgtype)
        if connection.msgdef.format == MessageDefinitionFormat.MSG:
            store = get_typestore(Stores.EMPTY)
            store.register(get_types_from_msg(msgdef, msgtype))
            return msgdef, store.hash_rihs01(msgtype)
    except (BagError, TypesysError):
        pass
    return None


def message_class(msgtype: str) -> type:
    """The rclpy class of "pkg/msg/Type"; BagError when it is not installed."""
    package, _, name = msgtype.rpartition("/")
    try:
        return getattr(importlib.import_module(package.replace("/", ".")), name)
    except (AttributeError, ImportError, ValueError) as exc:
        raise BagError(f"message type {msgtype} is not installed: {exc}") from exc


class _KiltedMcapStorage(McapWriter):
    """rosbags' MCAP storage, whose channels also carry ``topic_type_hash`` as rosbag2's do."""

    def add_connection(self, connection: Connection, offered_qos_profiles: str) -> None:
        metadata = BytesIO()
        for key, value in (("offered_qos_profiles", offered_qos_profiles),
                           ("topic_type_hash", connection.digest)):
            write_string(metadata, key)
            write_string(metadata, value)
        ext = connection.ext
        assert isinstance(ext, ConnectionExtRosbag2)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     ext.serialization_format, metadata.getvalue()))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)


class _Writer(Writer):
    STORAGE_PLUGINS: ClassVar = MappingProxyType(
        {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _KiltedMcapStorage})


class BagWriter:
    """A rosbag2 bag written under a temporary name and renamed to ``path`` on close().

    abort() (or leaving a ``with`` block by an exception) removes everything written.
    """

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: exists already; give another output name")
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
        try:
            self._folder = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.",
                                                 dir=self.path.parent))
            self._writer = _Writer(self._folder / self.path.name, version=BAG_VERSION,
                                   storage_plugin=STORAGES[storage])
            self._writer.open()
        except OSError as exc:
            raise BagError(f"{self.path}: cannot write here: {exc}") from exc
        self._topics: dict[str, Connection] = {}

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence[Qos] = (),
                  msgdef: str | None = None, digest: str | None = None) -> None:
        """Declare a topic; definition and hash default to the installed type's."""
        self._topics[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=msgdef or message_definition(msgtype),
            rihs01=digest or type_hash(msgtype), offered_qos_profiles=list(offered_qos))

    def write(self, topic: str, log_time_ns: int, message: Any) -> None:
        """Write an rclpy message, serialised by rclpy, at the bag time ``log_time_ns``."""
        self.write_raw(topic, log_time_ns, serialize_message(message))

    def write_raw(self, topic: str, log_time_ns: int, data: bytes | memoryview) -> None:
        self._writer.write(self._topics[topic], log_time_ns, data)

    def close(self) -> None:
        """Finish the bag and move it to its destination."""
        try:
            self._writer.close()
            self._folder.joinpath(self.path.name).rename(self.path)
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written: the destination never appears."""
        self._writer.abort()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: Any, *_exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class BagReader:
    """A rosbag2 bag (a folder with metadata.yaml, or a bare .mcap / .db3 file) opened for
    reading; every failure of the library, at opening or mid-way, becomes a BagError."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # rosbags raises many types on a damaged file; all say why
            raise BagError(f"{self.path}: cannot open as a rosbag2 bag: {_reason(exc)}") from exc

    @property
    def connections(self) -> list[Connection]:
        return self._reader.connections

    def topic_types(self) -> dict[str, str]:
        """Topic -> message type of every topic in the bag."""
        return {c.topic: c.msgtype for c in self.connections}

    def count(self, topics: Sequence[str]) -> int:
        """Messages the bag's index holds on these topics."""
        return sum(c.msgcount for c in self.connections if c.topic in topics)

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time [ns], serialised message) on these topics, in log-time order."""
        connections = [c for c in self.connections if c.topic in topics]
        try:
            yield from self._reader.messages(connections=connections)
        except Exception as exc:  # a truncated or corrupt chunk, page or record
            raise BagError(f"{self.path}: damaged after the messages read so far: "
                           f"{_reason(exc)}") from exc

    def close(self) -> None:
        self._reader.close()


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def decode(data: bytes, msgtype: str, where: str) -> Any:
    """The rclpy message in ``data``; BagError (saying ``where``) when it does not parse."""
    try:
        return deserialize_message(data, message_class(msgtype))
    except BagError:
        raise
    except Exception as exc:  # rclpy raises RuntimeError, TypeError... on a corrupt payload
        raise BagError(f"{where}: a {msgtype} that does not deserialise: {_reason(exc)}") from exc
