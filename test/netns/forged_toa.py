# A client that forges its own TOA: a hand-made TCP connection (raw sockets) whose SYN, ACK
# and request all carry a TOA option claiming another address. Prints the HTTP answer.
# The kernel would reset the connection it knows nothing of, so outgoing RSTs are dropped
# (nftables, in this namespace, for the duration). Run inside a lab namespace:
#   python3 forged_toa.py SRC DST DPORT FORGED_ADDR FORGED_PORT [syn-only]
# With syn-only the TOA is only in the SYN (what a reader finds through the saved SYN).
import os, random, select, socket, struct, subprocess, sys, time
from rawnet import csum, ipv4

src, dst, dport, fake_addr, fake_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
syn_only = len(sys.argv) > 6 and sys.argv[6] == "syn-only"
sport = random.randint(40000, 60000)
TABLE = "tunvs_forged_toa_%d" % os.getpid()

TOA = struct.pack("!BBH4s", 254, 8, fake_port, socket.inet_aton(fake_addr))

def segment(seq, ack, flags, opts=b"", data=b""):
    opts += b"\1" * (-len(opts) % 4)
    doff = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + opts + data
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    return ipv4(src, dst, 6, tcp)

def nft(*cmds):
    subprocess.run(["nft", "-f", "-"], input="\n".join(cmds) + "\n", text=True, check=True)

out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
inp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)

def receive(timeout):
    """Next TCP segment of our connection: (flags, seq, ack, payload) or None."""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([inp], [], [], max(0, end - time.time()))
        if not r:
            return None
        pkt = inp.recv(65535)
        ihl = (pkt[0] & 15) * 4
        sp, dp, seq, ack, off, flags = struct.unpack("!HHIIBB", pkt[ihl:ihl + 14])
        if socket.inet_ntoa(pkt[12:16]) == dst and sp == dport and dp == sport:
            return flags, seq, ack, pkt[ihl + (off >> 4) * 4:]
    return None

nft("add table inet %s" % TABLE,
    "add chain inet %s out { type filter hook output priority 0; }" % TABLE,
    "add rule inet %s out tcp sport %d tcp flags rst drop" % (TABLE, sport))
try:
    isn = random.randint(0, 2**31)
    out.sendto(segment(isn, 0, 0x02, struct.pack("!BBH", 2, 4, 1400) + TOA), (dst, 0))
    got = receive(5)
    if not got or got[0] & 0x12 != 0x12:
        sys.exit("no SYN-ACK")
    rcv = (got[1] + 1) & 0xFFFFFFFF
    snd = (isn + 1) & 0xFFFFFFFF
    later = b"" if syn_only else TOA
    out.sendto(segment(snd, rcv, 0x10, later), (dst, 0))
    req = ("GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % dst).encode()
    out.sendto(segment(snd, rcv, 0x18, later, req), (dst, 0))
    snd = (snd + len(req)) & 0xFFFFFFFF
    body = b""
    while True:
        got = receive(5)
        if not got:
            break
        flags, seq, _, payload = got
        if seq == rcv and payload:
            body += payload
            rcv = (rcv + len(payload)) & 0xFFFFFFFF
        if flags & 0x01 and seq + len(payload) == rcv:
            rcv = (rcv + 1) & 0xFFFFFFFF
            out.sendto(segment(snd, rcv, 0x11), (dst, 0))  # FIN+ACK
            break
        out.sendto(segment(snd, rcv, 0x10), (dst, 0))
    sys.stdout.write(body.decode(errors="replace"))
    print("client port %d" % sport)
finally:
    nft("delete table inet %s" % TABLE)
