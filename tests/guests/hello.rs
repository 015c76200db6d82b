//! A test guest that becomes a WASI preview-2 component (via the preview-1
//! command adapter): it prints a line and writes a file.

// The preview-1 command adapter calls `cabi_realloc` to allocate in the
// guest; Rust 1.63's std does not export one, so the guest provides it.
#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use std::alloc::{alloc, realloc, Layout};
    if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        alloc(Layout::from_size_align_unchecked(new_len, align))
    } else {
        realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len)
    }
}

fn main() {
    println!("hello from a component");
    std::fs::write("/component-was-here", "yes").unwrap();
}
