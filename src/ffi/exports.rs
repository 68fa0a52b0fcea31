//! How the `xs_*` names leave the shared library, each with its symbol version.
//!
//! rustc hands the linker its own version script, listing every `#[no_mangle]` function as an
//! unversioned global, and the linker lets that script win over include/libxenstore.map: the
//! symbols would come out without VERS_4.0 and friends, and binaries linked against Xen's
//! library (which ask for `xs_open@VERS_4.0`) would still load but without version checks.
//! So the Rust functions keep their ordinary (mangled, internal) names and each exported name
//! is a one-instruction entry point defined here, in assembly, that jumps to its function.
//! rustc does not know these names, so only our map assigns them: exactly the map's symbols
//! are exported, each with its version. (tests/client_symbols.rs checks the result.)

macro_rules! entry_points {
    ($($name:ident),* $(,)?) => {$(
        core::arch::global_asm!(
            ".pushsection .text",
            concat!(".globl ", stringify!($name)),
            concat!(".type ", stringify!($name), ", @function"),
            ".p2align 4",
            concat!(stringify!($name), ":"),
            jump!(),
            concat!(".size ", stringify!($name), ", . - ", stringify!($name)),
            ".popsection",
            target = sym super::api::$name,
        );
    )*};
}

/// A tail jump to `{target}`: arguments and return value pass through untouched.
#[cfg(target_arch = "x86_64")]
macro_rules! jump {
    () => {
        "jmp {target}@PLT"
    };
}

#[cfg(target_arch = "aarch64")]
macro_rules! jump {
    () => {
        "b {target}"
    };
}

entry_points!(
    xs_open,
    xs_close,
    xs_daemon_open,
    xs_domain_open,
    xs_daemon_open_readonly,
    xs_daemon_close,
    xs_daemon_destroy_postfork,
    xs_directory,
    xs_read,
    xs_write,
    xs_mkdir,
    xs_rm,
    xs_restrict,
    xs_get_permissions,
    xs_set_permissions,
    xs_watch,
    xs_watch_depth,
    xs_watch_try_depth,
    xs_fileno,
    xs_check_watch,
    xs_read_watch,
    xs_unwatch,
    xs_transaction_start,
    xs_transaction_end,
    xs_introduce_domain,
    xs_set_target,
    xs_resume_domain,
    xs_release_domain,
    xs_get_domain_path,
    xs_path_is_subpath,
    xs_is_domain_introduced,
    xs_get_features_supported,
    xs_get_features_domain,
    xs_set_features_domain,
    xs_get_quota_names,
    xs_get_global_quota,
    xs_set_global_quota,
    xs_get_domain_quota,
    xs_set_domain_quota,
    xs_control_command,
    xs_debug_command,
    xs_suspend_evtchn_port,
    xs_daemon_rundir,
    xs_daemon_socket,
    xs_daemon_socket_ro,
    xs_write_all,
    xs_strings_to_perms,
    xs_embedded_open_domain,
);
