;; spawner: on each request, spawns a child named "child" from the wasm path in the request
;; body (on-exit none, no capabilities requested or granted, public) and answers with the
;; child's process-name if that worked, else "name-taken" or "no-file-at-path".
;; Core module of a test process (world process-v1 of wit/); the tests turn it into a
;; component with `wasm-tools component embed wit --world process-v1` + `component new`.
;; Memory: a bump allocator (cabi_realloc) reset before each receive; receive writes its
;; result at 16 (layout of result<tuple<address, message>, ...>: ok tag at 16, source
;; address at 24, message tag at 56, request body ptr/len at 88/92).
(module
  (import "hyperware:process/standard@1.0.0" "receive" (func $receive (param i32)))
  ;; spawn: 13 flat parameters (name option<string>: tag ptr len; wasm-path: ptr len;
  ;; on-exit: tag ptr len; request-capabilities: ptr len; grant-capabilities: ptr len;
  ;; public) + a pointer where the result<process-id, spawn-error> is written (tag at +0;
  ;; ok: process-name ptr/len at +4/+8; err: spawn-error at +4)
  (import "hyperware:process/standard@1.0.0" "spawn"
    (func $spawn (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
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
  (data (i32.const 600) "child")
  (data (i32.const 608) "name-taken")
  (data (i32.const 624) "no-file-at-path")
  (func (export "init") (param i32 i32)
    (local $ptr i32) (local $len i32)
    (loop $l
      (global.set $heap (i32.const 1024))
      (call $receive (i32.const 16))
      (if (i32.and (i32.eqz (i32.load8_u (i32.const 16))) (i32.eqz (i32.load8_u (i32.const 56))))
        (then
          (call $spawn
            (i32.const 1) (i32.const 600) (i32.const 5)                  ;; name: some("child")
            (i32.load (i32.const 88)) (i32.load (i32.const 92))          ;; wasm-path: the body
            (i32.const 0) (i32.const 0) (i32.const 0)                    ;; on-exit: none
            (i32.const 0) (i32.const 0)                                  ;; request-capabilities
            (i32.const 0) (i32.const 0)                                  ;; grant-capabilities
            (i32.const 1)                                                ;; public
            (i32.const 200))                                             ;; result at 200
          (if (i32.eqz (i32.load8_u (i32.const 200)))
            (then (local.set $ptr (i32.load (i32.const 204)))
                  (local.set $len (i32.load (i32.const 208))))
            (else
              (if (i32.load8_u (i32.const 204))
                (then (local.set $ptr (i32.const 624)) (local.set $len (i32.const 15)))
                (else (local.set $ptr (i32.const 608)) (local.set $len (i32.const 10))))))
          (call $send_response
            (i32.const 0) (local.get $ptr) (local.get $len)
            (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0))))
      (br $l)))
)
