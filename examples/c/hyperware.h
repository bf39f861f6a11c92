/* hyperware.h: hand-written canonical-ABI glue for C processes of world process-v1
 * (wit/hyperware-process.wit, hyperware:process@1.0.0), for wasm32 with wasi-libc.
 *
 * The structs below are laid out exactly as the component model's canonical ABI lays out the
 * WIT types (records and tuples as C structs; a variant or option as a u8 tag followed by its
 * payload at the payload's alignment; list<T> and string as pointer + length; bool and enums
 * as u8), so the host writes receive's result straight into them. Covers the imports an echo
 * needs (receive, send-response, print-to-terminal, get-state, set-state); the others follow
 * the same rules. Memory the host hands over (receive's lists and strings, init's argument) is
 * allocated through cabi_realloc (malloc) and owned by the guest: free it with the helpers.
 */
#ifndef HYPERWARE_H
#define HYPERWARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct { char *ptr; size_t len; } hw_string;
typedef struct { uint8_t *ptr; size_t len; } hw_bytes;
typedef struct { bool is_some; hw_string val; } hw_option_string;
typedef struct { bool is_some; hw_bytes val; } hw_option_bytes;
typedef struct { bool is_some; uint64_t val; } hw_option_u64;

typedef struct {
    hw_string process_name;
    hw_string package_name;
    hw_string publisher_node;
} hw_process_id;

typedef struct {
    hw_string node;
    hw_process_id process;
} hw_address;

typedef struct {
    hw_address issuer;
    hw_string params; /* json */
} hw_capability;

typedef struct { hw_capability *ptr; size_t len; } hw_list_capability;

typedef struct {
    hw_option_string mime;
    hw_bytes bytes;
} hw_lazy_load_blob;

typedef struct { bool is_some; hw_lazy_load_blob val; } hw_option_blob;

typedef struct {
    bool inherit;
    hw_option_u64 expects_response;
    hw_bytes body;
    hw_option_string metadata;
    hw_list_capability capabilities;
} hw_request;

typedef struct {
    bool inherit;
    hw_bytes body;
    hw_option_string metadata;
    hw_list_capability capabilities;
} hw_response;

#define HW_MESSAGE_REQUEST 0
#define HW_MESSAGE_RESPONSE 1

typedef struct {
    uint8_t tag; /* HW_MESSAGE_* */
    union {
        hw_request request;
        struct {
            hw_response response;
            hw_option_bytes context;
        } response;
    } val;
} hw_message;

#define HW_SEND_ERROR_OFFLINE 0
#define HW_SEND_ERROR_TIMEOUT 1

typedef struct {
    uint8_t kind; /* HW_SEND_ERROR_* */
    hw_address target;
    hw_message message;
    hw_option_blob lazy_load_blob;
} hw_send_error;

/* receive: result<tuple<address, message>, tuple<send-error, option<context>>> */
typedef struct {
    bool is_err;
    union {
        struct {
            hw_address source;
            hw_message message;
        } ok;
        struct {
            hw_send_error error;
            hw_option_bytes context;
        } err;
    } val;
} hw_received;

#define HW_IMPORT(name) \
    __attribute__((import_module("hyperware:process/standard@1.0.0"), import_name(name)))

HW_IMPORT("print-to-terminal")
extern void hw_import_print_to_terminal(int32_t verbosity, const char *ptr, size_t len);

HW_IMPORT("receive")
extern void hw_import_receive(hw_received *ret);

HW_IMPORT("send-response")
extern void hw_import_send_response(
    int32_t inherit, const uint8_t *body, size_t body_len,
    int32_t metadata_is_some, const char *metadata, size_t metadata_len,
    const hw_capability *caps, size_t caps_len,
    int32_t blob_is_some, int32_t mime_is_some, const char *mime, size_t mime_len,
    const uint8_t *bytes, size_t bytes_len);

/* get-state: option<list<u8>> written at ret */
HW_IMPORT("get-state")
extern void hw_import_get_state(hw_option_bytes *ret);

HW_IMPORT("set-state")
extern void hw_import_set_state(const uint8_t *ptr, size_t len);

/* --- the guest's allocator, called by the host to pass lists and strings ------------------ */

/* weak: the header may be included by several files of one process */
__attribute__((export_name("cabi_realloc"), weak)) void *cabi_realloc(
    void *old, size_t old_size, size_t align, size_t new_size)
{
    (void)old_size;
    (void)align; /* malloc's alignment (16) covers every canonical-ABI alignment (<= 8) */
    if (new_size == 0) {
        return (void *)align;
    }
    void *p = realloc(old, new_size);
    if (p == NULL) {
        abort();
    }
    return p;
}

/* --- conveniences ------------------------------------------------------------------------- */

static inline void hw_print(uint8_t verbosity, const char *text, size_t len)
{
    hw_import_print_to_terminal(verbosity, text, len);
}

/* A response with this body, no metadata, no capabilities, no blob. */
static inline void hw_respond(const uint8_t *body, size_t len)
{
    hw_import_send_response(0, body, len, 0, NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, 0);
}

static inline void hw_string_free(hw_string *s) { if (s->len) free(s->ptr); s->len = 0; }
static inline void hw_bytes_free(hw_bytes *b) { if (b->len) free(b->ptr); b->len = 0; }
static inline void hw_option_string_free(hw_option_string *o) { if (o->is_some) hw_string_free(&o->val); }
static inline void hw_option_bytes_free(hw_option_bytes *o) { if (o->is_some) hw_bytes_free(&o->val); }

static inline void hw_address_free(hw_address *a)
{
    hw_string_free(&a->node);
    hw_string_free(&a->process.process_name);
    hw_string_free(&a->process.package_name);
    hw_string_free(&a->process.publisher_node);
}

static inline void hw_capabilities_free(hw_list_capability *caps)
{
    for (size_t i = 0; i < caps->len; i++) {
        hw_address_free(&caps->ptr[i].issuer);
        hw_string_free(&caps->ptr[i].params);
    }
    if (caps->len) free(caps->ptr);
    caps->len = 0;
}

static inline void hw_message_free(hw_message *m)
{
    if (m->tag == HW_MESSAGE_REQUEST) {
        hw_bytes_free(&m->val.request.body);
        hw_option_string_free(&m->val.request.metadata);
        hw_capabilities_free(&m->val.request.capabilities);
    } else {
        hw_bytes_free(&m->val.response.response.body);
        hw_option_string_free(&m->val.response.response.metadata);
        hw_capabilities_free(&m->val.response.response.capabilities);
        hw_option_bytes_free(&m->val.response.context);
    }
}

static inline void hw_received_free(hw_received *r)
{
    if (!r->is_err) {
        hw_address_free(&r->val.ok.source);
        hw_message_free(&r->val.ok.message);
    } else {
        hw_address_free(&r->val.err.error.target);
        hw_message_free(&r->val.err.error.message);
        if (r->val.err.error.lazy_load_blob.is_some) {
            hw_option_string_free(&r->val.err.error.lazy_load_blob.val.mime);
            hw_bytes_free(&r->val.err.error.lazy_load_blob.val.bytes);
        }
        hw_option_bytes_free(&r->val.err.context);
    }
}

/* Layout checks against the canonical ABI (wasm32). */
_Static_assert(sizeof(hw_address) == 32, "address");
_Static_assert(sizeof(hw_capability) == 40, "capability");
_Static_assert(offsetof(hw_request, body) == 24, "request.body");
_Static_assert(sizeof(hw_request) == 56, "request");
_Static_assert(offsetof(hw_message, val) == 8, "message payload");
_Static_assert(offsetof(hw_received, val.ok.message) == 40, "received.ok.message");
_Static_assert(offsetof(hw_received, val.ok.message.val.request.body) == 72, "body at 72");

#endif
