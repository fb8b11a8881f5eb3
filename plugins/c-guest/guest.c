/*
 * A plugin in C against wit/plugin.wit (agw:plugin@0.2.0), through the bindings `wit-bindgen c` generates: the path
 * any non-JS guest takes (a Rust guest uses the same WIT with wit-bindgen's Rust generator).
 * on-request: a request carrying `x-c-deny` is denied with 403; every other request goes upstream
 * with `x-c-guest: <METHOD> <path>` set. Everything the host frees after the call (the returned
 * action's lists and strings) is malloc'd, as the canonical ABI's post-return expects.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static plugin_string_t copy_string(const uint8_t *bytes, size_t len) {
  plugin_string_t out = {(uint8_t *)malloc(len ? len : 1), len};
  memcpy(out.ptr, bytes, len);
  return out;
}

static int has_header(const agw_plugin_types_headers_t *headers, const char *name) {
  size_t name_len = strlen(name);
  for (size_t i = 0; i < headers->len; i++) {
    const plugin_string_t *key = &headers->ptr[i].f0;
    if (key->len == name_len && memcmp(key->ptr, name, name_len) == 0) return 1;
  }
  return 0;
}

void exports_plugin_on_request(plugin_request_t *request, plugin_context_t *context, plugin_action_t *ret) {
  if (has_header(&request->headers, "x-c-deny")) {
    ret->tag = AGW_PLUGIN_TYPES_ACTION_DENY;
    ret->val.deny = 403;
  } else {
    size_t len = request->method.len + 1 + request->path.len;
    uint8_t *value = (uint8_t *)malloc(len);
    memcpy(value, request->method.ptr, request->method.len);
    value[request->method.len] = ' ';
    memcpy(value + request->method.len + 1, request->path.ptr, request->path.len);

    plugin_tuple2_string_string_t *header = malloc(sizeof *header);
    header->f0 = copy_string((const uint8_t *)"x-c-guest", 9);
    header->f1 = (plugin_string_t){value, len};

    ret->tag = AGW_PLUGIN_TYPES_ACTION_MUTATE;
    ret->val.mutate.set_headers = (agw_plugin_types_headers_t){header, 1};
    ret->val.mutate.remove_headers = (plugin_list_string_t){NULL, 0};
    ret->val.mutate.path.is_some = false;
  }
  plugin_request_free(request);
  plugin_context_free(context);
}

void exports_plugin_on_response(plugin_response_t *response, plugin_context_t *context,
                                 plugin_response_action_t *ret) {
  ret->tag = AGW_PLUGIN_TYPES_RESPONSE_ACTION_CONTINUE;
  plugin_response_free(response);
  plugin_context_free(context);
}
