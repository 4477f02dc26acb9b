//! Surviving `SIGBUS` when a mapped page no longer exists.
//!
//! On POSIX systems, touching a page of a file mapping that lies past the end
//! of the file (because the file, or a shared-memory block, was truncated
//! after it was mapped), or a page that the file system cannot allocate (it
//! is full) or read, raises `SIGBUS`, whose default action kills the
//! process. This module turns that fault into an error instead:
//!
//! 1. Every view this crate maps is registered as a [`Watch`] for as long as
//!    it is mapped: its address range goes into a process-wide table that a
//!    signal handler can read (fixed blocks of slots that are never freed,
//!    read and written with atomics only). A process-wide `SIGBUS` handler is
//!    installed once, when the first view is registered, and the action it
//!    replaced is saved.
//! 2. When a `SIGBUS` arrives for an address inside a registered view, the
//!    handler maps fresh zero-filled anonymous pages over the view from the
//!    faulting page to its end (the `mmap` system call with `MAP_FIXED`,
//!    made directly: see [`map_zero_pages`]), notes the address
//!    in the view's slot and returns. The kernel then re-runs the faulting
//!    instruction, which now succeeds, so the access finishes normally: no
//!    Rust frame is skipped and nothing unwinds through the handler.
//! 3. After each access the crate looks at its view's slot
//!    ([`Watch::fault`]). A noted address becomes an error, and the view
//!    stays poisoned (its pages were replaced, so its contents no longer
//!    mean anything) until it is unmapped. Which error is found out then,
//!    outside the handler (`RawView::vanished`): [`crate::Error::Truncated`]
//!    if the file or block is now too short for the page, else
//!    [`crate::Error::Storage`] ("no space", `ENOSPC`).
//!
//! The check after an access is one load from the view's own slot: no
//! thread-local storage (in a shared library each thread-local lookup is a
//! call to `__tls_get_addr`) and no store, which is what a one-byte read can
//! afford. Because the table knows views rather than accesses, a fault in a
//! registered view is recovered whoever touched it, including code reading
//! the memory through an exported buffer: it reads zeros where the pages
//! vanished, and the view reports the fault at its next access.
//!
//! Every other `SIGBUS` (an address outside every registered view, or a
//! signal sent with `kill`) is passed on to the action that was installed
//! before ours: its function is called, or, for the default action, the
//! default is restored so that the fault kills the process just as it would
//! have without this crate. One exception: a handler installed after ours
//! that passes faults on as Python's `faulthandler` does (put ours back,
//! then `raise`) hands us the fault as a sent signal; [`passed_back`] lets
//! the fault come round again, with its address, instead of dying.
//!
//! Why pages are replaced rather than jumped over: leaving the faulting
//! instruction with `siglongjmp` would skip the Rust frames of the copy
//! (undefined behaviour for frames that own anything) and needs C. Replacing
//! the pages makes the instruction succeed, at the price of the view's
//! contents, which were gone anyway.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

use super::page_size;
use super::sys::map_zero_pages;

/// One registered view's entry in the table.
///
/// Only the view that took the slot (`taken`) writes `low`, `high` and
/// `seq`; the handler reads them as a sequence lock: `seq` is odd while they
/// change, and a reader that sees `seq` odd or changed ignores what it read.
/// A slot being registered or released never describes the view whose fault
/// is being handled (that view is mapped and in use), so ignoring it is
/// right.
struct Slot {
    taken: AtomicBool,
    seq: AtomicUsize,
    /// The page-aligned range `low..high` of the view; empty when free.
    low: AtomicUsize,
    high: AtomicUsize,
    /// The lowest faulting address recovered from in this view; 0 if none.
    /// Written by the handler (on whichever thread faulted), read by the
    /// view's accesses.
    fault: AtomicUsize,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            taken: AtomicBool::new(false),
            seq: AtomicUsize::new(0),
            low: AtomicUsize::new(0),
            high: AtomicUsize::new(0),
            fault: AtomicUsize::new(0),
        }
    }

    /// Sets the range; only the slot's owner calls this.
    fn set_range(&self, low: usize, high: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.low.store(low, Ordering::Relaxed);
        self.high.store(high, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The range, or None while it is being changed.
    fn range(&self) -> Option<(usize, usize)> {
        let before = self.seq.load(Ordering::Acquire);
        let low = self.low.load(Ordering::Relaxed);
        let high = self.high.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = self.seq.load(Ordering::Relaxed);
        (before == after && before % 2 == 0).then_some((low, high))
    }
}

/// Slots per block of the table.
const SLOTS: usize = 64;

/// A block of slots; more blocks are chained on as needed and never freed,
/// so the handler can walk the table at any moment.
struct Table {
    slots: [Slot; SLOTS],
    next: AtomicPtr<Table>,
}

impl Table {
    const fn new() -> Self {
        Table {
            slots: [const { Slot::new() }; SLOTS],
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This block and the ones chained after it.
    fn walk(&'static self) -> impl Iterator<Item = &'static Table> {
        std::iter::successors(Some(self), |table| {
            // SAFETY: `next` is null or a leaked, never-freed table.
            unsafe { table.next.load(Ordering::Acquire).as_ref() }
        })
    }
}

static TABLE: Table = Table::new();

/// A view's registration in the table, from just after it is mapped until
/// just before it is unmapped (the owner calls [`Watch::release`]).
#[derive(Debug)]
pub(crate) struct Watch {
    slot: &'static Slot,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("range", &self.range())
            .field("fault", &self.fault.load(Ordering::Relaxed))
            .finish()
    }
}

impl Watch {
    /// Registers the mapped range `start..start + len` (`start` is page
    /// aligned, as `mmap` returns it).
    pub(crate) fn new(start: *mut u8, len: usize) -> Watch {
        install();
        let slot = take_slot();
        slot.fault.store(0, Ordering::Relaxed);
        let low = start as usize;
        // No mapping reaches the end of the address space.
        slot.set_range(low, low + len);
        Watch { slot }
    }

    /// The lowest address of the view at which a page vanished, if one has.
    ///
    /// Call it after an access to learn whether the access hit a vanished
    /// page: the handler runs on the faulting thread before the faulting
    /// instruction completes, so the access's own fault is always seen.
    #[inline(always)]
    pub(crate) fn fault(&self) -> Option<usize> {
        // Keeps the compiler from moving this load before the access.
        compiler_fence(Ordering::SeqCst);
        match self.slot.fault.load(Ordering::Relaxed) {
            0 => None,
            addr => Some(addr),
        }
    }

    /// Ends the registration; call it before the view is unmapped, so the
    /// handler never claims an address that has been mapped anew.
    pub(crate) fn release(&self) {
        self.slot.set_range(0, 0);
        self.slot.taken.store(false, Ordering::Release);
    }
}

/// A free slot, now owned by the caller.
fn take_slot() -> &'static Slot {
    let mut table: &'static Table = &TABLE;
    loop {
        for slot in &table.slots {
            if slot
                .taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return slot;
            }
        }
        let next = table.next.load(Ordering::Acquire);
        // SAFETY: `next` is null or a leaked, never-freed table.
        table = match unsafe { next.as_ref() } {
            Some(next) => next,
            None => {
                let fresh = Box::into_raw(Box::new(Table::new()));
                match table.next.compare_exchange(
                    std::ptr::null_mut(),
                    fresh,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // SAFETY: just published; never freed from now on.
                    Ok(_) => unsafe { &*fresh },
                    Err(winner) => {
                        // SAFETY: `fresh` was never published; `winner` is a
                        // leaked table.
                        unsafe {
                            drop(Box::from_raw(fresh));
                            &*winner
                        }
                    }
                }
            }
        };
    }
}

/// The `SIGBUS` action that was installed before ours.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: `PREVIOUS` is written once, inside `INSTALL.call_once`, before our
// handler is installed (and `READY` is set with release ordering after the
// write); afterwards it is only read.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler once per process. If the OS refuses, faults stay as
/// fatal as they were; nothing else changes.
fn install() {
    INSTALL.call_once(|| {
        // The handler rounds with the page size; asking for it there could
        // call `sysconf`, which is not async-signal-safe. It is cached now.
        page_size();
        // SAFETY: a zeroed `sigaction` is a valid "no handler, no flags"
        // value; every pointer passed to sigaction/sigemptyset is valid.
        unsafe {
            // Read the current action first and save it, so that it is in
            // place before any fault can reach our handler.
            let previous = (*PREVIOUS.0.get()).as_mut_ptr();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), previous) != 0 {
                return;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            // SA_ONSTACK: run on the thread's alternate stack when it has one
            // (e.g. after a stack overflow, the previous handler may need it).
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            READY.store(true, Ordering::Release);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                READY.store(false, Ordering::Release);
            }
        }
    });
}

/// The `SIGBUS` handler. Only async-signal-safe work happens here: atomic
/// loads and stores to the table, the `mmap` system call (made directly,
/// see [`map_zero_pages`]), `getpid`, `sigaction` and `raise`, and calling
/// the previous handler.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let saved_errno = errno::get();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    if unsafe { (*info).si_code } > 0 {
        // A fault: whatever comes next is not a re-raise of an earlier one.
        PASSED_OVER.store(false, Ordering::Relaxed);
    }
    // SAFETY: as above.
    if unsafe { recover(&*info) } {
        errno::set(saved_errno);
        return;
    }
    // SAFETY: as above, and `context` is the kernel's ucontext.
    if unsafe { passed_back(&*info, context) } {
        errno::set(saved_errno);
        return;
    }
    // SAFETY: as above; `info`/`context` are passed on unchanged.
    unsafe { chain(signal, info, context) };
    errno::set(saved_errno);
}

/// Set when a re-raised signal was passed over ([`passed_back`]), cleared by
/// the next fault: a second re-raise with no fault in between was not a
/// fault's, and goes on to the previous action.
static PASSED_OVER: AtomicBool = AtomicBool::new(false);

/// Whether this `SIGBUS` is a fault handed back to us by a handler that was
/// installed after ours, and that passes faults on the way Python's
/// `faulthandler` does: it puts the previous action (ours) back and calls
/// `raise`. The signal then arrives as one the process sent itself, with no
/// address, while that handler runs. If we passed it on to the action before
/// ours (the default: death), the guard would be lost; instead we return,
/// the other handler returns, the faulting instruction runs again, and the
/// fault comes to us, installed again, with its address.
///
/// A re-raise is told from a signal sent on purpose by where it was sent
/// from: inside a signal handler running on the thread's alternate signal
/// stack (`faulthandler` runs there): the interrupted stack pointer lies in
/// that stack (Linux on x86-64 and AArch64; elsewhere every sent signal goes
/// on to the previous action, and this order of handlers stays fatal, as
/// before). Passing over is
/// done once until the next fault, so a handler that raises `SIGBUS` on
/// purpose, again and again, still reaches the previous action.
///
/// # Safety
/// Must only be called from the `SIGBUS` handler with the kernel's arguments.
unsafe fn passed_back(info: &libc::siginfo_t, context: *mut libc::c_void) -> bool {
    if info.si_code > 0 || context.is_null() {
        return false;
    }
    // SAFETY: for a signal sent with kill/tgkill, si_pid is the sender.
    // SAFETY (getpid): no preconditions, async-signal-safe.
    if unsafe { info.si_pid() } != unsafe { libc::getpid() } {
        return false;
    }
    // SAFETY: for an SA_SIGINFO handler the third argument is the kernel's
    // ucontext_t, describing the interrupted context.
    let interrupted = unsafe { &*context.cast::<libc::ucontext_t>() };
    if !on_alternate_stack(interrupted) {
        return false;
    }
    !PASSED_OVER.swap(true, Ordering::Relaxed)
}

/// If the fault is one of ours, replaces the missing pages and returns true.
///
/// # Safety
/// Must only be called from the `SIGBUS` handler with the kernel's siginfo.
unsafe fn recover(info: &libc::siginfo_t) -> bool {
    // A positive si_code means the kernel raised the signal for a fault;
    // kill(), raise() and sigqueue() use codes <= 0 and carry no address.
    if info.si_code <= 0 {
        return false;
    }
    // SAFETY: for a kernel-generated SIGBUS, si_addr is the faulting address.
    let addr = unsafe { info.si_addr() } as usize;
    let found = TABLE.walk().flat_map(|t| &t.slots).find_map(|slot| {
        if !slot.taken.load(Ordering::Relaxed) {
            return None;
        }
        let (low, high) = slot.range()?;
        (low..high).contains(&addr).then_some((slot, high))
    });
    let Some((slot, high)) = found else {
        return false;
    };
    let from = addr & !(page_size() - 1);
    // SAFETY: `from..high` lies inside a view that this crate mapped and
    // that stays mapped while it is in use, as it is (the fault happened in
    // it); replacing its pages changes only that view's contents. MAP_FIXED
    // replaces them atomically.
    if !unsafe { map_zero_pages(from, high - from) } {
        return false;
    }
    // Another thread may fault in the same view at the same time, and a
    // backward copy can fault on a high page, then on a lower one: keep the
    // lowest address.
    let _ = slot
        .fault
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seen| {
            (seen == 0 || addr < seen).then_some(addr)
        });
    true
}

/// Whether the interrupted context ran on the thread's alternate signal
/// stack, i.e. inside a signal handler that uses it. The kernel saves the
/// alternate stack's range in `uc_stack` (its `ss_flags` do not say whether
/// it was in use), and the interrupted stack pointer with the registers.
fn on_alternate_stack(interrupted: &libc::ucontext_t) -> bool {
    let stack = &interrupted.uc_stack;
    if stack.ss_flags & libc::SS_DISABLE != 0 || stack.ss_sp.is_null() {
        return false;
    }
    let Some(sp) = interrupted_sp(interrupted) else {
        return false;
    };
    let low = stack.ss_sp as usize;
    low.checked_add(stack.ss_size)
        .is_some_and(|high| (low..high).contains(&sp))
}

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_arch = "x86_64"
))]
fn interrupted_sp(interrupted: &libc::ucontext_t) -> Option<usize> {
    Some(interrupted.uc_mcontext.gregs[libc::REG_RSP as usize] as usize)
}

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_arch = "aarch64"
))]
fn interrupted_sp(interrupted: &libc::ucontext_t) -> Option<usize> {
    Some(interrupted.uc_mcontext.sp as usize)
}

/// Elsewhere the stack pointer is not looked up: a re-raise is passed on
/// to the previous action, as any sent signal.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn interrupted_sp(_interrupted: &libc::ucontext_t) -> Option<usize> {
    None
}

/// Passes a `SIGBUS` that is not ours to the action installed before ours.
///
/// # Safety
/// Must only be called from the `SIGBUS` handler with the kernel's arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: READY is set only after PREVIOUS was written (see `install`).
    let previous = unsafe { (*PREVIOUS.0.get()).assume_init_ref() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Put the default back and let the signal take its course: a fault
        // re-runs the instruction on return and faults again, now fatally,
        // with the real address in the core dump; a sent signal is raised
        // again and delivered once this handler returns.
        //
        // SAFETY: a zeroed sigaction with SIG_DFL (= 0) is the default
        // action; sigaction and raise are async-signal-safe.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
            if (*info).si_code <= 0 && handler == libc::SIG_DFL {
                libc::raise(signal);
            }
        }
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, the saved value is a three-argument
        // handler installed by someone else for exactly this signal.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO, the saved value is a one-argument
        // handler installed by someone else for exactly this signal.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

/// `errno` must survive a signal handler unchanged.
mod errno {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn location() -> *mut libc::c_int {
        // SAFETY: no preconditions; returns this thread's errno.
        unsafe { libc::__errno_location() }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn location() -> *mut libc::c_int {
        // SAFETY: no preconditions; returns this thread's errno.
        unsafe { libc::__error() }
    }

    pub(super) fn get() -> libc::c_int {
        // SAFETY: the location of this thread's errno is always valid.
        unsafe { *location() }
    }

    pub(super) fn set(value: libc::c_int) {
        // SAFETY: the location of this thread's errno is always valid.
        unsafe { *location() = value }
    }
}
