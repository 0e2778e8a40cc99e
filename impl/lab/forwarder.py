"""The userspace link between two kernels: moves packets between pairs of TUN devices
through the one link model (`impl.io.link`), in a process of its own.

    python -m impl.lab.forwarder --parent PID '{"pairs": [{"label": "path1",
        "a_fd": 5, "b_fd": 6, "config": {LinkConfig fields}, "seed": "0:path1"}, ...]}'

Each pair is one path: what the kernel behind `a_fd` routes into its TUN is offered to
the a->b link and written into `b_fd` when the link says it arrives, and the other way
round with a second link of the same configuration (independently seeded). The fds are
inherited from the lab process (`subprocess.Popen(pass_fds=...)`), which created the TUN
devices inside its namespaces and keeps them alive; this process only reads and writes.

It is a separate process (not a thread of the test or benchmark) so that the measuring
process and the forwarder never compete for one GIL. It prints "ready" once it watches
its fds, and on SIGTERM (or when its parent dies: PR_SET_PDEATHSIG) prints one JSON line
of per-link statistics and exits. Non-IP frames do not exist on a TUN (IFF_NO_PI); every
packet, TCP or not, is forwarded, as a wire would.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from impl.io.link import Link, LinkConfig
from impl.io.tun import MAX_PACKET_SIZE
from impl.io.tun_loop import DelayLine, transmit
from impl.lab.traffic import die_with_parent

BATCH = 64


class Stop(Exception):
    """Raised by the signal handler to leave the loop at once (even inside select)."""


@dataclass
class Direction:
    """One direction of one path: read `source`, write `target`, through `link`."""

    label: str
    source: int
    target: int
    link: Link
    forwarded: int = 0
    bytes: int = 0
    write_errors: int = 0

    def report(self) -> dict[str, Any]:
        return {"label": self.label, "forwarded": self.forwarded, "bytes": self.bytes,
                "write_errors": self.write_errors, "link": asdict(self.link.stats)}


class Forwarder:
    def __init__(self, pairs: list[dict[str, Any]]) -> None:
        self.directions: list[Direction] = []
        self._selector = selectors.DefaultSelector()
        self._delay_line = DelayLine()
        for pair in pairs:
            config = LinkConfig(**pair["config"])
            seed = pair.get("seed", pair["label"])
            for name, source, target in (("a>b", pair["a_fd"], pair["b_fd"]),
                                         ("b>a", pair["b_fd"], pair["a_fd"])):
                os.set_blocking(source, False)
                direction = Direction(f"{pair['label']}:{name}", source, target,
                                      Link(config, seed=f"{seed}:{name}"))
                self.directions.append(direction)
                self._selector.register(source, selectors.EVENT_READ, direction)

    def run(self) -> None:
        """Forward until a signal handler raises `Stop`."""
        delay_line = self._delay_line
        select = self._selector.select
        while True:
            now = time.monotonic()
            for direction, data in delay_line.pop_due(now):
                self._write(direction, data)
            pending = delay_line.next_time()
            wait = 1.0 if pending is None else max(0.0, pending - time.monotonic())
            for key, _ in select(min(wait, 1.0)):
                self._read(key.data)

    def _read(self, direction: Direction) -> None:
        delay_line = self._delay_line
        link = direction.link
        now = time.monotonic()
        for _ in range(BATCH):
            try:
                data = os.read(direction.source, MAX_PACKET_SIZE)
            except BlockingIOError:
                return
            for arrival in transmit(link, len(data), now):
                if arrival <= now:
                    self._write(direction, data)
                else:
                    delay_line.put(arrival, (direction, data))

    @staticmethod
    def _write(direction: Direction, data: bytes) -> None:
        try:
            os.write(direction.target, data)
        except OSError:
            direction.write_errors += 1  # ENOBUFS and the like: a loss, as on a wire
            return
        direction.forwarded += 1
        direction.bytes += len(data)

    def report(self) -> list[dict[str, Any]]:
        return [direction.report() for direction in self.directions]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impl.lab.forwarder")
    parser.add_argument("--parent", type=int, default=None,
                        help="exit when this process is gone")
    parser.add_argument("spec", help="JSON: {'pairs': [...]} (see module docstring)")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    forwarder = Forwarder(json.loads(args.spec)["pairs"])

    def stop(_signum: int, _frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        forwarder.run()
    except Stop:
        pass
    sys.stdout.write(json.dumps({"stats": forwarder.report()}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
