// SPDX-License-Identifier: Apache-2.0
/*
 * A small Node-API binding over libbpf: open and load a BPF object, attach its programs through
 * bpf_links (closing a link's fd detaches it, so a killed process leaves nothing attached), and
 * read or write its maps. Everything else (what to attach where, encoding keys) lives in
 * TypeScript.
 */
#define NAPI_VERSION 8
#define NODE_GYP_MODULE_NAME agw_bpf
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The last lines libbpf logged, appended to errors: the verifier's reason is usually there. */
static char libbpf_log[8192];
static size_t libbpf_log_len;

static int capture_libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	char line[1024];
	int n = vsnprintf(line, sizeof(line), fmt, args);
	if (n <= 0)
		return n;
	size_t len = strlen(line);
	if (len >= sizeof(libbpf_log))
		return n;
	if (libbpf_log_len + len >= sizeof(libbpf_log)) {
		size_t keep = sizeof(libbpf_log) / 2;
		memmove(libbpf_log, libbpf_log + libbpf_log_len - keep, keep);
		libbpf_log_len = keep;
	}
	memcpy(libbpf_log + libbpf_log_len, line, len);
	libbpf_log_len += len;
	libbpf_log[libbpf_log_len] = 0;
	return n;
}

static napi_value throw_errno(napi_env env, const char *what, int err)
{
	char msg[sizeof(libbpf_log) + 512];
	char reason[256];
	libbpf_strerror(err < 0 ? err : -err, reason, sizeof(reason));
	snprintf(msg, sizeof(msg), "%s: %s%s%s", what, reason, libbpf_log_len ? "\n" : "", libbpf_log);
	libbpf_log_len = 0;
	libbpf_log[0] = 0;
	napi_value code, text, error;
	char errname[32];
	snprintf(errname, sizeof(errname), "E%d", err < 0 ? -err : err);
	napi_create_string_utf8(env, errname, NAPI_AUTO_LENGTH, &code);
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
	napi_create_error(env, code, text, &error);
	napi_value errno_value;
	napi_create_int32(env, err < 0 ? -err : err, &errno_value);
	napi_set_named_property(env, error, "errno", errno_value);
	napi_throw(env, error);
	return NULL;
}

#define CHECK_NAPI(call)                                                     \
	do {                                                                 \
		if ((call) != napi_ok) {                                     \
			napi_throw_error(env, NULL, "Node-API call failed: " #call); \
			return NULL;                                         \
		}                                                            \
	} while (0)

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
	size_t argc = want;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
		napi_throw_type_error(env, NULL, "missing arguments");
		return -1;
	}
	return 0;
}

static int get_string(napi_env env, napi_value value, char *out, size_t size)
{
	size_t len;
	if (napi_get_value_string_utf8(env, value, out, size, &len) != napi_ok || len >= size - 1) {
		napi_throw_type_error(env, NULL, "expected a (short) string");
		return -1;
	}
	return 0;
}

static int get_buffer(napi_env env, napi_value value, void **data, size_t *len)
{
	bool is_buffer = false;
	napi_is_buffer(env, value, &is_buffer);
	if (!is_buffer || napi_get_buffer_info(env, value, data, len) != napi_ok) {
		napi_throw_type_error(env, NULL, "expected a Buffer");
		return -1;
	}
	return 0;
}

static void free_object(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	bpf_object__close(data);
}

static struct bpf_object *get_object(napi_env env, napi_value value)
{
	void *obj = NULL;
	if (napi_get_value_external(env, value, &obj) != napi_ok || !obj) {
		napi_throw_type_error(env, NULL, "expected a BPF object handle");
		return NULL;
	}
	return obj;
}

/* openObject(path): loads every program and map of an ELF object into the kernel. */
static napi_value open_object(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	char path[4096];
	if (get_args(env, info, 1, argv) || get_string(env, argv[0], path, sizeof(path)))
		return NULL;
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	int err = libbpf_get_error(obj);
	if (err)
		return throw_errno(env, "opening the BPF object", err);
	err = bpf_object__load(obj);
	if (err) {
		bpf_object__close(obj);
		return throw_errno(env, "loading the BPF programs (the verifier's log follows)", err);
	}
	napi_value handle;
	CHECK_NAPI(napi_create_external(env, obj, free_object, NULL, &handle));
	return handle;
}

static int find_prog_fd(napi_env env, struct bpf_object *obj, napi_value name_value)
{
	char name[128];
	if (get_string(env, name_value, name, sizeof(name)))
		return -1;
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, name);
	if (!prog) {
		napi_throw_error(env, NULL, "no such BPF program in the object");
		return -1;
	}
	return bpf_program__fd(prog);
}

static struct bpf_map *find_map(napi_env env, struct bpf_object *obj, napi_value name_value)
{
	char name[128];
	if (get_string(env, name_value, name, sizeof(name)))
		return NULL;
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
	if (!map)
		napi_throw_error(env, NULL, "no such BPF map in the object");
	return map;
}

static napi_value link_fd_value(napi_env env, int fd, const char *what)
{
	if (fd < 0)
		return throw_errno(env, what, -errno);
	napi_value result;
	CHECK_NAPI(napi_create_int32(env, fd, &result));
	return result;
}

/* attachCgroup(obj, program, cgroupPath): sockops on a cgroup v2 directory as a bpf_link; returns its fd. */
static napi_value attach_cgroup(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	char path[4096];
	if (get_args(env, info, 3, argv))
		return NULL;
	struct bpf_object *obj = get_object(env, argv[0]);
	if (!obj)
		return NULL;
	int prog_fd = find_prog_fd(env, obj, argv[1]);
	if (prog_fd < 0 || get_string(env, argv[2], path, sizeof(path)))
		return NULL;
	int cgroup_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgroup_fd < 0)
		return throw_errno(env, "opening the cgroup", -errno);
	int link_fd = bpf_link_create(prog_fd, cgroup_fd, BPF_CGROUP_SOCK_OPS, NULL);
	int saved = errno;
	close(cgroup_fd);
	errno = saved;
	return link_fd_value(env, link_fd, "attaching sockops to the cgroup");
}

/* attachSkMsg(obj, program, map): the sk_msg verdict program on a SOCKHASH, as a bpf_link. */
static napi_value attach_sk_msg(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (get_args(env, info, 3, argv))
		return NULL;
	struct bpf_object *obj = get_object(env, argv[0]);
	if (!obj)
		return NULL;
	int prog_fd = find_prog_fd(env, obj, argv[1]);
	if (prog_fd < 0)
		return NULL;
	struct bpf_map *map = find_map(env, obj, argv[2]);
	if (!map)
		return NULL;
	int link_fd = bpf_link_create(prog_fd, bpf_map__fd(map), BPF_SK_MSG_VERDICT, NULL);
	return link_fd_value(env, link_fd, "attaching sk_msg to the sockhash (needs sockmap bpf_links, Linux 6.10+)");
}

/* detach(linkFd): closing the last fd of a bpf_link detaches its program. */
static napi_value detach(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t fd;
	if (get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok)
		return NULL;
	if (close(fd) != 0)
		return throw_errno(env, "closing the link", -errno);
	return NULL;
}

/*
 * The arguments every map call starts with, (obj, map, key, ...): reads `want` arguments and resolves
 * the map and the key; 0 on success, -1 with a JS exception pending.
 */
static int map_key_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
			struct bpf_map **map, void **key, size_t *key_len)
{
	if (get_args(env, info, want, argv))
		return -1;
	struct bpf_object *obj = get_object(env, argv[0]);
	if (!obj)
		return -1;
	*map = find_map(env, obj, argv[1]);
	if (!*map || get_buffer(env, argv[2], key, key_len))
		return -1;
	return 0;
}

/* mapUpdate(obj, map, key, value) */
static napi_value map_update(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	struct bpf_map *map;
	void *key, *value;
	size_t key_len, value_len;
	if (map_key_args(env, info, 4, argv, &map, &key, &key_len) || get_buffer(env, argv[3], &value, &value_len))
		return NULL;
	int err = bpf_map__update_elem(map, key, key_len, value, value_len, BPF_ANY);
	if (err)
		return throw_errno(env, "updating a map", err);
	return NULL;
}

/* mapDelete(obj, map, key): true when the key was there. */
static napi_value map_delete(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	struct bpf_map *map;
	void *key;
	size_t key_len;
	if (map_key_args(env, info, 3, argv, &map, &key, &key_len))
		return NULL;
	int err = bpf_map__delete_elem(map, key, key_len, 0);
	if (err && err != -ENOENT)
		return throw_errno(env, "deleting from a map", err);
	napi_value result;
	CHECK_NAPI(napi_get_boolean(env, err == 0, &result));
	return result;
}

/* mapLookup(obj, map, key): the value (for per-CPU maps, every CPU's value, 8-byte aligned), or null. */
static napi_value map_lookup(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	struct bpf_map *map;
	void *key;
	size_t key_len;
	if (map_key_args(env, info, 3, argv, &map, &key, &key_len))
		return NULL;
	size_t value_size = bpf_map__value_size(map);
	enum bpf_map_type type = bpf_map__type(map);
	if (type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
	    type == BPF_MAP_TYPE_LRU_PERCPU_HASH) {
		int cpus = libbpf_num_possible_cpus();
		if (cpus < 0)
			return throw_errno(env, "counting CPUs", cpus);
		value_size = ((value_size + 7) / 8) * 8 * (size_t)cpus;
	}
	void *data;
	napi_value buffer;
	CHECK_NAPI(napi_create_buffer(env, value_size, &data, &buffer));
	int err = bpf_map__lookup_elem(map, key, key_len, data, value_size, 0);
	if (err == -ENOENT) {
		napi_value null_value;
		CHECK_NAPI(napi_get_null(env, &null_value));
		return null_value;
	}
	if (err)
		return throw_errno(env, "reading a map", err);
	return buffer;
}

/* kernelHasMember(struct, member): whether the running kernel's BTF has that struct member. */
static napi_value kernel_has_member(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	char type_name[128], member_name[128];
	if (get_args(env, info, 2, argv) || get_string(env, argv[0], type_name, sizeof(type_name)) ||
	    get_string(env, argv[1], member_name, sizeof(member_name)))
		return NULL;
	struct btf *btf = btf__load_vmlinux_btf();
	int err = libbpf_get_error(btf);
	if (err)
		return throw_errno(env, "reading the kernel's BTF", err);
	bool found = false;
	int id = btf__find_by_name_kind(btf, type_name, BTF_KIND_STRUCT);
	if (id > 0) {
		const struct btf_type *type = btf__type_by_id(btf, id);
		const struct btf_member *member = btf_members(type);
		for (int i = 0; i < btf_vlen(type) && !found; i++, member++)
			found = strcmp(btf__name_by_offset(btf, member->name_off), member_name) == 0;
	}
	btf__free(btf);
	napi_value result;
	CHECK_NAPI(napi_get_boolean(env, found, &result));
	return result;
}

static napi_value init(napi_env env, napi_value exports)
{
	libbpf_set_print(capture_libbpf_log);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	napi_property_descriptor props[] = {
		{ "openObject", NULL, open_object, NULL, NULL, NULL, napi_default, NULL },
		{ "attachCgroup", NULL, attach_cgroup, NULL, NULL, NULL, napi_default, NULL },
		{ "attachSkMsg", NULL, attach_sk_msg, NULL, NULL, NULL, napi_default, NULL },
		{ "detach", NULL, detach, NULL, NULL, NULL, napi_default, NULL },
		{ "mapUpdate", NULL, map_update, NULL, NULL, NULL, napi_default, NULL },
		{ "mapDelete", NULL, map_delete, NULL, NULL, NULL, napi_default, NULL },
		{ "mapLookup", NULL, map_lookup, NULL, NULL, NULL, napi_default, NULL },
		{ "kernelHasMember", NULL, kernel_has_member, NULL, NULL, NULL, napi_default, NULL },
	};
	CHECK_NAPI(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
