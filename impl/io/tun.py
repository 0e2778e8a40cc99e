"""TUN device driver and network-namespace entry for the current thread.

`TunDevice` opens `/dev/net/tun` as a layer-3 device (IFF_TUN | IFF_NO_PI): each `read()`
returns one whole IPv4 or IPv6 packet the kernel routed to the device, each `write()` hands
one packet to the kernel as if it had arrived on the device. The fd is non-blocking, so the
caller multiplexes it with `select`/`selectors` and brings its own clock (DESIGN.md: the
core is sans-I/O, drivers bring time and packets).

Offloads come later: with IFF_VNET_HDR and TUNSETOFFLOAD the kernel hands over TSO/GSO
super-segments of up to 64 KB prefixed by a `virtio_net_hdr`. Until then every packet is
at most the device MTU and carries a complete checksum.

`in_netns(name)` runs a block of code with the *current thread* inside a named network
namespace (`/run/netns/NAME`, as `ip netns add` creates it) and always returns it to the
namespace it came from. Anything created inside the block stays in that namespace for
life: sockets, TUN devices, netlink sockets. Python 3.11 has no `os.setns`, so this calls
libc's `setns(2)` through ctypes; `setns` acts on the calling thread only, which is exactly
what we want (other threads are untouched).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16

# Large enough for any packet on a device with a 64 KB MTU; a TUN read returns exactly one
# packet and truncates a longer one, so the buffer must never be smaller than the MTU.
MAX_PACKET_SIZE = 65536

_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(name: str) -> Path:
    """The bind-mounted namespace file that `ip netns add NAME` creates."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a network namespace name: {name!r}")
    return NETNS_RUN_DIR / name


def current_netns_inode() -> int:
    """The inode of the calling thread's network namespace (thread-self, not the process:
    after `setns` in one thread the process leader may still be elsewhere)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread inside network namespace `name`.

    `None` means "stay where you are" so callers can pass an optional namespace through.
    The original namespace is restored on every exit path, KeyboardInterrupt included;
    if that ever fails the thread would be stranded in the lab namespace, so that error is
    raised rather than swallowed.
    """
    if name is None:
        yield
        return
    target_fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        original_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target_fd, CLONE_NEWNET)
            try:
                # Guard: a namespace change that silently did not happen would make the
                # caller configure the root namespace, which we must never touch.
                if current_netns_inode() != os.fstat(target_fd).st_ino:
                    raise RuntimeError(f"setns into {name!r} did not take effect")
                yield
            finally:
                _setns(original_fd, CLONE_NEWNET)
        finally:
            os.close(original_fd)
    finally:
        os.close(target_fd)


class TunDevice:
    """One layer-3 TUN device (IFF_TUN | IFF_NO_PI), non-blocking.

    The device exists as long as the fd is open (it is not made persistent), so closing it
    removes the interface and its addresses and routes. Create it inside a namespace with
    `TunDevice("tun0", netns="mptcpref-...")`: the interface is born in the namespace of
    the thread that opens it, and stays there while the fd is used from anywhere.
    """

    def __init__(self, name: str = "tun0", netns: str | None = None) -> None:
        encoded = name.encode()
        if not encoded or len(encoded) >= IFNAMSIZ:
            raise ValueError(f"an interface name has 1 to {IFNAMSIZ - 1} bytes, got {name!r}")
        self.netns = netns
        with in_netns(netns):
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
            try:
                # struct ifreq: char ifr_name[IFNAMSIZ]; short ifr_flags; (padded to 40).
                request = struct.pack(f"{IFNAMSIZ}sH22x", encoded, IFF_TUN | IFF_NO_PI)
                answer = fcntl.ioctl(fd, TUNSETIFF, request)
            except BaseException:
                os.close(fd)
                raise
        os.set_blocking(fd, False)
        self._fd: int | None = fd
        # The kernel may rewrite the name (e.g. a "tun%d" template); report what it chose.
        self.name = answer[:IFNAMSIZ].rstrip(b"\0").decode()

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"TUN device {self.name} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def read(self) -> bytes | None:
        """One packet from the kernel, or None when none is waiting (non-blocking)."""
        try:
            return os.read(self.fileno(), MAX_PACKET_SIZE)
        except BlockingIOError:
            return None

    def write(self, packet: bytes | bytearray | memoryview) -> None:
        """Hand one whole IP packet to the kernel, as if it arrived on this device.

        A TUN write is atomic: it is accepted whole or fails, never written partially.
        """
        written = os.write(self.fileno(), packet)
        if written != len(packet):
            raise OSError(errno.EIO, f"short write to {self.name}: {written} of {len(packet)}")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"TunDevice({self.name!r}, netns={self.netns!r}, {state})"
