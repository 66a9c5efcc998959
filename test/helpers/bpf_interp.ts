/**
 * A minimal eBPF interpreter for the instruction subset the TUN steering program uses
 * (LD_ABS/LD_IND, 32/64-bit ALU, JMP/JMP32 with immediates, EXIT), so tests can run the
 * exact bytes the kernel would load. Out-of-bounds loads end the program with 0, as the
 * kernel's do.
 */

export function runBpf(prog: Uint8Array, pkt: Uint8Array): number {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const pdv = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  const r = new Array<bigint>(11).fill(0n);
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
    if (cls === 0) {
      const size = code & 0x18;
      const mode = code & 0xe0;
      const at = Number(mode === 0x40 ? u32(r[src]! + imm) : u32(imm));
      const n = size === 0x10 ? 1 : size === 0x08 ? 2 : 4;
      if (at + n > pkt.length) return 0;
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
      if (op === 0x90) return Number(r[0]! & 0xffffffffn);
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
            : (() => {
                throw new Error(`jmp op ${op.toString(16)}`);
              })();
      if (take) pc += off;
      continue;
    }
    throw new Error(`class ${cls} not interpreted`);
  }
  throw new Error('program did not exit');
}
