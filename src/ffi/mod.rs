//! The exported `xs_*` functions: a thin C shell over [`crate::client`].
//!
//! # Safety contract of every export (stated once, relied upon everywhere below)
//!
//! The C caller promises, for each pointer argument that is not NULL:
//! - a `struct xs_handle *` came from `xs_open` (or a sibling opener) of this library and has
//!   not been closed; it is not closed while another call on it is still running;
//! - a `const char *` points to a NUL-terminated string that stays unchanged during the call;
//! - a data pointer paired with a length points to at least that many readable bytes, and an
//!   array pointer paired with a count to that many readable (or, for outputs, writable)
//!   elements;
//! - an output pointer (`unsigned int *num`, `*len`, `*value`, `*features`) points to writable
//!   storage of its type.
//!
//! What this shell guarantees in return:
//! - NULL where a handle, path, token or needed buffer is expected fails with EINVAL (NULL
//!   output pointers are simply not written);
//! - no panic crosses the boundary: each export runs inside [`guard`], which turns an error
//!   into the function's failure value plus errno, and a panic into the same with EIO;
//! - every pointer returned to the caller is one block from `malloc`, to be released with
//!   `free()`, laid out as the C library lays it out;
//! - errno is written on failure; a call that talked to the store and succeeded leaves it 0,
//!   as the C library does (see [`guard_io`]); other successful calls leave it alone.

// The C names (`xs_handle`, `xs_permissions`, ...) are the API.
#![allow(non_camel_case_types)]

mod api;
mod exports;

use std::ffi::{c_char, c_void, CStr, CString, OsString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::Mutex;

use crate::client::{Errno, Handle};

pub use api::*;

/// The C library's opaque `struct xs_handle`.
pub struct xs_handle {
    h: Handle,
}

/// Hands a handle to C. Other openers (an in-process store, say) use this too.
pub fn into_raw(h: Handle) -> *mut xs_handle {
    Box::into_raw(Box::new(xs_handle { h }))
}

fn set_errno(e: i32) {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Runs one export's body: errors become `fail` plus errno, panics become `fail` plus EIO.
fn guard<R>(fail: R, body: impl FnOnce() -> Result<R, Errno>) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_errno(e.0);
            fail
        }
        Err(_) => {
            set_errno(libc::EIO);
            fail
        }
    }
}

/// [`guard`] for calls that talk to the store. On success errno is set to 0, as the C library
/// does: its reply reader ends by restoring a saved errno that is 0 when all went well, and
/// callers depend on it (test-xenstore checks errno after a call that succeeded).
fn guard_io<R>(fail: R, body: impl FnOnce() -> Result<R, Errno>) -> R {
    guard(fail, || {
        let r = body()?;
        set_errno(0);
        Ok(r)
    })
}

const EINVAL: Errno = Errno(libc::EINVAL);

/// The handle behind a C pointer; NULL is EINVAL.
///
/// # Safety
/// See the module's contract.
unsafe fn handle<'a>(h: *mut xs_handle) -> Result<&'a Handle, Errno> {
    // SAFETY: per the contract a non-NULL handle is live for the duration of the call.
    unsafe { h.as_ref() }.map(|x| &x.h).ok_or(EINVAL)
}

/// A C string argument without its NUL; NULL is EINVAL.
///
/// # Safety
/// See the module's contract.
unsafe fn text<'a>(s: *const c_char) -> Result<&'a [u8], Errno> {
    if s.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: non-NULL strings are NUL-terminated and unchanged during the call.
    Ok(unsafe { CStr::from_ptr(s) }.to_bytes())
}

/// A (pointer, length) argument; NULL is fine only with length 0.
///
/// # Safety
/// See the module's contract.
unsafe fn bytes<'a>(p: *const c_void, len: u32) -> Result<&'a [u8], Errno> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: the caller vouches for `len` readable bytes at `p`.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) })
}

/// A (pointer, count) array argument; NULL is fine only with count 0.
///
/// # Safety
/// See the module's contract.
unsafe fn array<'a, T>(p: *const T, n: u32) -> Result<&'a [T], Errno> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: the caller vouches for `n` readable elements at `p`.
    Ok(unsafe { std::slice::from_raw_parts(p, n as usize) })
}

/// An output array argument of `n` elements, possibly uninitialised; NULL is fine only with
/// count 0.
///
/// # Safety
/// See the module's contract.
unsafe fn array_mut<'a, T>(p: *mut T, n: u32) -> Result<&'a mut [MaybeUninit<T>], Errno> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: the caller vouches for `n` writable elements at `p`, which nothing else touches
    // during the call; as `MaybeUninit` they need not be initialised.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<MaybeUninit<T>>(), n as usize) })
}

/// Writes an output argument unless it is NULL.
///
/// # Safety
/// See the module's contract.
unsafe fn put<T>(out: *mut T, v: T) {
    // SAFETY: non-NULL output pointers are writable storage of their type.
    if let Some(o) = unsafe { out.as_mut() } {
        *o = v;
    }
}

/// A malloc'd block of `size` bytes (at least 1, so an empty result is still non-NULL).
fn malloc_block(size: usize) -> Result<*mut u8, Errno> {
    // SAFETY: plain allocation; the caller takes ownership and frees it with free().
    let p = unsafe { libc::malloc(size.max(1)) }.cast::<u8>();
    if p.is_null() {
        Err(Errno(libc::ENOMEM))
    } else {
        Ok(p)
    }
}

/// `data` plus a NUL, in a malloc'd block.
fn malloc_text(data: &[u8]) -> Result<*mut c_char, Errno> {
    let p = malloc_block(data.len() + 1)?;
    // SAFETY: `p` has room for data.len() + 1 bytes and does not overlap `data`.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
        *p.add(data.len()) = 0;
    }
    Ok(p.cast())
}

/// The C library's string-array shape: one malloc'd block holding the array of pointers
/// followed by the strings they point to, each NUL-terminated.
fn malloc_string_array<'a>(
    strings: impl Iterator<Item = &'a [u8]> + Clone,
) -> Result<(*mut *mut c_char, u32), Errno> {
    let n = strings.clone().count();
    let text: usize = strings.clone().map(|s| s.len() + 1).sum();
    let ptrs = n * std::mem::size_of::<*mut c_char>();
    let block = malloc_block(ptrs + text)?;
    let array = block.cast::<*mut c_char>();
    // SAFETY: the block holds n pointers (malloc's alignment suits them) and then `text`
    // bytes; every write below stays inside it.
    unsafe {
        let mut at = block.add(ptrs);
        for (i, s) in strings.enumerate() {
            *array.add(i) = at.cast();
            std::ptr::copy_nonoverlapping(s.as_ptr(), at, s.len());
            *at.add(s.len()) = 0;
            at = at.add(s.len() + 1);
        }
    }
    Ok((array, n as u32))
}

/// A `T` array in a malloc'd block.
fn malloc_array<T: Copy>(items: &[T]) -> Result<*mut T, Errno> {
    let p = malloc_block(std::mem::size_of_val(items))?.cast::<T>();
    // SAFETY: the block holds items.len() elements of T (malloc aligns for any basic type).
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p, items.len()) };
    Ok(p)
}

/// A C string that stays valid for the life of the process. The C library returns static
/// buffers (or the environment's own strings) from its path functions; we keep every distinct
/// value ever returned, so earlier pointers never dangle.
fn static_text(s: OsString) -> *const c_char {
    static KEPT: Mutex<Vec<CString>> = Mutex::new(Vec::new());
    let Ok(c) = CString::new(s.as_bytes()) else {
        return std::ptr::null();
    };
    let mut kept = KEPT.lock();
    if let Some(k) = kept.iter().find(|k| **k == c) {
        return k.as_ptr();
    }
    kept.push(c);
    kept.last().expect("just pushed").as_ptr()
}
