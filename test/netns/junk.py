# Sends malformed and unserved packets to the lab VIP from the client namespace, with raw
# sockets (the kernel would never build these). Usage: python3 junk.py VIP
import socket, struct, sys

vip = sys.argv[1]
src = sys.argv[2]

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def ip(proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(vip))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload

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
