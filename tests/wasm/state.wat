;; state: answers each request with its state before it ("none" if unset), then sets
;; the state to the request body (an empty body clears it).
;; Core module of a test process (world process-v1 of wit/); the tests turn it into a
;; component with `wasm-tools component embed wit --world process-v1` + `component new`.
;; Memory: a bump allocator (cabi_realloc) reset before each receive; receive writes its
;; result at 16 (layout of result<tuple<address, message>, ...>: ok tag at 16, source
;; address at 24, message tag at 56, request body ptr/len at 88/92).
(module
  (import "hyperware:process/standard@1.0.0" "receive" (func $receive (param i32)))
  (import "hyperware:process/standard@1.0.0" "get-state" (func $get_state (param i32)))
  (import "hyperware:process/standard@1.0.0" "set-state" (func $set_state (param i32 i32)))
  (import "hyperware:process/standard@1.0.0" "clear-state" (func $clear_state))
  (import "hyperware:process/standard@1.0.0" "send-response"
    (func $send_response (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32)
      (param $new_size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $new_size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap)
                                                     (i32.mul (memory.size) (i32.const 65536)))
                                              (i32.const 16))
                                   (i32.const 1)))
                    (i32.const -1))
          (then unreachable))))
    (local.get $ptr))
  (data (i32.const 600) "none")
  (func (export "init") (param i32 i32)
    (local $ptr i32) (local $len i32)
    (loop $l
      (global.set $heap (i32.const 1024))
      (call $receive (i32.const 16))
      (if (i32.and (i32.eqz (i32.load8_u (i32.const 16))) (i32.eqz (i32.load8_u (i32.const 56))))
        (then
          ;; option<list<u8>> at 200: tag, ptr at 204, len at 208
          (call $get_state (i32.const 200))
          (if (i32.load8_u (i32.const 200))
            (then (local.set $ptr (i32.load (i32.const 204)))
                  (local.set $len (i32.load (i32.const 208))))
            (else (local.set $ptr (i32.const 600)) (local.set $len (i32.const 4))))
          (call $send_response
            (i32.const 0) (local.get $ptr) (local.get $len)
            (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0))
          (if (i32.load (i32.const 92))
            (then (call $set_state (i32.load (i32.const 88)) (i32.load (i32.const 92))))
            (else (call $clear_state)))))
      (br $l)))
)
