;; timeout: on each request from a requester R, sends a request with expects-response
;; some(1) (1 s), body "ping" and context = R's body, to sink:test:sys on R's node (a
;; process that exists but never answers), then receives once more: for the error arm it
;; answers R with "timeout:" or "offline:" (the send-error kind) + the context it got back,
;; for anything else with "unexpected". (The error restores R's request as the prompting
;; message, so the response goes to R.)
;; Core module of a test process (world process-v1 of wit/); the tests turn it into a
;; component with `wasm-tools component embed wit --world process-v1` + `component new`.
;; Memory: a bump allocator (cabi_realloc) reset before each request is handled; receive
;; writes its result at 16 (layout of result<tuple<address, message>,
;; tuple<send-error, option<context>>>): ok tag at 16; ok arm: source address at 24,
;; message tag at 56, request body ptr/len at 88/92; error arm: send-error kind at 24,
;; target at 28, message at 64, blob at 128, option<context> tag at 152, ptr/len 156/160.
(module
  (import "hyperware:process/standard@1.0.0" "receive" (func $receive (param i32)))
  ;; 27 flat parameters > 16: the arguments are passed in memory, as the tuple
  ;; <address, request, option<context>, option<lazy-load-blob>> laid out at 256
  (import "hyperware:process/standard@1.0.0" "send-request" (func $send_request (param i32)))
  (import "hyperware:process/standard@1.0.0" "send-response"
    (func $send_response (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32)
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
  (data (i32.const 600) "sink")
  (data (i32.const 608) "test")
  (data (i32.const 616) "sys")
  (data (i32.const 624) "ping")
  (data (i32.const 632) "offline:")
  (data (i32.const 640) "timeout:")
  (data (i32.const 648) "unexpected")
  (func (export "init") (param i32 i32)
    (local $body i32) (local $len i32) (local $ctx i32) (local $ctx_len i32)
    (loop $l
      (global.set $heap (i32.const 1024))
      (call $receive (i32.const 16))
      (if (i32.and (i32.eqz (i32.load8_u (i32.const 16))) (i32.eqz (i32.load8_u (i32.const 56))))
        (then
          (memory.fill (i32.const 256) (i32.const 0) (i32.const 128))
          ;; target: node of the source (its string at 24/28), process sink:test:sys
          (i32.store (i32.const 256) (i32.load (i32.const 24)))
          (i32.store (i32.const 260) (i32.load (i32.const 28)))
          (i32.store (i32.const 264) (i32.const 600)) (i32.store (i32.const 268) (i32.const 4))
          (i32.store (i32.const 272) (i32.const 608)) (i32.store (i32.const 276) (i32.const 4))
          (i32.store (i32.const 280) (i32.const 616)) (i32.store (i32.const 284) (i32.const 3))
          ;; request at 288: no inherit, expects-response some(1) (tag 296, u64 at 304),
          ;; body "ping" (312/316), metadata none (320), no capabilities (332/336)
          (i32.store8 (i32.const 296) (i32.const 1))
          (i64.store (i32.const 304) (i64.const 1))
          (i32.store (i32.const 312) (i32.const 624)) (i32.store (i32.const 316) (i32.const 4))
          (i32.store (i32.const 332) (i32.const 4))
          ;; context some(R's body) (tag 344, ptr/len 348/352); blob none (356): zeros.
          ;; The body stays in the heap: it is not reset before the next receive.
          (i32.store8 (i32.const 344) (i32.const 1))
          (i32.store (i32.const 348) (i32.load (i32.const 88)))
          (i32.store (i32.const 352) (i32.load (i32.const 92)))
          (call $send_request (i32.const 256))
          (call $receive (i32.const 16))
          (if (i32.load8_u (i32.const 16))
            (then
              ;; error arm: prefix by kind (offline 0, timeout 1), then the context if some
              (local.set $ctx_len
                (select (i32.load (i32.const 160)) (i32.const 0) (i32.load8_u (i32.const 152))))
              (local.set $ctx (i32.load (i32.const 156)))
              (local.set $len (i32.add (i32.const 8) (local.get $ctx_len)))
              (local.set $body (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                              (local.get $len)))
              (memory.copy (local.get $body)
                (select (i32.const 640) (i32.const 632) (i32.load8_u (i32.const 24)))
                (i32.const 8))
              (memory.copy (i32.add (local.get $body) (i32.const 8)) (local.get $ctx)
                (local.get $ctx_len)))
            (else (local.set $body (i32.const 648)) (local.set $len (i32.const 10))))
          (call $send_response
            (i32.const 0) (local.get $body) (local.get $len)
            (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0))))
      (br $l)))
)
