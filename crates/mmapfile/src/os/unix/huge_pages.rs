//! Transparent huge pages for memory that a large copy is about to fill.
//!
//! Linux backs anonymous memory with 2 MiB pages (on x86-64) where a region
//! asks for them with `madvise(MADV_HUGEPAGE)` and the system's THP setting
//! is `madvise`. Other POSIX systems have no such advice for memory that is
//! already allocated (macOS' superpages are a flag of the allocation
//! itself), so there the functions say no.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::sync::OnceLock;

    const THP: &str = "/sys/kernel/mm/transparent_hugepage";

    /// The size of the huge pages that `MADV_HUGEPAGE` brings to this
    /// process, or None if the advice would change nothing: THP `never`
    /// (nothing to get), THP `always` (the kernel already gives them without
    /// advice), no THP in the kernel. Read once; a later change of the
    /// system's setting is not seen.
    pub(crate) fn advisable_huge_page_size() -> Option<usize> {
        static SIZE: OnceLock<Option<usize>> = OnceLock::new();
        *SIZE.get_or_init(read_settings)
    }

    fn read(path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// The selected word of a sysfs choice: `always [madvise] never`.
    fn selected(choices: &str) -> Option<&str> {
        let start = choices.find('[')? + 1;
        let end = start + choices[start..].find(']')?;
        Some(&choices[start..end])
    }

    fn read_settings() -> Option<usize> {
        let size: usize = read(&format!("{THP}/hpage_pmd_size"))?
            .trim()
            .parse()
            .ok()?;
        if !size.is_power_of_two() || size <= super::super::page_size() {
            return None;
        }
        let global = read(&format!("{THP}/enabled"))?;
        // Kernels with huge pages of several sizes (Linux 6.8 and later) also
        // have a setting per size, where `inherit` means the global one.
        let own = read(&format!("{THP}/hugepages-{}kB/enabled", size / 1024));
        let mode = match own.as_deref().and_then(selected) {
            None | Some("inherit") => selected(&global)?,
            Some(mode) => mode,
        };
        (mode == "madvise").then_some(size)
    }

    /// Asks for huge pages for `ptr..ptr + len`; returns whether the kernel
    /// took the advice.
    ///
    /// # Safety
    /// The range must be aligned to the page size and lie inside anonymous
    /// memory that the caller owns. The advice keeps every byte's value (it
    /// only changes how pages not yet touched are backed, and lets the
    /// kernel merge touched ones later), so no reference to the memory is
    /// disturbed.
    pub(crate) unsafe fn advise_huge_pages(ptr: *mut u8, len: usize) -> bool {
        // SAFETY: per the caller's promise; MADV_HUGEPAGE neither unmaps nor
        // changes the contents of any page.
        unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) == 0 }
    }

    #[cfg(test)]
    mod tests {
        use super::selected;

        #[test]
        fn selected_reads_the_bracketed_choice() {
            assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
            assert_eq!(selected("[always] madvise never"), Some("always"));
            assert_eq!(selected("always inherit madvise [never]"), Some("never"));
            assert_eq!(selected("always madvise never"), None);
            assert_eq!(selected("[always"), None);
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    /// None: this OS has no advice that brings huge pages to memory already
    /// allocated.
    pub(crate) fn advisable_huge_page_size() -> Option<usize> {
        None
    }

    /// Never called (see `advisable_huge_page_size`); does nothing.
    ///
    /// # Safety
    /// As on Linux: the range must lie inside memory the caller owns.
    pub(crate) unsafe fn advise_huge_pages(_ptr: *mut u8, _len: usize) -> bool {
        false
    }
}

pub(crate) use imp::{advisable_huge_page_size, advise_huge_pages};
