"""Address translation in the relay: how a path reaches a server the lab did not start.

A server someone else started listens on this namespace's loopback (127.0.0.1:8000). The
path's relay puts it at the path's server address without a proxy: each IPv4 TCP packet the
client sends to 198.19.S.2:PORT has its addresses (and port) rewritten to come from
198.19.S.3 and go to 127.0.0.1:8000, and leaves through a third TUN device into this very
namespace; the server's answers, routed to 198.19.S.3 through that device, are rewritten
back. So the connection is the client's and the server's own, end to end: the server's
socket options, buffers, congestion control and Nagle cross the path as they would a network,
which a TCP proxy in front of it would hide (a proxy is the sender on the path, not the
server). The kernel accepts 127.0.0.1 from a device only where that device's
``route_localnet`` is on: the lab turns it on for its own device, not for the machine.

Checksums are adjusted, not recomputed (RFC 1624, eqn. 3): the words that change are the same
in every packet of a direction, so the adjustment is a constant added to each checksum.
"""

from __future__ import annotations

import ipaddress

IPV4_VERSION = 4
TCP = 6
TCP_CHECKSUM_AT = 16  # offset of the checksum in a TCP header
SOURCE_PORT_AT, DESTINATION_PORT_AT = 0, 2  # offsets of the ports in a TCP header
MORE_FRAGMENTS_AND_OFFSET_MASK = 0x3FFF


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _word_sum(data: bytes) -> int:
    return sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))


def checksum_delta(old: bytes, new: bytes) -> int:
    """What adding to a checksum's complement turns a sum over ``old`` into one over ``new``
    (both of an even length): ~m + m' of RFC 1624."""
    complement = sum(~int.from_bytes(old[i:i + 2], "big") & 0xFFFF for i in range(0, len(old), 2))
    return _fold(complement + _word_sum(new))


def adjusted(checksum: int, delta: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    return ~_fold((~checksum & 0xFFFF) + delta) & 0xFFFF


def internet_checksum(data: bytes) -> int:
    """The checksum of RFC 1071 over ``data`` (for tests and for a header built from scratch)."""
    padded = data + b"\0" if len(data) % 2 else data
    return ~_fold(_word_sum(padded)) & 0xFFFF


class Translation:
    """One direction's rewrite: packets from ``source`` to ``destination`` with ``port`` at
    ``port_at`` (their source or their destination port) get the new ones; any other packet is
    refused (None), so nothing but the one forwarded port reaches this namespace's loopback."""

    def __init__(self, source: str, destination: str, port: int, *, new_source: str,
                 new_destination: str, new_port: int, port_at: int) -> None:
        self.old = _packed(source, destination, port)
        self.new = _packed(new_source, new_destination, new_port)
        self.port_at = port_at
        self.ip_delta = checksum_delta(self.old[:8], self.new[:8])
        self.tcp_delta = checksum_delta(self.old, self.new)  # the pseudo-header has the addresses

    def __call__(self, packet: bytes) -> bytes | None:
        old, new = self.old, self.new
        if len(packet) < 40 or packet[0] >> 4 != IPV4_VERSION or packet[9] != TCP:
            return None
        header = (packet[0] & 0x0F) * 4
        if (len(packet) < header + 20 or packet[12:20] != old[:8]
                or int.from_bytes(packet[6:8], "big") & MORE_FRAGMENTS_AND_OFFSET_MASK):
            return None  # not ours, or a fragment (TCP here sets DF: none are expected)
        port_at = header + self.port_at
        if packet[port_at:port_at + 2] != old[8:]:
            return None
        out = bytearray(packet)
        out[12:20] = new[:8]
        out[10:12] = adjusted(int.from_bytes(packet[10:12], "big"), self.ip_delta).to_bytes(2, "big")
        out[port_at:port_at + 2] = new[8:]
        checksum_at = header + TCP_CHECKSUM_AT
        tcp_checksum = int.from_bytes(packet[checksum_at:checksum_at + 2], "big")
        out[checksum_at:checksum_at + 2] = adjusted(tcp_checksum, self.tcp_delta).to_bytes(2, "big")
        return bytes(out)


def _packed(source: str, destination: str, port: int) -> bytes:
    return (ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
            + port.to_bytes(2, "big"))


def translations(*, client: str, server: str, back: str, target: str, target_port: int,
                 port: int) -> tuple[Translation, Translation]:
    """(towards the target, back to the client) for a path whose server address is
    ``server:port`` in front of ``target:target_port``; ``back`` is the address the target
    sees the client at (routed to the lab's device, so its answers come to the relay)."""
    inward = Translation(client, server, port, new_source=back, new_destination=target,
                         new_port=target_port, port_at=DESTINATION_PORT_AT)
    outward = Translation(target, back, target_port, new_source=server, new_destination=client,
                          new_port=port, port_at=SOURCE_PORT_AT)
    return inward, outward
