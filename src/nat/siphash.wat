;; SipHash-2-4 (src/nat/siphash.ts) in WebAssembly, whose i64 arithmetic JavaScript lacks:
;; ~4.5x faster than the same rounds on pairs of uint32 in JS (~80 ns against ~380 ns for the
;; five words of an IPv4 SYN cookie). src/nat/siphash_wasm.ts holds the bytes wat2wasm makes
;; of this file (test/nat/isn.test.ts checks that they still match it).
;;
;; Memory (one page): the key's 16 bytes at 0, the message at 16 (n little-endian 32-bit
;; words, n <= 16), the 64-bit result at 80. sip(n) hashes the n words.
(module
  (memory (export "mem") 1)
  (func (export "sip") (param $n i32)
    (local $v0 i64) (local $v1 i64) (local $v2 i64) (local $v3 i64) (local $m i64)
    (local $r i32) (local $msgRounds i32)
    (local.set $v0 (i64.xor (i64.load (i32.const 0)) (i64.const 0x736f6d6570736575)))
    (local.set $v1 (i64.xor (i64.load (i32.const 8)) (i64.const 0x646f72616e646f6d)))
    (local.set $v2 (i64.xor (i64.load (i32.const 0)) (i64.const 0x6c7967656e657261)))
    (local.set $v3 (i64.xor (i64.load (i32.const 8)) (i64.const 0x7465646279746573)))
    ;; blocks of two words, the last with the word left over and the length in bytes on top
    (local.set $msgRounds (i32.shl (i32.add (i32.shr_u (local.get $n) (i32.const 1)) (i32.const 1)) (i32.const 1)))
    (loop $round
      (if (i32.and (i32.lt_u (local.get $r) (local.get $msgRounds)) (i32.eqz (i32.and (local.get $r) (i32.const 1))))
        (then
          (if (i32.eq (local.get $r) (i32.sub (local.get $msgRounds) (i32.const 2)))
            (then
              (local.set $m (i64.shl (i64.extend_i32_u (i32.and (i32.shl (local.get $n) (i32.const 2)) (i32.const 0xff))) (i64.const 56)))
              (if (i32.and (local.get $n) (i32.const 1))
                (then (local.set $m (i64.or (local.get $m)
                  (i64.load32_u (i32.add (i32.const 12) (i32.shl (local.get $n) (i32.const 2)))))))))
            (else (local.set $m (i64.load (i32.add (i32.const 16) (i32.shl (local.get $r) (i32.const 2)))))))
          (local.set $v3 (i64.xor (local.get $v3) (local.get $m)))))
      ;; SipRound
      (local.set $v0 (i64.add (local.get $v0) (local.get $v1)))
      (local.set $v1 (i64.xor (i64.rotl (local.get $v1) (i64.const 13)) (local.get $v0)))
      (local.set $v0 (i64.rotl (local.get $v0) (i64.const 32)))
      (local.set $v2 (i64.add (local.get $v2) (local.get $v3)))
      (local.set $v3 (i64.xor (i64.rotl (local.get $v3) (i64.const 16)) (local.get $v2)))
      (local.set $v0 (i64.add (local.get $v0) (local.get $v3)))
      (local.set $v3 (i64.xor (i64.rotl (local.get $v3) (i64.const 21)) (local.get $v0)))
      (local.set $v2 (i64.add (local.get $v2) (local.get $v1)))
      (local.set $v1 (i64.xor (i64.rotl (local.get $v1) (i64.const 17)) (local.get $v2)))
      (local.set $v2 (i64.rotl (local.get $v2) (i64.const 32)))
      (if (i32.and (i32.lt_u (local.get $r) (local.get $msgRounds)) (i32.and (local.get $r) (i32.const 1)))
        (then
          (local.set $v0 (i64.xor (local.get $v0) (local.get $m)))
          (if (i32.eq (local.get $r) (i32.sub (local.get $msgRounds) (i32.const 1)))
            (then (local.set $v2 (i64.xor (local.get $v2) (i64.const 0xff)))))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $round (i32.lt_u (local.get $r) (i32.add (local.get $msgRounds) (i32.const 4)))))
    (i64.store (i32.const 80)
      (i64.xor (i64.xor (local.get $v0) (local.get $v1)) (i64.xor (local.get $v2) (local.get $v3))))))
