# Sends malformed and unserved packets to the lab VIP from the client namespace, with raw
# sockets (the kernel would never build these). Usage: python3 junk.py VIP
import socket, struct, sys
from rawnet import ipv4

vip = sys.argv[1]
src = sys.argv[2]

def ip(proto, payload):
    return ipv4(src, vip, proto, payload)

packets = [
    ip(6, struct.pack("!HHIIBBHHH", 40001, 80, 1, 0, 0xF0, 0x02, 512, 0, 0)),  # doff 15 > packet
    ip(6, struct.pack("!HHII", 40002, 80, 1, 0)),                              # TCP header cut short
    ip(6, struct.pack("!HHIIBBHHH", 40003, 80, 1, 0, 0x50, 0x03, 512, 0, 0)),  # SYN+FIN
    ip(17, struct.pack("!HHHH", 40004, 53, 99, 0)),                              # UDP length lies
    ip(6, struct.pack("!HHIIBBHHH", 40005, 81, 1, 0, 0x50, 0x02, 512, 0, 0)),  # no service on :81
]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for p in packets:
    s.sendto(p, (vip, 0))
print(len(packets))
