"""Names of Linux address families, socket types, IP protocols and TCP
states, as Tetragon writes and reads them (its pkg/reader/network): for
policy values (`Family: AF_INET`, `Protocol: IPPROTO_UDP`, `State:
TCP_SYN_RECV`) and for the fields of sock_arg, skb_arg and sockaddr_arg.

The numbers are Linux's ABI (include/linux/socket.h, include/uapi/linux/
in.h, include/net/tcp_states.h), the same on every architecture. A number
without a name is written as its decimal text, as Tetragon does. Pure data;
anyone may import it.
"""

from __future__ import annotations

FAMILIES = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK",
    6: "AF_NETROM", 7: "AF_BRIDGE", 8: "AF_ATMPVC", 9: "AF_X25", 10: "AF_INET6", 11: "AF_ROSE",
    12: "AF_DECnet", 13: "AF_NETBEUI", 14: "AF_SECURITY", 15: "AF_KEY", 16: "AF_NETLINK",
    17: "AF_PACKET", 18: "AF_ASH", 19: "AF_ECONET", 20: "AF_ATMSVC", 21: "AF_RDS", 23: "AF_IRDA",
    24: "AF_PPPOX", 25: "AF_WANPIPE", 26: "AF_LLC", 27: "AF_IB", 28: "AF_MPLS", 29: "AF_CAN",
    30: "AF_TIPC", 31: "AF_BLUETOOTH", 32: "AF_IUCV", 33: "AF_RXRPC", 34: "AF_ISDN",
    35: "AF_PHONET", 36: "AF_IEEE802154", 37: "AF_CAIF", 38: "AF_ALG", 39: "AF_NFC",
    40: "AF_VSOCK", 41: "AF_KCM", 42: "AF_QIPCRTR", 43: "AF_SMC", 44: "AF_XDP", 45: "AF_MCTP",
}

SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM", 5: "SOCK_SEQPACKET",
              6: "SOCK_DCCP", 10: "SOCK_PACKET"}

PROTOCOLS = {
    0: "IPPROTO_IP", 1: "IPPROTO_ICMP", 2: "IPPROTO_IGMP", 4: "IPPROTO_IPIP", 6: "IPPROTO_TCP",
    8: "IPPROTO_EGP", 12: "IPPROTO_PUP", 17: "IPPROTO_UDP", 22: "IPPROTO_IDP", 29: "IPPROTO_TP",
    33: "IPPROTO_DCCP", 41: "IPPROTO_IPV6", 46: "IPPROTO_RSVP", 47: "IPPROTO_GRE",
    50: "IPPROTO_ESP", 51: "IPPROTO_AH", 58: "IPPROTO_ICMPV6", 92: "IPPROTO_MTP",
    94: "IPPROTO_BEETPH", 98: "IPPROTO_ENCAP", 103: "IPPROTO_PIM", 108: "IPPROTO_COMP",
    132: "IPPROTO_SCTP", 136: "IPPROTO_UDPLITE", 137: "IPPROTO_MPLS", 143: "IPPROTO_ETHERNET",
    255: "IPPROTO_RAW", 262: "IPPROTO_MPTCP",
}

TCP_STATES = {1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 3: "TCP_SYN_RECV", 4: "TCP_FIN_WAIT1",
              5: "TCP_FIN_WAIT2", 6: "TCP_TIME_WAIT", 7: "TCP_CLOSE", 8: "TCP_CLOSE_WAIT",
              9: "TCP_LAST_ACK", 10: "TCP_LISTEN", 11: "TCP_CLOSING", 12: "TCP_NEW_SYN_RECV"}

_NUMBERS = {table: {name: number for number, name in names.items()}
            for table, names in (("family", FAMILIES), ("protocol", PROTOCOLS),
                                 ("state", TCP_STATES))}


def name(names: dict[int, str], number: int) -> str:
    """The name of `number`, or its decimal text."""
    return names.get(number) or str(number)


def number(table: str, text: str) -> int | None:
    """The number of a name in table family, protocol or state; None if it
    is not one of the names."""
    return _NUMBERS[table].get(text)
