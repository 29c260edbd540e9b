//! The boundary between C and Rust: panics, the last error, strings in and out.
//!
//! Owns the per-thread last error, the panic guard every exported function runs its body
//! in ([`call`]), the reading of C string arguments and the handing out of C strings, and
//! the two functions C uses to clean up after the others: [`dispatch_string_free`] and
//! [`dispatch_last_error_message`].
//!
//! Guarantees:
//! - no panic crosses the boundary: [`call`] catches it (`catch_unwind`) and reports
//!   `DISPATCH_STATUS_PANIC` with the panic's message (the crate must be built with
//!   `panic = "unwind"`, Rust's default; with `panic = "abort"` the process aborts instead);
//! - every exported function that returns a status first clears the calling thread's last
//!   error, and sets it when it fails: after a failure, `dispatch_last_error_message()` says
//!   why; after a success it returns NULL. `dispatch_string_free` and
//!   `dispatch_last_error_message` leave it alone, so a caller may free an answer and then
//!   read the error;
//! - every string handed to C was made by `CString::into_raw` and is returned to Rust only
//!   by [`dispatch_string_free`], which rebuilds the `CString` to drop it with the same
//!   allocator.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{self, AssertUnwindSafe};

use crate::error::{DispatchStatus, FfiError};

thread_local! {
    /// The message of the last failed call on this thread, NUL-terminated for C. Replaced
    /// (and the old one dropped) only by the next status-returning call on this thread,
    /// which is what keeps the pointer `dispatch_last_error_message` lends valid until then.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Runs the body of an exported function: clears the last error, catches a panic, and
/// turns the result into a status, recording the message of a failure.
///
/// `AssertUnwindSafe` is sound here in the sense `catch_unwind` asks for: after a panic,
/// the body's locals are gone, the caller's out-parameters were either untouched or set
/// to NULL before any work began, and the engine's state is guarded by the engine itself
/// (its writer thread owns it; readers only clone `Arc`s), so nothing half-changed is
/// observed afterwards.
pub(crate) fn call(body: impl FnOnce() -> Result<(), FfiError>) -> DispatchStatus {
    clear_last_error();
    let result = panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(FfiError::Panic(panic_message(payload.as_ref()))));
    match result {
        Ok(()) => DispatchStatus::Ok,
        Err(error) => {
            let status = error.status();
            set_last_error(&error);
            status
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not a string".to_owned()
    }
}

fn clear_last_error() {
    LAST_ERROR.with(|slot| slot.borrow_mut().take());
}

fn set_last_error(error: &FfiError) {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(to_c_string(error.to_string())));
}

/// `text` as a C string; an interior NUL (which C could not see past) is written `\0`.
fn to_c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let escaped = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\0");
        // No NUL is left after the replacement, so this cannot fail; an empty string is
        // the harmless answer should it ever.
        CString::new(escaped).unwrap_or_default()
    })
}

/// Reads the C string argument `argument` (named in errors).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and unchanged for
/// the lifetime `'a` (the exported function's call).
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, argument: &'static str) -> Result<&'a str, FfiError> {
    if ptr.is_null() {
        return Err(FfiError::NullArgument(argument));
    }
    // SAFETY: `ptr` is not NULL, and this function's contract (the ABI's documented rule
    // for string arguments) makes it a NUL-terminated string valid for `'a`.
    let c_str = unsafe { CStr::from_ptr(ptr) };
    c_str.to_str().map_err(|source| FfiError::InvalidUtf8 { argument, source })
}

/// Like [`str_arg`], but NULL is `None` rather than an error (optional arguments).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn optional_str_arg<'a>(
    ptr: *const c_char,
    argument: &'static str,
) -> Result<Option<&'a str>, FfiError> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract: `ptr` is a valid NUL-terminated string for `'a`.
    unsafe { str_arg(ptr, argument) }.map(Some)
}

/// Parses the JSON argument `argument` (named in errors) into `T`.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(text: &'a str, argument: &'static str) -> Result<T, FfiError> {
    serde_json::from_str(text).map_err(|source| FfiError::InvalidJson { argument, source })
}

/// An out-parameter for a string: checked for NULL and set to NULL before any work, so a
/// caller sees NULL whenever no answer was written.
pub(crate) struct OutString {
    ptr: *mut *mut c_char,
}

impl OutString {
    /// Takes the out-parameter `argument` (named in errors).
    ///
    /// # Safety
    /// `ptr` is NULL or valid for writing one `char *` for as long as the returned value
    /// lives (the exported function's call).
    pub(crate) unsafe fn new(ptr: *mut *mut c_char, argument: &'static str) -> Result<Self, FfiError> {
        if ptr.is_null() {
            return Err(FfiError::NullArgument(argument));
        }
        // SAFETY: not NULL, and writable for one pointer by this function's contract.
        unsafe { ptr.write(std::ptr::null_mut()) };
        Ok(Self { ptr })
    }

    /// Hands `text` to C: the caller owns it and frees it with `dispatch_string_free`.
    pub(crate) fn set(&self, text: String) {
        let raw = to_c_string(text).into_raw();
        // SAFETY: `self.ptr` was checked non-NULL and is writable for the call (see `new`).
        unsafe { self.ptr.write(raw) };
    }

    /// Hands `value` to C as compact JSON.
    pub(crate) fn set_json(&self, value: &impl serde::Serialize) -> Result<(), FfiError> {
        let text = serde_json::to_string(value)
            .map_err(|e| FfiError::InvalidArgument(format!("the answer could not be rendered as JSON: {e}")))?;
        self.set(text);
        Ok(())
    }
}

/// Frees a string this library handed out (an answer JSON). NULL is a no-op.
///
/// Returns `DISPATCH_STATUS_OK`, or `DISPATCH_STATUS_PANIC` should freeing ever panic.
/// Does not change the last error.
///
/// # Safety
/// `s` is NULL or a pointer this library returned through an out-parameter and that has
/// not been freed yet. Any other pointer (one from `malloc`, or the last-error message)
/// is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_string_free(s: *mut c_char) -> DispatchStatus {
    if s.is_null() {
        return DispatchStatus::Ok;
    }
    let freed = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: by this function's contract, `s` came from `CString::into_raw` in
        // `OutString::set` and is freed once: rebuilding the CString is exactly its inverse.
        drop(unsafe { CString::from_raw(s) });
    }));
    if freed.is_ok() { DispatchStatus::Ok } else { DispatchStatus::Panic }
}

/// The message of the last failed call on this thread, or NULL if the last call
/// succeeded (or none failed yet).
///
/// The string is **borrowed**: do not free it. It stays valid until the next call on this
/// thread of any function of this library that returns a status (other than
/// `dispatch_string_free`); copy it to keep it longer. It is UTF-8, NUL-terminated.
#[unsafe(no_mangle)]
pub extern "C" fn dispatch_last_error_message() -> *const c_char {
    // `try_with` and `try_borrow` do not panic, even during thread teardown; the guard is
    // there all the same, as at every entry point.
    panic::catch_unwind(|| {
        LAST_ERROR.try_with(|slot| slot.try_borrow().ok().and_then(|m| m.as_ref().map(|m| m.as_ptr()))).ok().flatten()
    })
    .ok()
    .flatten()
    .unwrap_or(std::ptr::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> Option<String> {
        let ptr = dispatch_last_error_message();
        // SAFETY: a non-NULL pointer from `dispatch_last_error_message` is a valid C string
        // until the next status-returning call on this thread; it is copied at once.
        (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned())
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = call(|| panic!("boom {}", 42));
        assert_eq!(status, DispatchStatus::Panic);
        assert_eq!(last_error().as_deref(), Some("internal error (panic): boom 42"));
        let status = call(|| std::panic::panic_any(7_u8));
        assert_eq!(status, DispatchStatus::Panic);
        assert!(last_error().unwrap().contains("not a string"));
    }

    #[test]
    fn success_clears_the_last_error() {
        assert_eq!(call(|| Err(FfiError::NullArgument("x"))), DispatchStatus::NullArgument);
        assert_eq!(last_error().as_deref(), Some("argument `x` is NULL"));
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { dispatch_string_free(std::ptr::null_mut()) }, DispatchStatus::Ok);
        assert!(last_error().is_some(), "freeing leaves the last error alone");
        assert_eq!(call(|| Ok(())), DispatchStatus::Ok);
        assert_eq!(last_error(), None);
    }

    #[test]
    fn interior_nul_is_escaped_not_fatal() {
        let status = call(|| Err(FfiError::InvalidArgument("a\0b".into())));
        assert_eq!(status, DispatchStatus::InvalidArgument);
        assert_eq!(last_error().as_deref(), Some("a\\0b"));
    }

    #[test]
    fn string_arguments_are_checked() {
        // SAFETY: NULL is allowed; the other pointers are NUL-terminated literals.
        unsafe {
            assert!(matches!(str_arg(std::ptr::null(), "s"), Err(FfiError::NullArgument("s"))));
            assert!(matches!(optional_str_arg(std::ptr::null(), "s"), Ok(None)));
            let bad = b"\xff\xfe\0";
            assert!(matches!(str_arg(bad.as_ptr().cast(), "s"), Err(FfiError::InvalidUtf8 { .. })));
            assert_eq!(str_arg(c"ok".as_ptr(), "s").unwrap(), "ok");
        }
    }
}
