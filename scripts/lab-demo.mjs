// `npm run lab`: the quick start. Brings the netns lab up with tunvs on LB A, shows a
// request through each VIP and what the real server saw (FULLNAT with TOA, then NAT,
// TUNNEL and DR), runs a 10-second autocannon
// load through the VIP (progress shown), prints the result and how to tear down.
// Everything it starts stays up for you to explore until `npm run lab:down`.
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tunvs = [process.execPath, join(root, 'dist', 'src', 'cli', 'main.js')];
const say = (s) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);
const run = (args, opts = {}) => execFileSync(tunvs[0], [...tunvs.slice(1), ...args], { encoding: 'utf8', ...opts });

if (process.getuid?.() !== 0) {
  console.error('npm run lab needs root (it creates network namespaces and a TUN device): run it as root');
  process.exit(1);
}

say('Bringing up the lab (client, router, LB A + B, redis, rs1..rs3 in network namespaces)');
run(['lab', 'down'], { stdio: 'ignore' });
process.stdout.write(run(['lab', 'up']));

say('GET http://198.18.0.100/ from the client (198.18.100.10), three times (IPv4 VIP, rr over rs1..rs3)');
process.stdout.write(run(['lab', 'curl', '--count', '3']));
say('GET http://[fd18:18::100]/ from the client (fd18:18:100::10) (IPv6 VIP)');
process.stdout.write(run(['lab', 'curl', '-6', '--count', '3']));

say('What the real servers received: the packets come from the LB local address (FULLNAT) and');
console.log('   carry the client address in the TOA option (captured on the real servers with tshark);');
console.log("   the eBPF TOA reader attached to the servers' cgroup hands it to the unmodified application:");
process.stdout.write(run(['lab', 'toa', '--count', '3']));
process.stdout.write(run(['lab', 'toa', '-6', '--count', '3']));
say('The reader on the real servers (tunvs rs status)');
process.stdout.write(run(['rs', 'status']));

say('The other LVS forwarding modes (docs/modes.md): NAT on VIP port 8081, TUNNEL on 8080, DR');
console.log('   NAT: only the destination is rewritten; the servers route replies back through the LB.');
process.stdout.write(run(['lab', 'curl', '--mode', 'nat', '--count', '2']));
process.stdout.write(run(['lab', 'curl', '-6', '--mode', 'nat', '--count', '2']));
console.log('   TUNNEL: the packet goes whole inside IP-in-IP; the servers (VIP on lo, XDP decapsulator)');
console.log('   answer the client directly.');
process.stdout.write(run(['lab', 'curl', '--mode', 'tunnel', '--count', '2']));
process.stdout.write(run(['lab', 'curl', '-6', '--mode', 'tunnel', '--count', '2']));
console.log("   DR (VIP 198.18.0.101:8080): the packet unchanged, in a frame to the server's MAC");
console.log('   (a packet socket beside the TUN); the servers answer the client directly.');
process.stdout.write(run(['lab', 'curl', '--mode', 'dr', '--count', '2']));
process.stdout.write(run(['lab', 'curl', '-6', '--mode', 'dr', '--count', '2']));

say('Load: autocannon -c 50 -d 10 through the IPv4 VIP (keep-alive), from the client namespace');
const cannon = join(root, 'node_modules', 'autocannon', 'autocannon.js');
const r = spawnSync(
  'ip',
  ['netns', 'exec', 'tvs-client', process.execPath, cannon, '-c', '50', '-d', '10', 'http://198.18.0.100/'],
  {
    stdio: 'inherit',
  },
);
if (r.status !== 0) console.error(`autocannon exited with ${r.status}`);

say('What tunvs counted (Forward: FullNat, Masq, Tunnel — as ipvsadm -Ln names them)');
process.stdout.write(run(['list', '--stats', '--admin', '/run/tunvs-lab/tvs-/admin.sock']));
console.log(`
The lab is still up. Explore it:
  node dist/src/cli/main.js lab status
  node dist/src/cli/main.js lab curl -6
  node dist/src/cli/main.js list --stats --admin /run/tunvs-lab/tvs-/admin.sock
Tear it down with:
  npm run lab:down
Then see the active/standby pair survive a failover under load (keepalived + Redis sync):
  node dist/src/cli/main.js lab failover
`);
