# IPv6 TCP with extension headers on every packet, put there by the kernel itself (sticky
# socket options, RFC 3542): a Hop-by-Hop header (8 bytes, PadN) and a Destination Options
# header (16 bytes, an experimental option). Run inside a lab namespace (root: Hop-by-Hop
# needs CAP_NET_RAW):
#   python3 ext_headers.py server PORT
#       an echo server on [::]:PORT whose replies carry a Destination Options header (the
#       accepted sockets inherit the listener's options); prints each peer accept() gave it
#       (under the lab's TOA reader: the client); runs until stopped by its PID
#   python3 ext_headers.py echo HOST PORT COUNT BYTES
#       COUNT connections, each sending BYTES random bytes and reading them back; prints
#       {"ok": n, "bad": [...]}
#   python3 ext_headers.py get HOST PORT COUNT
#       COUNT HTTP/1.0 GETs; prints each answer's first line
#   python3 ext_headers.py udp HOST PORT COUNT
#       COUNT UDP queries of 3,000 and 20,000 bytes, one after another, to the lab's UDP echo
#       (which answers with its name in front): the kernel cuts them into fragments, the
#       Hop-by-Hop header in front of each, the Destination Options header in the first;
#       prints {"whole": n, "bad": [...]}
import json, os, socket, sys, threading, time

def options_header(units):
    """An options header of `units` × 8 bytes: next header and length (the kernel sets the
    next header), then one option filling the rest: PadN in 8 bytes; in more, an option of
    the experimental type 0x1e (RFC 4727; its top bits say "skip it if unknown"), since
    Linux refuses more than 7 bytes of padding in a row."""
    size = units * 8
    kind = 1 if size == 8 else 0x1E
    return bytes([0, units - 1, kind, size - 4]) + bytes(size - 4)

def with_headers(s, hop_by_hop=True):
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, options_header(2))
    if hop_by_hop:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, options_header(1))
    return s

def serve(port):
    ls = with_headers(socket.socket(socket.AF_INET6, socket.SOCK_STREAM), hop_by_hop=False)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", port))
    ls.listen(128)
    print("listening", flush=True)

    def echo(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    while True:
        c, peer = ls.accept()
        print("peer [%s]:%d" % peer[:2], flush=True)
        threading.Thread(target=echo, args=(c,), daemon=True).start()

def connect(host, port):
    s = with_headers(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
    s.settimeout(20)
    s.connect((host, port))
    return s

def echo_client(host, port, count, size):
    ok, bad = 0, []
    for i in range(count):
        data = os.urandom(size)
        try:
            with connect(host, port) as s:
                threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
                got = bytearray()
                while len(got) < size:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            if bytes(got) == data:
                ok += 1
            else:
                bad.append("connection %d: %d of %d bytes back, %s" % (i, len(got), size, "same so far" if data.startswith(bytes(got)) else "different"))
        except OSError as e:
            bad.append("connection %d: %s" % (i, e))
    print(json.dumps({"ok": ok, "bad": bad}))

def udp_client(host, port, count):
    whole, bad = 0, []
    for i in range(count):
        tag = ("q%d " % i).encode()
        q = tag + bytes([97 + i % 26]) * ((20000 if i % 2 else 3000) - len(tag))
        s = with_headers(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        s.settimeout(5)
        try:
            s.sendto(q, (host, port))
            m = s.recv(65535)
            if m.split(b" ", 1)[-1] == q:
                whole += 1
            else:
                bad.append("%d: %d bytes" % (i, len(m)))
        except OSError as e:
            bad.append("%d: %s" % (i, e))
        finally:
            s.close()
        time.sleep(0.01)
    print(json.dumps({"whole": whole, "bad": bad}))

def get(host, port, count):
    for _ in range(count):
        with connect(host, port) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            answer = bytearray()
            while True:
                d = s.recv(65536)
                if not d:
                    break
                answer += d
        body = bytes(answer).split(b"\r\n\r\n", 1)[-1]
        print(body.decode().strip().split("\n")[0])

mode = sys.argv[1]
if mode == "server":
    serve(int(sys.argv[2]))
elif mode == "echo":
    echo_client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
elif mode == "udp":
    udp_client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
elif mode == "get":
    get(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    sys.exit("usage: ext_headers.py server PORT | echo HOST PORT COUNT BYTES | get HOST PORT COUNT | udp HOST PORT COUNT")
