/**
 * The import ABI a plugin module links against: the module names and every function name the
 * Extism kernel and WASI preview 1 provide. The loader checks imports against these on the main
 * thread; the worker implements them (test/runtime/Abi.test.ts keeps the two equal). Plain data,
 * so the main thread never loads worker code to learn a name.
 */

/** Extism's kernel functions; host functions live in `EXTISM_USER`. */
export const EXTISM_ENV = "extism:host/env"
/** The engine's host functions (see `hostFunctionCatalog`). */
export const EXTISM_USER = "extism:host/user"
/** WASI preview 1. */
export const WASI = "wasi_snapshot_preview1"

/** Names a plugin may import from `extism:host/env` without any permission. */
export const kernelFunctionNames: ReadonlySet<string> = new Set([
  "alloc",
  "free",
  "length",
  "length_unsafe",
  "load_u8",
  "load_u64",
  "store_u8",
  "store_u64",
  "input_offset",
  "input_length",
  "input_load_u8",
  "input_load_u64",
  "output_set",
  "error_set",
  "error_get",
  "config_get",
  "var_get",
  "var_set",
  "log_trace",
  "log_debug",
  "log_info",
  "log_warn",
  "log_error",
  "get_log_level"
])

/** Extism's built-in HTTP functions in `extism:host/env`, granted by the `http` permission. */
export const kernelHttpFunctionNames: ReadonlySet<string> = new Set([
  "http_request",
  "http_status_code",
  "http_headers"
])

/** Names every plugin may import from `wasi_snapshot_preview1`. */
export const wasiFunctionNames: ReadonlySet<string> = new Set([
  "args_get",
  "args_sizes_get",
  "environ_get",
  "environ_sizes_get",
  "clock_res_get",
  "clock_time_get",
  "random_get",
  "fd_write",
  "fd_pwrite",
  "fd_read",
  "fd_pread",
  "fd_fdstat_get",
  "fd_fdstat_set_flags",
  "fd_fdstat_set_rights",
  "fd_filestat_get",
  "fd_close",
  "fd_seek",
  "fd_tell",
  "fd_sync",
  "fd_datasync",
  "fd_advise",
  "fd_allocate",
  "fd_filestat_set_size",
  "fd_filestat_set_times",
  "fd_prestat_get",
  "fd_prestat_dir_name",
  "fd_readdir",
  "fd_renumber",
  "path_open",
  "path_filestat_get",
  "path_readlink",
  "path_create_directory",
  "path_filestat_set_times",
  "path_link",
  "path_remove_directory",
  "path_rename",
  "path_symlink",
  "path_unlink_file",
  "poll_oneoff",
  "proc_exit",
  "proc_raise",
  "sched_yield",
  "sock_accept",
  "sock_recv",
  "sock_send",
  "sock_shutdown"
])

/**
 * Prefix of the host functions only the engine's own workers call (a worker filling its copy of a
 * cache entry, for instance). No catalogue lists them, so no plugin links against one, and they
 * are not counted as the plugin's host calls: the call the plugin made is counted by the worker.
 */
export const INTERNAL_PREFIX = "ndp:"

/** Whether `fn` is one of the engine's internal host functions. */
export const isInternal = (fn: string): boolean => fn.startsWith(INTERNAL_PREFIX)
