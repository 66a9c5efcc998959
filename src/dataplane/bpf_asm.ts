/**
 * A tiny eBPF assembler with labels, for the two programs tunvs builds at run time from its
 * addresses: the TUN steering program (steering.ts) and the XDP program of the AF_XDP path
 * (xdp_program.ts). Opcodes and encoding are linux/bpf.h's and linux/bpf_common.h's.
 */

// Instruction classes.
export const LD = 0x00;
export const LDX = 0x01;
export const ALU = 0x04;
export const JMP = 0x05;
export const JMP32 = 0x06;
export const ALU64 = 0x07;
// Sizes and modes.
export const W = 0x00;
export const H = 0x08;
export const B = 0x10;
export const DW = 0x18;
export const IMM = 0x00;
export const ABS = 0x20;
export const IND = 0x40;
export const MEM = 0x60;
// Sources.
export const K = 0x00;
export const X = 0x08;
// ALU operations.
export const OP_ADD = 0x00;
export const OP_MUL = 0x20;
export const OP_MOD = 0x90;
export const OP_AND = 0x50;
export const OP_LSH = 0x60;
export const OP_RSH = 0x70;
export const OP_XOR = 0xa0;
export const OP_MOV = 0xb0;
// Jumps.
export const J_A = 0x00;
export const J_EQ = 0x10;
export const J_GT = 0x20;
export const J_NE = 0x50;
export const CALL = 0x80;
export const EXIT = 0x90;
/** src_reg of a 64-bit immediate load that names a map by its fd. */
export const PSEUDO_MAP_FD = 1;

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number | string; // a label until resolved
  imm: number;
}

export class Asm {
  readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();

  constructor(private readonly name: string) {}

  emit(code: number, dst: number, src: number, off: number | string, imm: number): this {
    this.insns.push({ code, dst, src, off, imm: imm | 0 });
    return this;
  }
  label(name: string): this {
    this.labels.set(name, this.insns.length);
    return this;
  }
  /** r0 = packet[off] (B/H/W; socket filters) */
  ldAbs(size: number, off: number): this {
    return this.emit(LD | ABS | size, 0, 0, 0, off);
  }
  /** r0 = packet[reg + off] (socket filters) */
  ldInd(size: number, reg: number, off: number): this {
    return this.emit(LD | IND | size, 0, reg, 0, off);
  }
  /** dst = *(size *)(src + off) */
  ldx(size: number, dst: number, src: number, off: number): this {
    return this.emit(LDX | MEM | size, dst, src, off, 0);
  }
  /** dst = the map whose fd is `fd` (a 64-bit immediate load: two instructions). */
  ldMap(dst: number, fd: number): this {
    return this.emit(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, fd).emit(0, 0, 0, 0, 0);
  }
  alu32(op: number, dst: number, imm: number): this {
    return this.emit(ALU | op | K, dst, 0, 0, imm);
  }
  alu32x(op: number, dst: number, src: number): this {
    return this.emit(ALU | op | X, dst, src, 0, 0);
  }
  alu64(op: number, dst: number, imm: number): this {
    return this.emit(ALU64 | op | K, dst, 0, 0, imm);
  }
  mov64x(dst: number, src: number): this {
    return this.emit(ALU64 | OP_MOV | X, dst, src, 0, 0);
  }
  /** 32-bit compare with an immediate (JMP32: no sign extension of 32-bit words). */
  j32(op: number, reg: number, imm: number, target: string): this {
    return this.emit(JMP32 | op | K, reg, 0, target, imm);
  }
  /** 64-bit compare of two registers (packet bounds). */
  jx(op: number, dst: number, src: number, target: string): this {
    return this.emit(JMP | op | X, dst, src, target, 0);
  }
  ja(target: string): this {
    return this.emit(JMP | J_A, 0, 0, target, 0);
  }
  call(helper: number): this {
    return this.emit(JMP | CALL, 0, 0, 0, helper);
  }
  exit(): this {
    return this.emit(JMP | EXIT, 0, 0, 0, 0);
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.insns.length * 8);
    const dv = new DataView(out.buffer);
    this.insns.forEach((ins, i) => {
      let off = ins.off;
      if (typeof off === 'string') {
        const at = this.labels.get(off);
        if (at === undefined) throw new Error(`${this.name} program: undefined label ${off}`);
        off = at - i - 1;
      }
      dv.setUint8(i * 8, ins.code);
      dv.setUint8(i * 8 + 1, (ins.src << 4) | ins.dst);
      dv.setInt16(i * 8 + 2, off, true);
      dv.setInt32(i * 8 + 4, ins.imm, true);
    });
    return out;
  }
}
