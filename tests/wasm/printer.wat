;; printer: prints to the terminal, writes a panic message to WASI stderr, then traps, like a
;; process that panics. Built against tests/wasm/printer.wit (world printer = process-v1 plus
;; wasi:cli/stderr), with wit/ and wasi-stderr.wit as its deps.
(module
  (import "hyperware:process/standard@1.0.0" "print-to-terminal" (func $print (param i32 i32 i32)))
  (import "wasi:cli/stderr@0.2.0" "get-stderr" (func $get_stderr (result i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get 3) (i32.const 8))))
    (local.get $ptr))
  (data (i32.const 600) "hello terminal")
  (data (i32.const 700) "panicked at printer.wat: on purpose\n")
  (func (export "init") (param i32 i32)
    (call $print (i32.const 0) (i32.const 600) (i32.const 14))
    ;; result<_, stream-error> at 64
    (call $write (call $get_stderr) (i32.const 700) (i32.const 36) (i32.const 64))
    unreachable)
)
