/**
 * A minimal eBPF interpreter for the instruction subsets of the programs tunvs assembles, so
 * tests can run the exact bytes the kernel would load:
 *   runBpf  the TUN steering program (LD_ABS/LD_IND, 32/64-bit ALU, JMP/JMP32, EXIT);
 *           out-of-bounds loads end the program with 0, as the kernel's do;
 *   runXdp  the XDP program (also LDX from the context and the packet, the map load, jumps
 *           on registers, bpf_redirect_map); a packet load the program did not bound-check
 *           throws (the verifier would have refused the program).
 */

const CTX = 1n << 32n;
const DATA = 2n << 32n;

interface XdpRun {
  /** The program's return value (2 XDP_PASS; 4 XDP_REDIRECT, from bpf_redirect_map). */
  ret: number;
  /** bpf_redirect_map's arguments, when it was called. */
  redirect?: { mapFd: number; key: number; flags: number };
}

export function runBpf(prog: Uint8Array, pkt: Uint8Array): number {
  return exec(prog, pkt).ret;
}

/** Run an XDP program on an Ethernet frame received on queue `rxQueue`. */
export function runXdp(prog: Uint8Array, frame: Uint8Array, rxQueue = 0): XdpRun {
  return exec(prog, frame, rxQueue);
}

function exec(prog: Uint8Array, pkt: Uint8Array, rxQueue?: number): XdpRun {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const pdv = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  const r = new Array<bigint>(11).fill(0n);
  const out: XdpRun = { ret: 0 };
  r[1] = CTX;
  // Bounds the program has proven (the largest data + n it compared with data_end).
  let checked = 0n;
  const M64 = (1n << 64n) - 1n;
  const u32 = (v: bigint): bigint => v & 0xffffffffn;
  let pc = 0;
  for (let steps = 0; steps < 4096; steps++) {
    const o = pc * 8;
    const code = dv.getUint8(o);
    const dst = dv.getUint8(o + 1) & 15;
    const src = dv.getUint8(o + 1) >> 4;
    const off = dv.getInt16(o + 2, true);
    const imm = BigInt(dv.getInt32(o + 4, true));
    pc++;
    const cls = code & 7;
    if (code === 0x18) {
      // 64-bit immediate (a map fd with src_reg 1): the next instruction holds the high half.
      r[dst] = imm & 0xffffffffn;
      pc++;
      continue;
    }
    if (cls === 1 && rxQueue !== undefined) {
      const size = code & 0x18;
      const n = size === 0x10 ? 1 : size === 0x08 ? 2 : size === 0x00 ? 4 : 8;
      const addr = r[src]! + BigInt(off);
      if (addr >= CTX && addr < CTX + 32n) {
        const field = Number(addr - CTX);
        r[dst] = field === 0 ? DATA : field === 4 ? DATA + BigInt(pkt.length) : field === 16 ? BigInt(rxQueue) : 0n;
        continue;
      }
      const at = Number(addr - DATA);
      if (addr < DATA || addr + BigInt(n) > DATA + checked) throw new Error(`packet load at ${at} not bound-checked`);
      r[dst] = BigInt(n === 1 ? pdv.getUint8(at) : n === 2 ? pdv.getUint16(at, true) : pdv.getUint32(at, true));
      continue;
    }
    if (code === 0x85) {
      if (imm !== 51n) throw new Error(`helper ${imm} not interpreted`);
      out.redirect = { mapFd: Number(r[1]), key: Number(u32(r[2]!)), flags: Number(r[3]!) };
      r[0] = 4n;
      continue;
    }
    if (cls === 0) {
      const size = code & 0x18;
      const mode = code & 0xe0;
      const at = Number(mode === 0x40 ? u32(r[src]! + imm) : u32(imm));
      const n = size === 0x10 ? 1 : size === 0x08 ? 2 : 4;
      if (at + n > pkt.length) return out;
      r[0] = BigInt(n === 1 ? pdv.getUint8(at) : n === 2 ? pdv.getUint16(at) : pdv.getUint32(at));
      continue;
    }
    if (cls === 4 || cls === 7) {
      const op = code & 0xf0;
      const b = (code & 8) !== 0 ? r[src]! : cls === 4 ? u32(imm) : imm & M64;
      const a = cls === 4 ? u32(r[dst]!) : r[dst]!;
      const bits = cls === 4 ? 32n : 64n;
      const mask = cls === 4 ? 0xffffffffn : M64;
      let v: bigint;
      switch (op) {
        case 0x00:
          v = a + b;
          break;
        case 0x20:
          v = a * (b & mask);
          break;
        case 0x90: // BPF_MOD: unsigned; by zero leaves the register as it is (kernel semantics)
          v = (b & mask) === 0n ? a : (a & mask) % (b & mask);
          break;
        case 0x50:
          v = a & b;
          break;
        case 0x60:
          v = a << (b % bits);
          break;
        case 0x70:
          v = (a & mask) >> (b % bits);
          break;
        case 0xa0:
          v = a ^ (b & mask);
          break;
        case 0xb0:
          v = b;
          break;
        default:
          throw new Error(`alu op ${op.toString(16)} not interpreted`);
      }
      r[dst] = v & mask;
      continue;
    }
    if (cls === 5 || cls === 6) {
      const op = code & 0xf0;
      if (op === 0x90) {
        out.ret = Number(r[0]! & 0xffffffffn);
        return out;
      }
      if (op === 0x00) {
        pc += off;
        continue;
      }
      const a = cls === 6 ? u32(r[dst]!) : r[dst]!;
      const b = (code & 8) !== 0 ? (cls === 6 ? u32(r[src]!) : r[src]!) : cls === 6 ? u32(imm) : imm & M64;
      const take =
        op === 0x10
          ? a === b
          : op === 0x50
            ? a !== b
            : op === 0x20
              ? a > b
              : (() => {
                  throw new Error(`jmp op ${op.toString(16)}`);
                })();
      // `if data + n > data_end goto out`: past it, n bytes of the packet are proven there.
      if (op === 0x20 && (code & 8) !== 0 && b === DATA + BigInt(pkt.length) && a >= DATA && !take) {
        if (a - DATA > checked) checked = a - DATA;
      }
      if (take) pc += off;
      continue;
    }
    throw new Error(`class ${cls} not interpreted`);
  }
  throw new Error('program did not exit');
}

/** Instructions no path from the first reaches (the kernel verifier's "unreachable insn"). */
export function unreachable(prog: Uint8Array): number[] {
  const n = prog.length / 8;
  const seen = new Uint8Array(n);
  const todo = [0];
  while (todo.length > 0) {
    const pc = todo.pop()!;
    if (pc < 0 || pc >= n || seen[pc] === 1) continue;
    seen[pc] = 1;
    const code = prog[pc * 8]!;
    const off = new DataView(prog.buffer, prog.byteOffset + pc * 8 + 2, 2).getInt16(0, true);
    const cls = code & 7;
    if (cls === 0x05 || cls === 0x06) {
      const op = code & 0xf0;
      if (op === 0x90) continue; // exit
      todo.push(pc + 1 + off);
      if (op !== 0x00) todo.push(pc + 1); // conditional: both ways
    } else {
      todo.push(pc + 1);
    }
  }
  return [...seen.keys()].filter((i) => seen[i] === 0);
}
