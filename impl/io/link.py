"""The one link model (DESIGN principle 7): given a packet's size and the time it is
offered, decide when (and whether, and how many times) it comes out of the other end.

Sans-I/O: no sockets, no clock, no threads; randomness comes from a seeded
`random.Random`, so a run is reproducible from its seed. The simulator (`sim.py`) calls
it for every packet, and the userspace forwarder between TUN devices will call it the same
way, so a benchmark against the kernel and a simulation go through identical links.

What happens to one packet, in order:

1. link down: dropped (`stats.dropped_down`);
2. random loss with probability `loss` (`stats.lost`);
3. rate limit: the packet waits for the transmitter (FIFO) and takes size*8/rate
   seconds to serialize; if the bytes already waiting plus this one exceed
   `queue_limit`, it is tail-dropped (`stats.dropped_queue`), a drop-tail bottleneck;
4. propagation: `delay` plus uniform jitter in [-jitter, +jitter]; packets still leave
   in order (jitter does not reorder, as on a real wire);
5. reordering: with probability `reorder` the packet is held back `reorder_delay`
   longer and later packets overtake it (netem's model, inverted);
6. duplication: with probability `duplicate` a second copy follows (steps 4-5 again).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Link", "LinkConfig", "LinkStats"]


@dataclass(frozen=True)
class LinkConfig:
    delay: float = 0.0  # one-way propagation delay, seconds
    jitter: float = 0.0  # seconds, uniform +/-
    loss: float = 0.0  # probability in [0, 1]
    rate: float | None = None  # bits per second; None = infinitely fast
    queue_limit: int | None = None  # bytes waiting to be serialized; None = unbounded
    reorder: float = 0.0  # probability a packet is held back
    reorder_delay: float = 0.005  # how long it is held back, seconds
    duplicate: float = 0.0  # probability of a second copy

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value}")
        if self.delay < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("delays must not be negative")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")


@dataclass
class LinkStats:
    offered: int = 0
    delivered: int = 0  # copies scheduled for delivery (duplicates included)
    lost: int = 0
    dropped_queue: int = 0
    dropped_down: int = 0
    reordered: int = 0
    duplicated: int = 0


class Link:
    """One direction of a link."""

    def __init__(self, config: LinkConfig | None = None, seed: int | str = 0) -> None:
        self.config = config or LinkConfig()
        self._rng = random.Random(seed)
        self.up = True
        self._busy_until = 0.0  # when the transmitter finishes the last accepted packet
        self._last_arrival = 0.0  # FIFO floor for packets that are not reordered
        self.stats = LinkStats()

    def set_up(self, up: bool) -> None:
        self.up = up

    def transmit(self, size: int, now: float) -> list[float]:
        """Arrival times at the far end of a `size`-byte packet offered at `now`:
        [] when it is dropped, two times when it is duplicated."""
        config = self.config
        stats = self.stats
        stats.offered += 1
        if not self.up:
            stats.dropped_down += 1
            return []
        if config.loss and self._rng.random() < config.loss:
            stats.lost += 1
            return []
        departure = now
        if config.rate is not None:
            start = max(now, self._busy_until)
            backlog = (start - now) * config.rate / 8
            if config.queue_limit is not None and backlog + size > config.queue_limit:
                stats.dropped_queue += 1
                return []
            self._busy_until = start + size * 8 / config.rate
            departure = self._busy_until
        arrivals = [self._arrival(departure)]
        if config.duplicate and self._rng.random() < config.duplicate:
            stats.duplicated += 1
            arrivals.append(self._arrival(departure))
        stats.delivered += len(arrivals)
        return arrivals

    def _arrival(self, departure: float) -> float:
        config = self.config
        arrival = departure + config.delay
        if config.jitter:
            arrival = max(departure, arrival + self._rng.uniform(-config.jitter, config.jitter))
        if config.reorder and self._rng.random() < config.reorder:
            self.stats.reordered += 1
            return max(arrival, self._last_arrival) + config.reorder_delay
        arrival = max(arrival, self._last_arrival)
        self._last_arrival = arrival
        return arrival
