/* echo: a Hyperware process in C (wasi-libc, the WASI preview1 adapter).
 *
 * Answers each request with a response carrying the same body; prints one line to WASI stdout
 * at start (printf, so the component really imports WASI preview 2) and one to the terminal.
 * Built by tools/build_examples.py (tools/build_c_component.py); the glue is examples/c/hyperware.h.
 */
#include <stdio.h>
#include <string.h>

#include "hyperware.h"

__attribute__((export_name("init"))) void init(char *our, size_t our_len)
{
    printf("c echo: up as %.*s\n", (int)our_len, our);
    fflush(stdout);
    static const char hello[] = "c echo: ready";
    hw_print(1, hello, sizeof hello - 1);
    free(our);
    for (;;) {
        hw_received r;
        memset(&r, 0, sizeof r);
        hw_import_receive(&r);
        if (!r.is_err && r.val.ok.message.tag == HW_MESSAGE_REQUEST) {
            hw_bytes *body = &r.val.ok.message.val.request.body;
            hw_respond(body->ptr, body->len);
        }
        hw_received_free(&r);
    }
}
