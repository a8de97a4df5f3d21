"""What strict RTP costs a worker: python -m bench.rtp_guard [--sockets N]

With N UDP sockets open (as a worker with N/2 calls has), prints the time of
- one read of /proc/net/udp (the drop count, once a second per worker),
- finding a socket's descriptor by inode (once per call set-up and renegotiation),
- attaching a socket filter (the same),
- and the kernel's filter at work: packets per second a filtered socket still receives
  from its peer while a stranger's are dropped.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
import timeit

from bridge.sip.rtp_guard import attach_filter, fd_of_inode, filter_program, udp_sockets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=400)
    args = parser.parse_args()
    sockets = []
    for _ in range(args.sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    media, peer = sockets[-1], sockets[-2]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    inode = os.fstat(media.fileno()).st_ino
    program = filter_program([peer.getsockname()], ["127.0.0.1"])
    runs = 200
    read_ms = timeit.timeit(udp_sockets, number=runs) / runs * 1000
    find_ms = timeit.timeit(lambda: fd_of_inode(inode), number=runs) / runs * 1000
    attach_ms = timeit.timeit(lambda: attach_filter(media.fileno(), program), number=runs)
    print(f"sockets open            {len(udp_sockets())}")
    print(f"/proc/net/udp read      {read_ms:.2f} ms")
    print(f"descriptor by inode     {find_ms:.2f} ms")
    print(f"attach a filter         {attach_ms / runs * 1000:.3f} ms")
    media.setblocking(False)
    sent = received = 0
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        for _ in range(50):
            peer.sendto(b"x" * 172, media.getsockname())
            stranger.sendto(b"y" * 172, media.getsockname())
            sent += 1
        try:
            while media.recv(2048):
                received += 1
        except BlockingIOError:
            pass
    drops = next(row.drops for row in udp_sockets() if row.inode == inode)
    print(f"peer packets received   {received} of {sent} in 1 s")
    print(f"stranger's dropped      {drops} of {sent} (the socket's drops, /proc/net/udp)")


if __name__ == "__main__":
    main()
