"""The two programs of a `linux_pair` scenario, on kernel MPTCP sockets (IPPROTO_MPTCP).

    python -m model_checks.conformance.linux_apps server --port P [--ipv6] [--plain]
        [--greet N] [--shutdown-first] [--reply N] [--sink] [--close-unread N]
        [--connections N] [--port-offset N]
    python -m model_checks.conformance.linux_apps client --connect ADDR --port P
        [--send N] [--chunks C] [--pause S] [--wait-greeting N] [--linger0-after N]
        [--linger-pause S] [--ignore-errors] [--connections N]

The server accepts one connection, sends `--greet` bytes, reads until the client's end of
stream (or, with `--close-unread N`, closes as soon as N bytes arrived: Linux answers
that close with MP_FASTCLOSE), then sends `--reply` bytes and closes. The client waits for
the greeting, sends `--send` bytes in `--chunks` pieces with `--pause` seconds before each
(time for joins and for endpoint changes made meanwhile), shuts down its sending side and
reads until the server's end of stream; with `--linger0-after N` it instead closes with
SO_LINGER {1, 0} once N bytes are sent (an abortive close: MP_FASTCLOSE). Both repeat that
`--connections` times; `--shutdown-first` makes the server shut down its sending side
right after its greeting, and `--port-offset` makes it listen on another port (so the
client's SYN is refused). Each prints one line of counts per connection.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

IPPROTO_MPTCP = 262
BLOCK = 16384


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _read(sock: socket.socket, limit: int | None = None) -> int:
    total = 0
    while limit is None or total < limit:
        data = sock.recv(BLOCK if limit is None else min(BLOCK, limit - total))
        if not data:
            break
        total += len(data)
    return total


def server(args: argparse.Namespace) -> int:
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
    protocol = 0 if args.plain else IPPROTO_MPTCP
    listener = socket.socket(family, socket.SOCK_STREAM, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::" if args.ipv6 else "0.0.0.0", args.port + args.port_offset))
    listener.listen(4)
    listener.settimeout(15)
    print("listening", flush=True)  # the driver starts the client on this line
    if args.port_offset:  # listening elsewhere: the client's SYN is refused
        time.sleep(2)
        print("server listened on another port")
        return 0
    for _ in range(args.connections):
        sock, _ = listener.accept()
        sock.settimeout(15)
        serve_one(sock, args)
    return 0


def serve_one(sock: socket.socket, args: argparse.Namespace) -> None:
    if args.greet:
        try:
            sock.sendall(b"g" * args.greet)
        except OSError as error:
            if not args.sink:
                raise
            print(f"server greeting ended: {error}")
            return
    if args.shutdown_first:
        sock.shutdown(socket.SHUT_WR)
    if args.close_unread:
        received = _read(sock, args.close_unread)
        time.sleep(0.2)  # more data arrives and stays unread
        sock.close()
        print(f"server received {received} then closed with unread data")
        return
    try:
        received = _read(sock)
    except OSError as error:
        if not args.sink:
            raise
        print(f"server read ended: {error}")
        received = -1
    if args.reply:
        sock.sendall(b"r" * args.reply)
    sock.close()
    print(f"server received {received} sent {args.reply}")


def client(args: argparse.Namespace) -> int:
    for _ in range(args.connections):
        try:
            code = client_one(args)
        except OSError as error:
            if not args.ignore_errors:
                raise
            print(f"client stopped by {error}")
            return 0
        if code:
            return code
        time.sleep(0.2)
    return 0


def client_one(args: argparse.Namespace) -> int:
    sock = socket.socket(_family(args.connect), socket.SOCK_STREAM, IPPROTO_MPTCP)
    sock.settimeout(15)
    sock.connect((args.connect, args.port))
    if args.wait_greeting:
        _read(sock, args.wait_greeting)
    sent = 0
    chunk = -(-args.send // max(1, args.chunks)) if args.send else 0
    try:
        while sent < args.send:
            if args.pause:
                time.sleep(args.pause)
            piece = min(chunk, args.send - sent)
            if args.linger0_after is not None:
                piece = min(piece, args.linger0_after - sent)
            sock.sendall(b"c" * piece)
            sent += piece
            if args.linger0_after is not None and sent >= args.linger0_after:
                time.sleep(args.linger_pause)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                print(f"client sent {sent} then aborted")
                return 0
        sock.shutdown(socket.SHUT_WR)
        received = _read(sock)
    except OSError as error:
        if not args.ignore_errors:
            raise
        print(f"client sent {sent}, stopped by {error}")
        sock.close()
        return 0
    sock.close()
    print(f"client sent {sent} received {received}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linux_apps")
    roles = parser.add_subparsers(dest="role", required=True)
    serve = roles.add_parser("server")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--ipv6", action="store_true")
    serve.add_argument("--plain", action="store_true", help="a plain TCP listener")
    serve.add_argument("--greet", type=int, default=0)
    serve.add_argument("--reply", type=int, default=0)
    serve.add_argument("--sink", action="store_true")
    serve.add_argument("--close-unread", type=int, default=0)
    serve.add_argument("--shutdown-first", action="store_true")
    serve.add_argument("--connections", type=int, default=1)
    serve.add_argument("--port-offset", type=int, default=0)
    connect = roles.add_parser("client")
    connect.add_argument("--connect", required=True)
    connect.add_argument("--port", type=int, required=True)
    connect.add_argument("--send", type=int, default=0)
    connect.add_argument("--chunks", type=int, default=1)
    connect.add_argument("--pause", type=float, default=0.0)
    connect.add_argument("--wait-greeting", type=int, default=0)
    connect.add_argument("--linger0-after", type=int, default=None)
    connect.add_argument("--ignore-errors", action="store_true")
    connect.add_argument("--connections", type=int, default=1)
    connect.add_argument("--linger-pause", type=float, default=0.1,
                         help="seconds between the last send and the abortive close")
    args = parser.parse_args(argv)
    return server(args) if args.role == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
