"""pcap files of raw IP packets, written and read with scapy's maintained pcap code
(`scapy.utils.PcapWriter` / `RawPcapReader`), not a hand-written file format.

We write link type 101 (LINKTYPE_RAW: each record is an IPv4 or IPv6 packet, no link
header), which is what a TUN device carries and what Wireshark/tshark dissect directly
(DESIGN.md principle 8: every endpoint can write a pcap that Wireshark reads).

`read_pcap` returns `(timestamp, ip_packet_bytes)` pairs. Besides raw-IP captures it
reads what `tcpdump` writes on a veth (Ethernet) or on `-i any` (Linux cooked SLL and
SLL2) by dropping the link header, and pcapng files scapy recognises; frames that do not
carry IPv4/IPv6 (ARP, ...) are skipped. A file that is not a capture, or whose records
are cut short, raises `PcapError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from types import TracebackType

from scapy.error import Scapy_Exception
from scapy.utils import PcapWriter, RawPcapReader

__all__ = ["LINKTYPE_RAW", "PcapError", "PcapFile", "read_pcap"]

LINKTYPE_RAW = 101  # the pcap link type for raw IPv4/IPv6 packets (tcpdump.org/linktypes)
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
_DLT_RAW_ALIASES = (12, 14)  # DLT_RAW as some BSDs number it in the file header

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = (0x8100, 0x88A8)

_PCAP_FILE_HEADER = 24
_PCAP_RECORD_HEADER = 16


class PcapError(ValueError):
    """A capture file that cannot be read: not a capture, truncated, or of a link type
    whose packets we cannot turn into IP packets."""


class PcapFile:
    """Writes raw IP packets to a pcap file (link type 101).

        with PcapFile("run.pcap") as pcap:
            pcap.write(packet_bytes, timestamp)

    The file header is written on open, so a capture with no packets is still valid.
    """

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = False) -> None:
        self.path = os.fspath(path)
        self._writer = PcapWriter(self.path, linktype=LINKTYPE_RAW, sync=sync)
        self._writer.write_header(None)
        self.count = 0

    def write(self, packet: bytes | bytearray | memoryview, timestamp: float | None = None) -> None:
        """Append one IP packet captured at `timestamp` (seconds since the epoch; now
        when None). Timestamps are stored with microsecond precision."""
        if timestamp is None:
            timestamp = time.time()
        seconds = int(timestamp // 1)
        microseconds = round((timestamp - seconds) * 1_000_000)
        if microseconds >= 1_000_000:  # rounding carried into the next second
            seconds, microseconds = seconds + 1, microseconds - 1_000_000
        self._writer.write_packet(bytes(packet), sec=seconds, usec=microseconds)
        self.count += 1

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> PcapFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _ip_from_frame(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a captured frame, or None for a frame without one."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *_DLT_RAW_ALIASES):
        return frame
    if linktype == LINKTYPE_ETHERNET:
        position = 12
        ethertype = int.from_bytes(frame[12:14], "big")
        while ethertype in _ETHERTYPE_VLAN and len(frame) >= position + 6:
            position += 4
            ethertype = int.from_bytes(frame[position : position + 2], "big")
        start = position + 2
    elif linktype == LINKTYPE_LINUX_SLL:
        ethertype = int.from_bytes(frame[14:16], "big")
        start = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        ethertype = int.from_bytes(frame[0:2], "big")
        start = 20
    else:
        raise PcapError(f"link type {linktype} is not supported (raw IP, Ethernet, SLL, SLL2)")
    if ethertype in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6) and len(frame) > start:
        return frame[start:]
    return None


def _timestamp(reader: object, metadata: object) -> float:
    if hasattr(metadata, "usec"):  # classic pcap
        scale = 1e9 if getattr(reader, "nano", False) else 1e6
        return metadata.sec + metadata.usec / scale  # type: ignore[attr-defined]
    # pcapng: a 64-bit count of units of 1/tsresol seconds
    ticks = (metadata.tshigh << 32) | metadata.tslow  # type: ignore[attr-defined]
    return ticks / metadata.tsresol  # type: ignore[attr-defined]


def read_pcap(path: str | os.PathLike[str]) -> list[tuple[float, bytes]]:
    """Every IP packet in the capture at `path`, as `(timestamp, bytes)`, in file order.

    Raises `PcapError` when the file is not a pcap/pcapng capture, when a record is
    shorter than its header says (a capture cut off mid-write), or when bytes are left
    over after the last whole record.
    """
    filename = os.fspath(path)
    packets: list[tuple[float, bytes]] = []
    scapy_log = logging.getLogger("scapy.runtime")
    previous_level = scapy_log.level
    # scapy only *warns* about a truncated record; we turn that into an error below.
    scapy_log.setLevel(logging.ERROR)
    try:
        try:
            reader = RawPcapReader(filename)
        except Scapy_Exception as error:
            raise PcapError(f"{filename}: not a readable pcap or pcapng file ({error})") from None
        except OSError as error:
            raise PcapError(f"{filename}: {error.strerror or error}") from None
        with reader:
            is_classic = hasattr(reader, "endian") and not hasattr(reader, "interfaces")
            consumed = _PCAP_FILE_HEADER
            try:
                for index, (frame, metadata) in enumerate(reader):
                    linktype = getattr(metadata, "linktype", None)
                    if linktype is None:
                        linktype = reader.linktype
                    caplen = getattr(metadata, "caplen", len(frame))
                    if caplen is not None and len(frame) < caplen:
                        raise PcapError(
                            f"{filename}: record {index} is truncated "
                            f"({len(frame)} of {caplen} bytes)"
                        )
                    consumed += _PCAP_RECORD_HEADER + len(frame)
                    ip_packet = _ip_from_frame(linktype, frame)
                    if ip_packet is not None:
                        packets.append((_timestamp(reader, metadata), ip_packet))
            except Scapy_Exception as error:
                raise PcapError(f"{filename}: corrupt capture ({error})") from None
            if is_classic and not isinstance(reader.f, gzip.GzipFile):
                size = os.path.getsize(filename)
                if size != consumed:
                    raise PcapError(
                        f"{filename}: {size - consumed} stray bytes after the last whole "
                        f"record (truncated record header?)"
                    )
    finally:
        scapy_log.setLevel(previous_level)
    return packets
