//! Surviving a hardware exception raised by an access to a view.
//!
//! On Windows, touching a page of a file view whose bytes cannot be brought
//! in raises `EXCEPTION_IN_PAGE_ERROR` (the storage failed: a disk error, a
//! network share or a removable device that went away, a full disk under a
//! sparse file; and, under Wine, a file truncated from the Unix side) or an
//! access violation. Left alone, either kills the process.
//!
//! The POSIX guard (`os/unix/fault.rs`) replaces the vanished pages so that
//! the access finishes; that does not carry over (see [`super::RawView::fault`]
//! for why). Here every access of this crate to a view's memory runs in one
//! of a few small routines written in assembly ([`copy`], [`load`],
//! [`store`], [`gather`], [`scatter`], [`find_byte`]), all between two
//! known addresses. A
//! vectored exception handler, installed with the first view, recognises an
//! in-page error or access violation raised by an instruction between those
//! addresses and resumes the thread at the routines' recovery point, with
//! the exception's status in the return register: the routine returns that
//! status instead of finishing, and the caller turns it into an error
//! ([`Fault::error`]). Every other exception is left to the handlers after
//! ours, as if ours were not there.
//!
//! This is an exception table, as operating-system kernels use for copies
//! from user memory: resuming elsewhere is sound because the routines are
//! leaves that keep everything they must restore in registers the handler
//! does not touch, and no Rust frame is skipped. Nothing is poisoned: the
//! view stays mapped as it was, and a later access to bytes that are still
//! there works.
//!
//! Code outside these routines must not read a view directly
//! ([`DIRECT_READS`] is false): a search for a longer needle copies the
//! view through a buffer in chunks and searches the copy, and a foreign runtime that makes an
//! object from mapped bytes is handed a copy. Accesses that are not this
//! crate's (a buffer exported to numpy or `memoryview`) are out of reach, as
//! with CPython's `mmap`.

use std::sync::Once;

// The routines below are x86-64 assembly, the only Windows target built
// (`x86_64-pc-windows-gnu`). Another architecture needs its own routines
// (and the handler its own context registers) before it can build.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("the Windows fault guard's routines are written for x86-64 only");

use windows_sys::Win32::Foundation::{
    RtlNtStatusToDosError, EXCEPTION_ACCESS_VIOLATION, EXCEPTION_IN_PAGE_ERROR,
};
use windows_sys::Win32::System::Diagnostics::Debug::{
    AddVectoredExceptionHandler, EXCEPTION_CONTINUE_EXECUTION, EXCEPTION_CONTINUE_SEARCH,
    EXCEPTION_POINTERS,
};

use crate::error::Error;

/// Whether code other than the routines of this module may read a view's
/// memory (a search through a slice, a foreign runtime copying from a
/// pointer). Not here: only faults inside the routines are recovered.
pub(crate) const DIRECT_READS: bool = false;

/// An access that an exception stopped: the routine's return value, which
/// holds the status of the exception (the cause, an `NTSTATUS`) in its low
/// 32 bits and whether the faulting access was a write in bit 32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault(u64);

/// Bit of a routine's return value that says the faulting access wrote.
const WROTE: u64 = 1 << 32;

/// Bit set in every fault's return value: no result of `find_byte` (an
/// index into a slice, below `isize::MAX`) has it.
const FAULTED: u64 = 1 << 63;

impl Fault {
    /// The `NTSTATUS` that says why the page could not be brought in.
    fn status(self) -> i32 {
        self.0 as u32 as i32
    }

    /// The error for this fault: an OS error carrying the Windows error
    /// code that the status translates to (`ERROR_NOACCESS` for an access
    /// violation, `ERROR_DISK_FULL`, ...), as CPython's `mmap` reports it.
    #[cold]
    #[inline(never)]
    pub(crate) fn error(self) -> Error {
        let status = self.status();
        // SAFETY: a pure table lookup with no preconditions.
        let code = unsafe { RtlNtStatusToDosError(status) };
        let verb = if self.0 & WROTE != 0 {
            "written"
        } else {
            "read"
        };
        Error::storage(
            None,
            code as i32,
            format!(
                "the bytes of the view could not be {verb}: Windows could not bring in their \
                 page (status 0x{:08X}); the file may have shrunk, or its storage failed or \
                 went away. The view stays usable where its bytes are still there",
                status as u32
            ),
        )
    }
}

/// Turns a routine's return value (0: done) into a result.
#[inline(always)]
fn done(ret: u64) -> Result<(), Fault> {
    match ret {
        0 => Ok(()),
        fault => Err(Fault(fault)),
    }
}

/// Copies `len` bytes from `src` to `dst`, which may overlap (`memmove`).
///
/// # Safety
/// Both ranges must be valid for the access (in bounds of live
/// allocations or views), except that a view's pages may fail to come in:
/// that returns an error instead of faulting. After an error, an unknown
/// part of `dst` was written.
#[inline(always)]
pub(crate) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Fault> {
    // SAFETY: forwarded from the caller; the routine follows the platform
    // calling convention (see `ROUTINES`).
    done(unsafe { mmapfile_guarded_copy(dst, src, len) })
}

/// Reads the byte at `src`.
///
/// # Safety
/// As for [`copy`].
#[inline(always)]
pub(crate) unsafe fn load(src: *const u8) -> Result<u8, Fault> {
    // SAFETY: as in `copy`.
    let ret = unsafe { mmapfile_guarded_load(src) };
    // A byte is at most 255; a fault's status (an error NTSTATUS) is
    // always far above that.
    u8::try_from(ret).map_err(|_| Fault(ret))
}

/// Writes `value` to the byte at `dst`.
///
/// # Safety
/// As for [`copy`].
#[inline(always)]
pub(crate) unsafe fn store(dst: *mut u8, value: u8) -> Result<(), Fault> {
    // SAFETY: as in `copy`.
    done(unsafe { mmapfile_guarded_store(dst, value) })
}

/// The index of the first `byte` in the `len` bytes at `hay`, or `len` if
/// there is none.
///
/// # Safety
/// As for [`copy`], for `hay..hay + len`. (The routine reads whole aligned
/// 16-byte blocks, which may reach outside the range but never outside the
/// pages it lies in.)
#[inline(always)]
pub(crate) unsafe fn find_byte(hay: *const u8, len: usize, byte: u8) -> Result<usize, Fault> {
    // SAFETY: as in `copy`.
    let ret = unsafe { mmapfile_guarded_find_byte(hay, len, byte) };
    match ret & FAULTED {
        0 => Ok(ret as usize),
        _ => Err(Fault(ret)),
    }
}

/// Copies the `count` bytes at `first`, `first + step`, … to `dst`.
///
/// # Safety
/// As for [`copy`], for every byte read and `dst..dst + count`.
#[inline(always)]
pub(crate) unsafe fn gather(
    dst: *mut u8,
    first: *const u8,
    step: isize,
    count: usize,
) -> Result<(), Fault> {
    // SAFETY: as in `copy`.
    done(unsafe { mmapfile_guarded_gather(dst, first, step, count) })
}

/// Copies the `count` bytes at `src` to `first`, `first + step`, ….
///
/// # Safety
/// As for [`copy`], for every byte written and `src..src + count`.
#[inline(always)]
pub(crate) unsafe fn scatter(
    first: *mut u8,
    src: *const u8,
    step: isize,
    count: usize,
) -> Result<(), Fault> {
    // SAFETY: as in `copy`.
    done(unsafe { mmapfile_guarded_scatter(first, src, step, count) })
}

// The routines. Each follows the Windows x64 calling convention (arguments
// in rcx, rdx, r8, r9; result in rax; rsi, rdi callee-saved; the direction
// flag clear) and returns 0 (or the byte read) when it finishes. Each first
// saves rsi and rdi in r10 and r11 and never changes the stack pointer or
// r10/r11 after that, so that when the handler moves the thread to
// `mmapfile_guarded_recover` (with the fault in rax), the recovery can
// restore them and return to the caller as the routine itself would. Being
// leaves that never touch the stack, they need no unwind information: the
// system's unwinder treats a function without it as a leaf, which is right.
//
// Numeric labels only (local to the block), and none made of only 0s and 1s
// (the assembler would read those as binary numbers).
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl mmapfile_guarded_begin",
    "mmapfile_guarded_begin:",
    // copy(dst = rcx, src = rdx, len = r8) -> 0. Every size up to 32 bytes
    // loads all before it stores, so overlap needs no care; larger copies
    // go forward (by 16 bytes up to 256, then with `rep movsb`: both
    // correct for overlap with dst below src), or backward by 16 bytes when
    // dst lies inside the source.
    ".globl mmapfile_guarded_copy",
    "mmapfile_guarded_copy:",
    "mov r10, rsi",
    "mov r11, rdi",
    "cmp r8, 16",
    "ja 24f",
    "cmp r8, 8",
    "jb 22f",
    "mov rax, qword ptr [rdx]",
    "mov r9, qword ptr [rdx + r8 - 8]",
    "mov qword ptr [rcx], rax",
    "mov qword ptr [rcx + r8 - 8], r9",
    "xor eax, eax",
    "ret",
    "22:",
    "cmp r8, 4",
    "jb 23f",
    "mov eax, dword ptr [rdx]",
    "mov r9d, dword ptr [rdx + r8 - 4]",
    "mov dword ptr [rcx], eax",
    "mov dword ptr [rcx + r8 - 4], r9d",
    "xor eax, eax",
    "ret",
    "23:",
    // 0 to 3 bytes: the first, the middle and the last (some the same).
    "test r8, r8",
    "jz 29f",
    "mov rsi, r8",
    "shr rsi, 1",
    "movzx eax, byte ptr [rdx]",
    "movzx r9d, byte ptr [rdx + rsi]",
    "movzx edi, byte ptr [rdx + r8 - 1]",
    "mov byte ptr [rcx], al",
    "mov byte ptr [rcx + rsi], r9b",
    "mov byte ptr [rcx + r8 - 1], dil",
    "jmp 29f",
    "24:",
    "cmp r8, 32",
    "ja 25f",
    "movdqu xmm0, xmmword ptr [rdx]",
    "movdqu xmm1, xmmword ptr [rdx + r8 - 16]",
    "movdqu xmmword ptr [rcx], xmm0",
    "movdqu xmmword ptr [rcx + r8 - 16], xmm1",
    "xor eax, eax",
    "ret",
    "25:",
    "mov rax, rcx",
    "sub rax, rdx",
    "jz 29f",
    "cmp rax, r8",
    "jb 26f",
    "cmp r8, 256",
    "ja 30f",
    // 33 to 256 bytes, forward by 16 (faster than `rep movsb` to start on
    // some processors); the last 16 bytes are loaded first and stored last,
    // so a destination below the source cannot clobber them.
    "movdqu xmm2, xmmword ptr [rdx + r8 - 16]",
    "xor eax, eax",
    "31:",
    "movdqu xmm0, xmmword ptr [rdx + rax]",
    "movdqu xmmword ptr [rcx + rax], xmm0",
    "add rax, 16",
    "lea r9, [rax + 16]",
    "cmp r9, r8",
    "jb 31b",
    "movdqu xmmword ptr [rcx + r8 - 16], xmm2",
    "xor eax, eax",
    "ret",
    "30:",
    "mov rdi, rcx",
    "mov rsi, rdx",
    "mov rcx, r8",
    "rep movsb",
    "jmp 29f",
    "26:",
    // dst inside the source, above it: from the end, 16 bytes at a time.
    // The first 16 bytes are loaded before anything is stored and stored
    // last; the loop's last block (offset 1 to 16) overlaps them.
    "movdqu xmm2, xmmword ptr [rdx]",
    "lea rax, [r8 - 16]",
    "27:",
    "movdqu xmm0, xmmword ptr [rdx + rax]",
    "movdqu xmmword ptr [rcx + rax], xmm0",
    "cmp rax, 16",
    "jbe 28f",
    "sub rax, 16",
    "jmp 27b",
    "28:",
    "movdqu xmmword ptr [rcx], xmm2",
    "29:",
    "mov rsi, r10",
    "mov rdi, r11",
    "xor eax, eax",
    "ret",
    // load(src = rcx) -> the byte.
    ".p2align 4",
    ".globl mmapfile_guarded_load",
    "mmapfile_guarded_load:",
    "mov r10, rsi",
    "mov r11, rdi",
    "movzx eax, byte ptr [rcx]",
    "ret",
    // store(dst = rcx, value = dl) -> 0.
    ".p2align 4",
    ".globl mmapfile_guarded_store",
    "mmapfile_guarded_store:",
    "mov r10, rsi",
    "mov r11, rdi",
    "mov byte ptr [rcx], dl",
    "xor eax, eax",
    "ret",
    // gather(dst = rcx, first = rdx, step = r8, count = r9) -> 0.
    ".p2align 4",
    ".globl mmapfile_guarded_gather",
    "mmapfile_guarded_gather:",
    "mov r10, rsi",
    "mov r11, rdi",
    "test r9, r9",
    "jz 33f",
    "32:",
    "movzx eax, byte ptr [rdx]",
    "mov byte ptr [rcx], al",
    "add rdx, r8",
    "inc rcx",
    "dec r9",
    "jnz 32b",
    "33:",
    "xor eax, eax",
    "ret",
    // scatter(first = rcx, src = rdx, step = r8, count = r9) -> 0.
    ".p2align 4",
    ".globl mmapfile_guarded_scatter",
    "mmapfile_guarded_scatter:",
    "mov r10, rsi",
    "mov r11, rdi",
    "test r9, r9",
    "jz 35f",
    "34:",
    "movzx eax, byte ptr [rdx]",
    "mov byte ptr [rcx], al",
    "add rcx, r8",
    "inc rdx",
    "dec r9",
    "jnz 34b",
    "35:",
    "xor eax, eax",
    "ret",
    // find_byte(hay = rcx, len = rdx, byte = r8b) -> index, or len. Reads
    // aligned 16-byte blocks (never crossing into a page the range does not
    // touch); bits of bytes before `hay` in the first block are dropped,
    // and a match past the end means none.
    ".p2align 4",
    ".globl mmapfile_guarded_find_byte",
    "mmapfile_guarded_find_byte:",
    "mov r10, rsi",
    "mov r11, rdi",
    "xor eax, eax",
    "test rdx, rdx",
    "jz 39f",
    "movd xmm1, r8d",
    "punpcklbw xmm1, xmm1",
    "punpcklwd xmm1, xmm1",
    "pshufd xmm1, xmm1, 0",
    "mov rdi, rcx",
    "lea r8, [rcx + rdx]",
    "mov r9, rcx",
    "and r9, -16",
    "and ecx, 15",
    "movdqa xmm0, xmmword ptr [r9]",
    "pcmpeqb xmm0, xmm1",
    "pmovmskb eax, xmm0",
    "shr eax, cl",
    "shl eax, cl",
    "36:",
    "test eax, eax",
    "jnz 37f",
    "add r9, 16",
    "cmp r9, r8",
    "jae 38f",
    "movdqa xmm0, xmmword ptr [r9]",
    "pcmpeqb xmm0, xmm1",
    "pmovmskb eax, xmm0",
    "jmp 36b",
    "37:",
    "bsf eax, eax",
    "add rax, r9",
    "cmp rax, r8",
    "jae 38f",
    "sub rax, rdi",
    "jmp 39f",
    "38:",
    "mov rax, r8",
    "sub rax, rdi",
    "39:",
    "mov rsi, r10",
    "mov rdi, r11",
    "ret",
    ".globl mmapfile_guarded_end",
    "mmapfile_guarded_end:",
    // Where a faulting routine resumes, with the fault in rax: restore what
    // the routine saved, clear the direction flag as the convention wants,
    // and return to the routine's caller.
    ".globl mmapfile_guarded_recover",
    "mmapfile_guarded_recover:",
    "mov rsi, r10",
    "mov rdi, r11",
    "cld",
    "ret",
);

extern "C" {
    fn mmapfile_guarded_begin();
    fn mmapfile_guarded_end();
    fn mmapfile_guarded_recover();
    fn mmapfile_guarded_copy(dst: *mut u8, src: *const u8, len: usize) -> u64;
    fn mmapfile_guarded_load(src: *const u8) -> u64;
    fn mmapfile_guarded_find_byte(hay: *const u8, len: usize, byte: u8) -> u64;
    fn mmapfile_guarded_store(dst: *mut u8, value: u8) -> u64;
    fn mmapfile_guarded_gather(dst: *mut u8, first: *const u8, step: isize, count: usize) -> u64;
    fn mmapfile_guarded_scatter(first: *mut u8, src: *const u8, step: isize, count: usize) -> u64;
}

static INSTALL: Once = Once::new();

/// Installs the handler once per process; call it before the first view
/// is used. If Windows refuses, faults stay as fatal as they were.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `on_exception` has the signature of a vectored handler
        // and stays valid for the life of the process (it is never
        // removed); 1 puts it first, before handlers that would end the
        // process.
        // A null handle (refused) leaves faults as fatal as they were.
        unsafe { AddVectoredExceptionHandler(1, Some(on_exception)) };
    });
}

/// The vectored exception handler: for an in-page error or an access
/// violation raised by an instruction of the routines, moves the thread to
/// the recovery point with the fault in rax and resumes it; every other
/// exception goes on to the next handler.
///
/// Runs on the faulting thread, in the middle of whatever it did; it only
/// reads the exception record and writes the saved context.
unsafe extern "system" fn on_exception(info: *mut EXCEPTION_POINTERS) -> i32 {
    // SAFETY: Windows passes valid exception and context records, which the
    // handler may read and (the context) change for the resumption.
    let (record, context) = unsafe { (&*(*info).ExceptionRecord, &mut *(*info).ContextRecord) };
    let code = record.ExceptionCode;
    if code != EXCEPTION_IN_PAGE_ERROR && code != EXCEPTION_ACCESS_VIOLATION {
        return EXCEPTION_CONTINUE_SEARCH;
    }
    let rip = context.Rip as usize;
    let routines =
        mmapfile_guarded_begin as *const () as usize..mmapfile_guarded_end as *const () as usize;
    if !routines.contains(&rip) {
        return EXCEPTION_CONTINUE_SEARCH;
    }
    // Both exceptions give the kind of access (0 read, 1 write, 8 execute)
    // and the address; an in-page error also gives the status of the I/O
    // that failed, which says why (a full disk, a device gone, ...).
    let wrote = record.NumberParameters >= 1 && record.ExceptionInformation[0] == 1;
    let cause = if code == EXCEPTION_IN_PAGE_ERROR && record.NumberParameters >= 3 {
        record.ExceptionInformation[2] as u32
    } else {
        0
    };
    // A status the caller cannot tell from a result (0, or a byte value
    // for `load`) would be lost: the exception's own code says enough then.
    let status = if cause > 0xFF { cause } else { code as u32 };
    context.Rax = FAULTED | u64::from(status) | if wrote { WROTE } else { 0 };
    context.Rip = mmapfile_guarded_recover as *const () as usize as u64;
    EXCEPTION_CONTINUE_EXECUTION
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::System::Memory::{
        VirtualAlloc, VirtualFree, MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_NOACCESS,
        PAGE_READWRITE,
    };

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn copy_agrees_with_memmove_for_every_size_and_overlap() {
        let sizes = (0..=70).chain([
            95, 96, 97, 127, 128, 129, 200, 255, 256, 257, 1000, 4096, 65_537,
        ]);
        for len in sizes {
            // Disjoint.
            let src = pattern(len);
            let mut dst = vec![0u8; len];
            // SAFETY: both buffers hold `len` bytes.
            unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), len) }.unwrap();
            assert_eq!(dst, src, "disjoint, len {len}");
            // Overlapping both ways, by distances around the block sizes.
            for shift in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100] {
                let mut ours = pattern(len + shift);
                let mut reference = ours.clone();
                // SAFETY: both ranges lie inside `ours`.
                unsafe { copy(ours.as_mut_ptr().add(shift), ours.as_ptr(), len) }.unwrap();
                reference.copy_within(0..len, shift);
                assert_eq!(ours, reference, "up by {shift}, len {len}");
                let mut ours = pattern(len + shift);
                let mut reference = ours.clone();
                // SAFETY: as above.
                unsafe { copy(ours.as_mut_ptr(), ours.as_ptr().add(shift), len) }.unwrap();
                reference.copy_within(shift..shift + len, 0);
                assert_eq!(ours, reference, "down by {shift}, len {len}");
            }
        }
    }

    #[test]
    fn byte_and_strided_routines_read_and_write_what_they_should() {
        let mut data = pattern(64);
        for i in 0..64 {
            // SAFETY: `i` is inside `data`.
            assert_eq!(unsafe { load(data.as_ptr().add(i)) }.unwrap(), data[i]);
        }
        // SAFETY: index 5 is inside `data`.
        unsafe { store(data.as_mut_ptr().add(5), 0xEE) }.unwrap();
        assert_eq!(data[5], 0xEE);
        let mut out = [0u8; 10];
        // SAFETY: indices 60, 54, ..., 6 are inside `data`; `out` holds 10.
        unsafe { gather(out.as_mut_ptr(), data.as_ptr().add(60), -6, 10) }.unwrap();
        let expected: Vec<u8> = (0..10).map(|k| data[60 - 6 * k]).collect();
        assert_eq!(out.to_vec(), expected);
        let src = *b"0123456789";
        // SAFETY: indices 1, 4, ..., 28 are inside `data`.
        unsafe { scatter(data.as_mut_ptr().add(1), src.as_ptr(), 3, 10) }.unwrap();
        for k in 0..10 {
            assert_eq!(data[1 + 3 * k], src[k]);
        }
    }

    #[test]
    fn find_byte_agrees_with_memchr_at_every_alignment() {
        let data: Vec<u8> = (0..300).map(|i| (i % 7) as u8 + b'a').collect();
        for start in 0..40 {
            for len in (0..120).chain([200, 300 - start]) {
                let hay = &data[start..start + len.min(300 - start)];
                for byte in [b'a', b'c', b'g', b'z'] {
                    // SAFETY: `hay` is a live slice.
                    let got = unsafe { find_byte(hay.as_ptr(), hay.len(), byte) }.unwrap();
                    let want = memchr::memchr(byte, hay).unwrap_or(hay.len());
                    assert_eq!(got, want, "start {start}, len {}, {byte}", hay.len());
                }
            }
        }
    }

    /// One readable page followed by one that faults on every access.
    struct TwoPages(*mut u8);

    impl TwoPages {
        fn new() -> Self {
            // SAFETY: reserving and committing fresh memory; checked below.
            let base = unsafe {
                VirtualAlloc(
                    std::ptr::null(),
                    8192,
                    MEM_RESERVE | MEM_COMMIT,
                    PAGE_NOACCESS,
                )
            };
            assert!(!base.is_null());
            let mut old = 0;
            // SAFETY: the first page of the allocation just made.
            let ok = unsafe {
                windows_sys::Win32::System::Memory::VirtualProtect(
                    base,
                    4096,
                    PAGE_READWRITE,
                    &mut old,
                )
            };
            assert_ne!(ok, 0);
            TwoPages(base.cast())
        }
    }

    impl Drop for TwoPages {
        fn drop(&mut self) {
            // SAFETY: the allocation made in `new`, released once.
            unsafe { VirtualFree(self.0.cast(), 0, MEM_RELEASE) };
        }
    }

    #[test]
    fn a_fault_in_every_routine_returns_the_access_violation_and_the_thread_goes_on() {
        install();
        let pages = TwoPages::new();
        let bad = pages.0.wrapping_add(4096);
        let mut buf = vec![0u8; 8192];
        let code = |fault: Fault| fault.status() as u32;
        const AV: u32 = EXCEPTION_ACCESS_VIOLATION as u32;
        // SAFETY: the first page is valid, the second faults, which
        // the routines report; `buf` is large enough for every copy.
        unsafe {
            for len in [1, 5, 12, 20, 100, 5000] {
                // A copy that crosses from the good page into the bad one.
                let from = bad.wrapping_sub(len / 2);
                let fault = copy(buf.as_mut_ptr(), from, len).unwrap_err();
                assert_eq!(code(fault), AV, "read, len {len}");
                assert_eq!(fault.0 & WROTE, 0);
                let fault = copy(from, buf.as_ptr(), len).unwrap_err();
                assert_eq!(code(fault), AV, "write, len {len}");
                assert_ne!(fault.0 & WROTE, 0, "write, len {len}");
            }
            // Backward (overlapping, destination above), across the edge.
            let fault = copy(bad.wrapping_sub(40), bad.wrapping_sub(4000), 3990).unwrap_err();
            assert_eq!(code(fault), AV);
            assert_eq!(code(load(bad).unwrap_err()), AV);
            let fault = find_byte(bad.wrapping_sub(100), 200, b'q').unwrap_err();
            assert_eq!(code(fault), AV);
            assert_eq!(find_byte(bad.wrapping_sub(100), 100, b'q').unwrap(), 100);
            assert_eq!(code(store(bad, 1).unwrap_err()), AV);
            let fault = gather(buf.as_mut_ptr(), bad.wrapping_sub(8), 4, 4).unwrap_err();
            assert_eq!(code(fault), AV);
            let fault = scatter(bad.wrapping_sub(8), buf.as_ptr(), 4, 4).unwrap_err();
            assert_eq!(code(fault), AV);
            // The good page still works, and so does the thread.
            store(pages.0, 42).unwrap();
            assert_eq!(load(pages.0).unwrap(), 42);
            copy(buf.as_mut_ptr(), pages.0, 4096).unwrap();
            assert_eq!(buf[0], 42);
        }
    }

    #[test]
    fn an_access_violation_becomes_error_noaccess() {
        let fault = Fault(EXCEPTION_ACCESS_VIOLATION as u32 as u64);
        let err = fault.error();
        // ERROR_NOACCESS, as CPython's mmap reports the same fault.
        assert_eq!(err.raw_os_error(), Some(998), "{err}");
        assert!(err.to_string().contains("could not be read"), "{err}");
    }

    #[test]
    fn a_fault_outside_the_routines_is_left_alone() {
        // A fault the handler does not own must reach the handlers after
        // it: a structured-exception-free way to see that is to call the
        // handler with a made-up record whose address is elsewhere.
        use windows_sys::Win32::Foundation::{EXCEPTION_BREAKPOINT, NTSTATUS};
        use windows_sys::Win32::System::Diagnostics::Debug::{CONTEXT, EXCEPTION_RECORD};
        let handle = |code: NTSTATUS, rip: usize| {
            // SAFETY: all-zero records are valid plain data.
            let (mut record, mut context): (EXCEPTION_RECORD, CONTEXT) =
                unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
            record.ExceptionCode = code;
            context.Rip = rip as u64;
            let mut pointers = EXCEPTION_POINTERS {
                ExceptionRecord: &mut record,
                ContextRecord: &mut context,
            };
            // SAFETY: valid records, as Windows would pass them.
            let verdict = unsafe { on_exception(&mut pointers) };
            (verdict, context.Rip as usize)
        };
        let elsewhere = a_fault_outside_the_routines_is_left_alone as *const () as usize;
        assert_eq!(
            handle(EXCEPTION_ACCESS_VIOLATION, elsewhere),
            (EXCEPTION_CONTINUE_SEARCH, elsewhere)
        );
        // Inside the routines, but not a fault it knows: left alone too.
        let inside = mmapfile_guarded_load as *const () as usize + 8;
        assert_eq!(
            handle(EXCEPTION_BREAKPOINT, inside),
            (EXCEPTION_CONTINUE_SEARCH, inside)
        );
        // And one it knows goes to the recovery point.
        let recover = mmapfile_guarded_recover as *const () as usize;
        assert_eq!(
            handle(EXCEPTION_IN_PAGE_ERROR, inside),
            (EXCEPTION_CONTINUE_EXECUTION, recover)
        );
    }
}
